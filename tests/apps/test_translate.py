"""attnkit.apps.translate: corpora, tokenizer, batching, training (single and data-parallel), eval, CLI.

The .mo catalogs are written here byte by byte (the GNU MO layout) and cross-checked
against Python's own ``gettext`` reader. The end-to-end test trains a tiny model for
a few seconds and must beat the copy-the-source baseline on held-out numbers and years.
"""

from __future__ import annotations

import doctest
import gettext
import importlib
import json
import os
import re
import socket
import struct
from pathlib import Path

import pytest
import torch

from attnkit import checkpoint, cli
from attnkit.apps.translate import catalogs, data, numbers_dates
from attnkit.apps.translate.batching import TokenBatches
from attnkit.apps.translate.data import load_corpus, read_tsv, split_pairs
from attnkit.apps.translate.tokenizer import SubwordTokenizer
from attnkit.apps.translate.train import TranslationTrainConfig, train_translation


@pytest.fixture(autouse=True)
def one_thread():
    """Tests share two cores with other workers: one torch thread each is fastest."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(["translate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_mo(path: Path, entries: dict[str, str], charset: str = "UTF-8") -> Path:
    """A GNU .mo file as msgfmt writes it: header, sorted original and translation tables, strings."""
    entries = {"": f"Content-Type: text/plain; charset={charset}\n", **entries}
    keys = sorted(entries, key=lambda k: k.encode(charset))
    ids, strs = [k.encode(charset) for k in keys], [entries[k].encode(charset) for k in keys]
    n = len(keys)
    offset = 28 + 16 * n  # after the header and both tables
    table_ids, table_strs, blob = [], [], b""
    for column, table in ((ids, table_ids), (strs, table_strs)):
        for s in column:
            table.append((len(s), offset + len(blob)))
            blob += s + b"\0"
    header = struct.pack("<7I", catalogs.MO_MAGIC, 0, n, 28, 28 + 8 * n, 0, 0)
    body = b"".join(struct.pack("<2I", *e) for e in table_ids + table_strs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + body + blob)
    return path


CATALOG = {
    "Open the file": "Ouvrir le fichier",
    "_Save": "_Enregistrer",
    "&Quit": "&Quitter",
    "<b>Bold</b> move": "<b>Gras</b> mouvement",
    "Copy %s to %s": "Copier %s vers %s",
    "Hello {name}": "Bonjour {name}",
    "Linux": "Linux",
    "Ika": "ika",
    "file\x00files": "fichier\x00fichiers",
    "menu\x04Print": "Imprimer",
    "Nothing": "",
    "12345": "12 345",
    "long " * 60: "longue " * 60,
}


# ---------------------------------------------------------------------- numbers-dates
def test_numbers_dates_splits_are_disjoint_by_source():
    corpus = load_corpus("numbers-dates", "en-de", size=1500, seed=3)
    train, valid, test = ({s for s, _ in corpus.split(n)} for n in ("train", "valid", "test"))
    assert not (train & valid) and not (train & test) and not (valid & test)
    assert len(corpus.train) + len(corpus.valid) + len(corpus.test) == 1500


def test_numbers_dates_held_out_values_never_appear_in_training():
    from num2words import num2words

    seed = 1
    corpus = load_corpus("numbers-dates", "en-fr", size=3000, seed=seed)
    held = numbers_dates.held_out_values(seed)
    train_sources = {s for s, _ in corpus.train}
    for n in held["numbers"]["test"]:
        assert num2words(n, lang="en") not in train_sources
        assert num2words(n, to="ordinal", lang="en") not in train_sources
    train_text = " ".join(s + " " + t for s, t in corpus.train)
    assert not {str(y) for y in held["years"]["test"]} & set(re.findall(r"\d{4}", train_text))
    test_years = {int(y) for s, _ in corpus.test for y in re.findall(r"\b(\d{4})\b", s)}
    assert test_years and test_years <= held["years"]["test"]
    assert held["numbers"]["test"].isdisjoint(range(21))  # the irregular atoms stay in training


def test_numbers_dates_leaves_out_sources_with_two_translations():
    """English "May 6, 1985" is both CLDR medium and long; German writes 06.05.1985 or 6. Mai 1985."""
    corpus = load_corpus("numbers-dates", "en-de", size=4000, seed=2)
    sources = [s for s, _ in corpus.train + corpus.valid + corpus.test]
    assert not [s for s in sources if re.fullmatch(r"May \d{1,2}, \d{4}", s)]
    assert [s for s in sources if re.fullmatch(r"Jun \d{1,2}, \d{4}", s)]  # medium stays where it is unambiguous
    assert [s for s in sources if re.fullmatch(r"June \d{1,2}, \d{4}", s)]  # and so does long


def test_load_corpus_is_deterministic_for_a_seed():
    a = load_corpus("numbers-dates", "en-de", size=300, seed=7)
    b = load_corpus("numbers-dates", "en-de", size=300, seed=7)
    c = load_corpus("numbers-dates", "en-de", size=300, seed=8)
    assert a == b and a.test != c.test


def test_numbers_dates_unknown_pair_names_the_available_ones():
    with pytest.raises(ValueError, match=r"en-de, en-fr, en-es, en-it"):
        load_corpus("numbers-dates", "en-ru", size=10)
    with pytest.raises(ValueError, match=r"pair must look like 'en-de'"):
        load_corpus("numbers-dates", "english-german", size=10)


def test_corpus_summary_counts_pairs_lengths_and_vocabulary():
    corpus = data.Corpus("x", "en", "de", (("a b", "c"), ("a", "d e f")), (("g", "h"),), (("i", "j"),))
    train = corpus.summary().splits[0]
    assert (train.pairs, train.source_words_max, train.target_words_mean, train.source_vocab) == (2, 2, 2.0, 2)


def test_split_pairs_dedupes_sources_and_ignores_input_order():
    pairs = [(f"s{i}", f"t{i}") for i in range(40)] + [("s1", "other")]
    a = split_pairs(pairs, seed=0)
    b = split_pairs(list(reversed(pairs[:40])), seed=0)
    assert a == b and sum(map(len, a)) == 40


# ---------------------------------------------------------------------- gettext
def test_read_mo_matches_python_gettext(tmp_path):
    path = write_mo(tmp_path / "t.mo", CATALOG)
    raw = catalogs.read_mo(path)
    with open(path, "rb") as f:
        reference = gettext.GNUTranslations(f)
    assert raw["Open the file"] == reference.gettext("Open the file") == "Ouvrir le fichier"
    assert raw["file\x00files"].split("\x00") == [reference.ngettext("file", "files", 1),
                                                  reference.ngettext("file", "files", 2)]  # fmt: skip
    assert raw["menu\x04Print"] == reference.pgettext("menu", "Print")


def test_gettext_pairs_are_cleaned(tmp_path):
    pairs = dict(catalogs.message_pairs(catalogs.read_mo(write_mo(tmp_path / "t.mo", CATALOG))))
    assert pairs == {
        "Open the file": "Ouvrir le fichier",
        "Save": "Enregistrer",
        "Quit": "Quitter",
        "Bold move": "Gras mouvement",
        "file": "fichier",
        "files": "fichiers",
        "Print": "Imprimer",
    }


def test_gettext_corpus_reads_a_locale_tree_and_votes_on_duplicates(tmp_path):
    root = tmp_path / "locale"
    write_mo(root / "xx" / "LC_MESSAGES" / "a.mo", CATALOG)
    write_mo(root / "xx" / "LC_MESSAGES" / "b.mo", {"Open the file": "Ouvrez le fichier", "Close": "Fermer"})
    write_mo(root / "xx" / "LC_MESSAGES" / "c.mo", {"Open the file": "Ouvrez le fichier"})
    corpus = load_corpus("gettext", "en-xx", locale_root=root)
    everything = dict(corpus.train + corpus.valid + corpus.test)
    assert everything["Open the file"] == "Ouvrez le fichier"  # 2 catalogs against 1
    assert len(everything) == 8 and "3 catalogs" in corpus.note


def test_gettext_without_catalogs_says_what_is_installed(tmp_path):
    write_mo(tmp_path / "fr" / "LC_MESSAGES" / "a.mo", CATALOG)
    with pytest.raises(FileNotFoundError, match=r"no \.mo catalogs for 'zz'.*en-fr \(1\)"):
        load_corpus("gettext", "en-zz", locale_root=tmp_path)


def test_read_mo_rejects_a_file_that_is_not_a_catalog(tmp_path):
    (tmp_path / "x.mo").write_bytes(b"not a catalog at all, sorry")
    with pytest.raises(ValueError, match="not a .mo file"):
        catalogs.read_mo(tmp_path / "x.mo")


# ---------------------------------------------------------------------- TSV
def test_read_tsv_normalizes_and_skips_blank_lines(tmp_path):
    (tmp_path / "c.tsv").write_text("one  two\teins zwei\r\n\n three\tdrei\n", encoding="utf-8")
    assert read_tsv(tmp_path / "c.tsv") == [("one two", "eins zwei"), ("three", "drei")]


def test_read_tsv_reports_every_malformed_line(tmp_path):
    lines = ["ok\tgut", "no tab here", "a\tb\tc", "\tempty source", "fine\tschön"]
    (tmp_path / "bad.tsv").write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe\tx\n")
    with pytest.raises(ValueError) as info:
        read_tsv(tmp_path / "bad.tsv")
    message = str(info.value)
    for expected in ("4 malformed line(s)", "line 2: expected 2 tab-separated columns, found 1",
                     "line 3: expected 2 tab-separated columns, found 3", "line 4: empty source", "line 6: not UTF-8"):
        assert expected in message  # fmt: skip


def test_read_tsv_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.tsv' does not exist"):
        load_corpus(f"tsv:{tmp_path / 'nope.tsv'}")


# ---------------------------------------------------------------------- tokenizer and batches
def test_tokenizer_round_trips_corpus_text_and_keeps_special_ids(tmp_path):
    corpus = load_corpus("numbers-dates", "en-fr", size=400)
    texts = [t for pair in corpus.train for t in pair]
    tok = SubwordTokenizer.train(texts, vocab_size=300)
    assert all(tok.decode(tok.encode(t)) == t for t in texts + [t for pair in corpus.test for t in pair])
    again = SubwordTokenizer.load(tok.save(tmp_path))
    assert again.encode("vingt et un <s>") == tok.encode("vingt et un <s>")
    assert tok.bos_id not in tok.encode("<s>")  # typed text is never a special token
    assert tok.tokens(tok.encode("2087"))[-4:] == ["2", "0", "8", "7"]  # digits are single tokens
    assert tok.decode(tok.encode("un") + [tok.eos_id, 7, 8]) == "un"


def test_tokenizer_rejects_a_tiny_vocabulary():
    with pytest.raises(ValueError, match="vocab_size must be an int > 4"):
        SubwordTokenizer.train(["a"], vocab_size=3)


def test_token_batches_cover_each_epoch_once_within_budget_and_shard_by_rank():
    examples = [([5] * (1 + i % 9), [6] * (1 + i % 5)) for i in range(200)]
    batches = TokenBatches(examples, max_tokens=64, seed=0, min_batch=2)
    plan = batches.epoch_plan(0)
    assert sorted(i for b in plan for i in b) == list(range(200))

    def cost(b):
        return len(b) * (max(batches.lengths[i][0] for i in b) + max(batches.lengths[i][1] for i in b))

    over = [b for b in plan if cost(b) > 64]  # only an epoch's last, too-small run joins a full batch
    assert len(over) <= 1 and all(cost(b[: len(b) - 1]) <= 64 for b in over)
    ranks = [TokenBatches(examples, max_tokens=64, seed=0, rank=r, world_size=2, min_batch=2) for r in (0, 1)]
    for step in (0, 5, len(plan) + 3):  # also in the second epoch
        whole = batches(step)
        shards = [r(step) for r in ranks]
        assert sum(s.src.shape[0] for s in shards) == whole.src.shape[0]
        assert shards[0].global_tokens == shards[1].global_tokens == whole.global_tokens
    assert torch.equal(batches(7).src, TokenBatches(examples, max_tokens=64, seed=0, min_batch=2)(7).src)


# ---------------------------------------------------------------------- training
def numbers_tsv(path: Path, count: int = 160) -> Path:
    from num2words import num2words

    lines = [f"{num2words(n, lang='en')}\t{num2words(n, lang='de')}" for n in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_config(tmp_path: Path, name: str, **changes) -> TranslationTrainConfig:
    settings = dict(corpus=f"tsv:{numbers_tsv(tmp_path / 'numbers.tsv')}", pair="en-de", size="tiny", steps=4,
                    vocab_size=120, max_tokens=256, dropout=0.0, eval_every=0, checkpoint_every=0,
                    out_dir=str(tmp_path / name), threads=1)  # fmt: skip
    return TranslationTrainConfig(**{**settings, **changes})


def model_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(Path(run_dir) / "model").state_dict()


def test_interrupted_training_saves_a_checkpoint_and_resumes_exactly(tmp_path):
    straight = train_translation(tiny_config(tmp_path, "straight", steps=6), progress=False)

    def interrupt(event, payload):
        if event == "eval":
            raise KeyboardInterrupt  # as Ctrl-C during step 3's validation

    with pytest.raises(KeyboardInterrupt):
        train_translation(tiny_config(tmp_path, "resumed", steps=6, eval_every=3), progress=False, report=interrupt)
    assert json.loads((tmp_path / "resumed" / "latest.json").read_text())["step"] == 3
    with pytest.raises(FileExistsError, match="add --resume"):
        train_translation(tiny_config(tmp_path, "resumed", steps=6), progress=False)
    resumed = train_translation(tiny_config(tmp_path, "resumed", steps=6), resume=True, progress=False)
    assert resumed.steps == 6
    a, b = model_weights(straight.run_dir), model_weights(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_runs_with_the_same_seed_and_steps_give_identical_weights(tmp_path):
    a = train_translation(tiny_config(tmp_path, "a", steps=5), progress=False)
    b = train_translation(tiny_config(tmp_path, "b", steps=5), progress=False)
    c = train_translation(tiny_config(tmp_path, "c", steps=5, seed=1), progress=False)
    wa, wb, wc = model_weights(a.run_dir), model_weights(b.run_dir), model_weights(c.run_dir)
    assert a.stop_reason == "max_steps" and not a.under_trained
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)  # the seed matters, so the equality above is not vacuous


def test_a_time_cap_that_stops_early_says_the_model_is_under_trained(tmp_path, capsys):
    from attnkit.apps.translate.render import print_train_result

    capped = train_translation(tiny_config(tmp_path, "capped", steps=10_000, minutes=1e-6), progress=False)
    assert capped.stop_reason == "max_minutes" and capped.steps < 10_000 and capped.under_trained
    print_train_result(capped, as_json=False)
    out = " ".join(capsys.readouterr().out.split())
    assert f"{capped.steps} of 10,000 steps" in out and "under-trained" in out and "--minutes" in out
    print_train_result(capped, as_json=True)
    doc = json.loads(capsys.readouterr().out)
    assert doc["under_trained"] is True and doc["planned_steps"] == 10_000 and "under-trained" in doc["stopped"]


def _ddp_worker(rank: int, world_size: int, port: int, settings: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))  # fmt: skip
    from attnkit.distributed import data_parallel as dp

    torch.set_num_threads(1)
    try:
        train_translation(TranslationTrainConfig(**settings), progress=False)
    finally:
        dp.shutdown(dp.init_from_env())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_data_parallel_two_processes_match_one_process_on_the_global_batch(tmp_path):
    import dataclasses

    import torch.multiprocessing as mp

    single = train_translation(tiny_config(tmp_path, "single", steps=3), progress=False)
    settings = dataclasses.asdict(tiny_config(tmp_path, "ddp", steps=3, eval_every=1))  # rank 0 decodes alone
    mp.spawn(_ddp_worker, args=(2, _free_port(), settings), nprocs=2, join=True)
    a, b = model_weights(single.run_dir), model_weights(tmp_path / "ddp")
    # The key bias adds the same q.b_k to every score of a row, which softmax ignores: its true gradient is 0,
    # and Adam (m / sqrt(v)) turns the rounding noise into steps of up to lr (about 5e-5 here) in either run.
    atol = {n: 1e-4 if n.endswith("w_k.bias") else 1e-5 for n in a}
    differ = {n: float((a[n] - b[n]).abs().max()) for n in a if not torch.allclose(a[n], b[n], rtol=1e-4, atol=atol[n])}
    assert not differ, f"parameters differ after 3 steps (max abs difference): {differ}"


# ---------------------------------------------------------------------- end to end
def train_tiny_en_fr(out: Path):
    """A tiny en-fr model trained for a few seconds (about 8 s of CPU) on numbers-dates.

    French spells numbers in several words, so BLEU credits a partly right translation
    early (German writes them as one long word, right or wrong).
    """
    config = TranslationTrainConfig(corpus="numbers-dates", pair="en-fr", size="tiny", corpus_size=3000, steps=200,
                                    max_tokens=1024, warmup_steps=200, eval_every=0, checkpoint_every=0,
                                    out_dir=str(out), threads=1)  # fmt: skip
    return train_translation(config, progress=False)


@pytest.mark.slow
def test_tiny_model_learns_numbers_dates_end_to_end(tmp_path, capsys):
    """One training run (xdist would repeat a shared fixture per worker), then everything that uses it."""
    from attnkit.apps.translate import Translator, cross_attention
    from attnkit.train import read_history

    run = train_tiny_en_fr(tmp_path / "run").run_dir
    losses = [r["loss"] for r in read_history(run / "history.jsonl") if r["kind"] == "train"]
    assert losses[0] > 4.0 and losses[-1] < 2.8, losses

    code, out, _ = run_cli(capsys, "eval", "--model", str(run), "--limit", "120", "--beam", "2", "--json")
    report = json.loads(out)
    assert code == 0 and report["split"] == "test" and report["model"]["sentences"] == 120
    assert report["model"]["bleu"] > report["copy_baseline"]["bleu"] + 10
    assert report["model"]["chrf"] > report["copy_baseline"]["chrf"] + 20

    png = tmp_path / "align.png"
    code, out, err = run_cli(capsys, "--model", str(run), "twenty-one", "March 2025", "--plot-attention", str(png))
    assert code == 0 and len(out.strip().splitlines()) == 2
    assert png.read_bytes()[:4] == b"\x89PNG" and str(png) in err

    translator = Translator.load(run)
    a = cross_attention(translator.model, translator.tokenizer, "Friday, May 1, 2026")
    N, H, T, S = a.weights.shape
    assert (N, H) == (2, 4) and (T, S) == (len(a.target_tokens), len(a.source_tokens))
    torch.testing.assert_close(a.weights.sum(-1), torch.ones(N, H, T))
    assert not translator.model.decoder.layers[0].cross_attn._forward_hooks  # the hooks are removed


# ---------------------------------------------------------------------- out-of-domain warning
@pytest.fixture(scope="module")
def number_words_model(tmp_path_factory):
    """A tiny model trained for a few seconds on English -> German number words 0..159."""
    tmp = tmp_path_factory.mktemp("ood")
    config = tiny_config(tmp, "run", steps=160, max_tokens=512, warmup_steps=40)
    return train_translation(config, progress=False).run_dir


def test_training_stores_a_confidence_calibration_that_loads_back(number_words_model):
    from attnkit.apps.translate import Calibration, Translator
    from attnkit.apps.translate.confidence import mean_token_log_probs

    info = json.loads((number_words_model / "model" / "translate.json").read_text())
    translator = Translator.load(number_words_model)
    calibration = translator.calibration
    assert isinstance(calibration, Calibration) and calibration.to_dict() == info["confidence"]
    assert calibration.percentile == 2.0 and calibration.threshold <= calibration.median <= 0.0
    # the stored threshold is the 2nd percentile of the scores of the validation sentences' greedy outputs
    valid = read_tsv(number_words_model / "data" / "valid.tsv")
    sources = [s for s, _ in valid]
    outputs = translator.translate(sources, beam_size=1)
    scores = torch.tensor(mean_token_log_probs(translator.model, translator.tokenizer, sources, outputs),
                          dtype=torch.float64)  # fmt: skip
    assert calibration.sentences == len(sources)
    assert calibration.threshold == pytest.approx(float(torch.quantile(scores, 0.02)), abs=1e-4)


def test_mean_token_log_probs_match_a_per_sentence_oracle(number_words_model):
    from attnkit.apps.translate import Translator
    from attnkit.apps.translate.confidence import mean_token_log_probs

    t = Translator.load(number_words_model)
    sources, outputs = ["twenty-one", "seven", "one hundred and three"], ["einundzwanzig", "sieben", "x y"]
    batched = mean_token_log_probs(t.model, t.tokenizer, sources, outputs)  # padded batch
    for source, output, got in zip(sources, outputs, batched, strict=True):  # one at a time, no padding, plain loops
        src = torch.tensor([t.tokenizer.encode(source) + [t.tokenizer.eos_id]])
        ids = t.tokenizer.encode(output) + [t.tokenizer.eos_id]
        with torch.no_grad():
            logits = t.model(src, torch.tensor([[t.tokenizer.bos_id] + ids[:-1]]))[0].double()
        expected = sum(float(logits[i].log_softmax(-1)[token]) for i, token in enumerate(ids)) / len(ids)
        assert got == pytest.approx(expected, abs=1e-4)


def test_cli_flags_an_out_of_domain_input_and_not_an_in_domain_one(number_words_model, capsys):
    # far from the threshold: "The cat sat on the mat." scored -0.13475 against -0.1349 on one machine
    outside = "Where is the railway station, please?"
    code, out, err = run_cli(capsys, "--model", str(number_words_model), "twenty-one", outside)
    assert code == 0 and len(out.strip().splitlines()) == 2  # stdout: the translations only
    assert f"'{outside}'" in err and "low confidence" in err and "'twenty-one'" not in err
    code, out, _ = run_cli(capsys, "--model", str(number_words_model), "twenty-one", outside, "--json")
    doc = json.loads(out)
    assert [t["out_of_domain"] for t in doc["translations"]] == [False, True]
    assert doc["confidence_check"]["available"] is True and doc["confidence_check"]["percentile"] == 2.0


def test_cli_loads_a_model_saved_before_calibration_and_says_the_check_is_absent(number_words_model, capsys,
                                                                                 tmp_path):  # fmt: skip
    import shutil

    old = tmp_path / "old-model"
    shutil.copytree(number_words_model / "model", old)
    info = json.loads((old / "translate.json").read_text())
    del info["confidence"]
    (old / "translate.json").write_text(json.dumps(info))
    code, out, err = run_cli(capsys, "--model", str(old), "Where is the railway station, please?", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["translations"][0]["out_of_domain"] is None and doc["translations"][0]["score"] < 0
    assert doc["confidence_check"]["available"] is False and "retrain" in doc["confidence_check"]["reason"]
    code, out, err = run_cli(capsys, "--model", str(old), "Where is the railway station, please?")
    assert code == 0 and out.strip() and "warning" not in err


def test_alignment_picture_names_source_and_output_axes(tmp_path, monkeypatch):
    from attnkit import viz
    from attnkit.apps.translate import cross_attention, plot_alignment
    from attnkit.nn import Transformer, TransformerConfig

    tok = SubwordTokenizer.train(["one two", "eins zwei"], vocab_size=40)
    model = Transformer(TransformerConfig(vocab_size=tok.vocab_size, d_model=16, num_heads=2, d_ff=32,
                                          num_encoder_layers=1, num_decoder_layers=2))  # fmt: skip
    alignment = cross_attention(model, tok, "one two", target="eins zwei")
    figures, save = [], viz._save_atomically
    monkeypatch.setattr(viz, "_save_atomically", lambda fig, path, dpi: figures.append(fig) or save(fig, path, dpi))
    plot_alignment(alignment, tmp_path / "a.png")
    *panels, colorbar = figures[0].axes
    assert len(panels) == 2 * 3  # 2 layers x (2 heads + their mean)
    assert panels[0].get_xlabel() == "source token (attended to)"
    assert panels[0].get_ylabel() == "output token (being produced)"
    assert colorbar.get_ylabel() == "cross-attention weight"
    assert [t.get_text() for t in panels[0].get_xticklabels()] == list(alignment.source_tokens)
    assert [t.get_text() for t in panels[0].get_yticklabels()] == list(alignment.target_tokens)
    assert "'one two' -> 'eins zwei'" in figures[0].get_suptitle()


# ---------------------------------------------------------------------- CLI errors
def test_cli_refuses_options_of_another_action(capsys):
    code, _, err = run_cli(capsys, "--steps", "5", "hello")
    owners = "`attnkit translate train` and `attnkit translate demo`"
    assert code == 2 and f"--steps is an option of {owners}, not of `attnkit translate`" in err


def test_cli_requires_a_model_to_translate(capsys):
    code, _, err = run_cli(capsys, "hello")
    assert code == 2 and "--model DIR is required" in err


def test_cli_points_at_a_missing_model_directory(capsys, tmp_path):
    code, _, err = run_cli(capsys, "eval", "--model", str(tmp_path))
    assert code == 2 and "no translation model there" in err and "attnkit translate train" in err


def test_cli_resume_without_a_run_says_so(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "none"), "--resume", "--steps", "2")
    assert code == 2 and "holds no checkpoint to resume" in err


def test_cli_data_reports_malformed_tsv_lines(capsys, tmp_path):
    (tmp_path / "c.tsv").write_text("a\tb\nbroken\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "data", "--corpus", f"tsv:{tmp_path / 'c.tsv'}")
    assert code == 2 and "line 2: expected 2 tab-separated columns, found 1" in err


def test_cli_data_prints_the_corpus_summary_as_json(capsys):
    code, out, _ = run_cli(capsys, "data", "--corpus-size", "100", "--pair", "en-it", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["pair"] == "en-it" and [s["pairs"] for s in summary["splits"]] == [90, 5, 5]


# ---------------------------------------------------------------------- docstrings
@pytest.mark.parametrize("name", ["data", "numbers_dates", "catalogs", "tokenizer", "batching", "model", "evaluate",
                                  "alignment", "run", "train", "confidence"])  # fmt: skip
def test_docstring_examples_run(name):
    module = importlib.import_module(f"attnkit.apps.translate.{name}")
    result = doctest.testmod(module, verbose=False, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples failed in {name}"


def test_data_parallel_helpers_are_no_ops_in_one_process():
    module = importlib.import_module("attnkit.distributed.data_parallel")
    assert doctest.testmod(module, verbose=False).failed == 0
    info = module.init_from_env(environ={})
    assert module.any_rank(True, info) and module.broadcast_object({"a": 1}, info) == {"a": 1}
    with pytest.raises(ValueError, match="launch with `torchrun"):
        module.init_from_env(environ={"WORLD_SIZE": "2"})


def test_demo_refuses_to_replace_a_directory_that_is_not_a_run(tmp_path):
    from attnkit.apps.translate import demo

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not a translation run"):
        demo(steps=1, out_dir=tmp_path, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_translate_console_does_not_wrap_piped_output(capsys):
    """Piped stdout is not a terminal: rich would hard-wrap sample rows at 80 columns."""
    from attnkit.apps.translate.render import console

    line = "  three thousand, one hundred and seventy-five  ->  dreitausendeinhundertfünfundsiebzig " * 2
    console(quiet=False).print(line)
    assert capsys.readouterr().out == line + "\n"


def test_translate_console_keeps_piped_table_cells_whole(capsys):
    from rich.table import Table

    from attnkit.apps.translate.render import console

    table = Table("source", "translation", "reference")
    table.add_row("two thousand, one hundred and eighty-seven", "zweitausendeinhundertsiebenundachtzig",
                  "zweitausendeinhundertsiebenundachtzig")  # fmt: skip
    console(quiet=False).print(table)
    out = capsys.readouterr().out
    assert "two thousand, one hundred and eighty-seven" in out
    assert out.count("zweitausendeinhundertsiebenundachtzig") == 2


def test_cli_html_explorer_cross_attention_equals_the_alignment_weights(number_words_model, capsys, tmp_path):
    """--html writes encoder, decoder and cross sections; cross rows are Alignment's (reference backend) to 16 bits."""
    import numpy as np

    from attnkit.apps.translate import Translator, cross_attention
    from attnkit.apps.translate.alignment import explore_translation

    out = tmp_path / "page.html"
    code, stdout, err = run_cli(capsys, "--model", str(number_words_model), "twenty-one", "--html", str(out))
    assert code == 0 and f"explorer: {out}" in err and out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    t = Translator.load(number_words_model)
    target = stdout.strip()
    page = explore_translation(t.model, t.tokenizer, "twenty-one", target=target)
    alignment = cross_attention(t.model, t.tokenizer, "twenty-one", target=target)  # need_weights: the oracle
    names = [(s.name, s.query_tokens, s.key_tokens) for s in page.sections]
    assert [n for n, *_ in names] == ["encoder", "decoder", "cross"]
    assert names[2][1:] == (alignment.target_tokens, alignment.source_tokens)
    cross = page.sections[2]
    values = np.frombuffer(cross.values, dtype="<u2").astype(np.float64).reshape(alignment.weights.shape) / 65535
    assert np.abs(values - alignment.weights.double().numpy()).max() <= 0.5 / 65535 + 2e-6
