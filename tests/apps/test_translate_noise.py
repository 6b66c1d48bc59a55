"""attnkit.apps.translate.noise: the perturbations do what they say; robustness and consistency; --noise training.

Oracles: a Levenshtein distance written here (the textbook dynamic programme), binomial
sampling error for the rates, sacrebleu for BLEU, and a training run without noise.
"""

from __future__ import annotations

import importlib
import json
import math
import random
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attnkit import checkpoint, cli
from attnkit.apps.translate.batching import TokenBatches
from attnkit.apps.translate.noise import (
    NoisySources,
    Perturbation,
    change_case,
    consistency,
    misspell,
    misspell_word,
    perturb_sentences,
    robustness,
)
from attnkit.apps.translate.tokenizer import SubwordTokenizer
from attnkit.apps.translate.train import TranslationTrainConfig, train_translation


def tiny_config(tmp_path: Path, name: str, **changes) -> TranslationTrainConfig:
    """A few steps of a tiny model on 160 numbers (as in test_translate.py)."""
    from num2words import num2words

    tsv = tmp_path / "numbers.tsv"
    tsv.write_text("".join(f"{num2words(n, lang='en')}\t{num2words(n, lang='de')}\n" for n in range(160)),
                   encoding="utf-8")  # fmt: skip
    settings = dict(corpus=f"tsv:{tsv}", pair="en-de", size="tiny", steps=4, vocab_size=120, max_tokens=256,
                    dropout=0.0, eval_every=0, checkpoint_every=0, out_dir=str(tmp_path / name), threads=1)  # fmt: skip
    return TranslationTrainConfig(**{**settings, **changes})


def model_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(Path(run_dir) / "model").state_dict()


def levenshtein(a: str, b: str) -> int:
    """Edits (insert, delete, substitute one character) turning a into b: the Wagner-Fischer table."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def test_levenshtein_oracle_on_hand_computed_pairs():
    assert [levenshtein(*p) for p in [("kitten", "sitting"), ("", "ab"), ("seven", "seven"), ("ab", "ba")]] == [
        3, 2, 0, 2]  # fmt: skip


WORDS = st.text(alphabet=st.characters(blacklist_categories=("Z", "C")), min_size=1, max_size=12)


@given(WORDS.filter(lambda w: any(c.isalpha() for c in w)), st.integers(0, 2**32))
def test_misspell_word_is_exactly_one_edit_away_and_keeps_the_non_letters(word, seed):
    out = misspell_word(word, random.Random(seed))
    assert levenshtein(word, out) == 1
    assert out and not any(c.isspace() for c in out)  # still one non-empty word
    assert [c for c in out if not c.isalpha()] == [c for c in word if not c.isalpha()]  # digits, punctuation stay


@given(st.lists(WORDS, min_size=1, max_size=15), st.floats(0, 1), st.integers(0, 2**32))
def test_misspell_keeps_the_words_and_edits_each_at_most_once(words, p, seed):
    text = " ".join(words)
    out = misspell(text, p, random.Random(seed)).split(" ")
    assert len(out) == len(words)
    assert all(levenshtein(a, b) <= 1 for a, b in zip(words, out, strict=True))
    assert all(a == b for a, b in zip(words, out, strict=True) if not any(c.isalpha() for c in a))


@given(st.text(max_size=40), st.floats(0, 1), st.integers(0, 2**32))
def test_change_case_gives_the_text_upper_lower_or_unchanged(text, q, seed):
    assert change_case(text, q, random.Random(seed)) in (text, text.upper(), text.lower())


def test_probability_zero_changes_nothing_and_one_changes_every_word():
    words = ["seven", "hundred", "and", "one", "a", "May", "3,"] * 20
    assert misspell(" ".join(words), 0.0, random.Random(0)) == " ".join(words)
    out = misspell(" ".join(words), 1.0, random.Random(0)).split()
    assert all(levenshtein(a, b) == (a != "3,") for a, b in zip(words, out, strict=True))


@pytest.mark.parametrize("p", [0.05, 0.1, 0.2])
def test_misspelled_word_rate_is_p_within_sampling_error(p):
    n = 20_000
    out = misspell(" ".join(["september", "1955"] * n), p, random.Random(7)).split()
    assert out[1::2] == ["1955"] * n
    rate = sum(w != "september" for w in out[::2]) / n
    assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_edits_are_split_evenly_between_delete_insert_substitute():
    n = 6000
    lengths = [len(misspell_word("november", random.Random(i))) for i in range(n)]
    shares = [lengths.count(k) / n for k in (7, 9, 8)]  # delete, insert, substitute
    assert all(abs(s - 1 / 3) < 4 * math.sqrt(2 / 9 / n) for s in shares)


def test_case_change_rate_and_direction_within_sampling_error():
    n, q = 8000, 0.5
    out = perturb_sentences(["Monday 3 May"] * n, Perturbation(case=q), seed=3)
    upper, lower = out.count("MONDAY 3 MAY") / n, out.count("monday 3 may") / n
    assert abs(upper + lower - q) < 4 * math.sqrt(q * (1 - q) / n)
    assert abs(upper - q / 2) < 4 * math.sqrt(q / 2 * (1 - q / 2) / n)


def test_perturb_sentences_is_seeded_per_sentence():
    texts = [f"number {i} of twenty" for i in range(30)]
    noise = Perturbation(misspell=0.3, case=0.3)
    a, b = perturb_sentences(texts, noise, seed=1), perturb_sentences(texts, noise, seed=1)
    assert a == b != perturb_sentences(texts, noise, seed=2)
    assert perturb_sentences(texts[:10], noise, seed=1) == a[:10]  # a sentence's noise does not depend on the others


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True])
def test_probabilities_outside_0_1_are_refused_naming_the_argument(bad):
    with pytest.raises(ValueError, match="misspell must be a probability"):
        Perturbation(misspell=bad)


def test_consistency_is_the_harmonic_mean_of_bleu_both_ways():
    import sacrebleu

    a = ["am ersten März zweitausend und eins", "sieben hundert drei und zwanzig Euro"]
    b = ["am ersten März zweitausend und zwei", "sieben hundert drei Euro"]
    forward, backward = sacrebleu.corpus_bleu(b, [a]).score, sacrebleu.corpus_bleu(a, [b]).score
    assert forward != backward  # BLEU is not symmetric: the harmonic mean is needed
    assert consistency(a, b) == pytest.approx(2 * forward * backward / (forward + backward), abs=0.02)
    assert consistency(a, a) == pytest.approx(100.0)


class Echo:
    """A stand-in translator: the "translation" is the source, so BLEU(t', t) is the noise's own damage."""


def test_robustness_is_the_ratio_of_bleu_on_perturbed_and_clean_input(monkeypatch):
    import sacrebleu

    evaluate_module = importlib.import_module("attnkit.apps.translate.evaluate")
    monkeypatch.setattr(evaluate_module, "translate_batch", lambda model, tok, sources, beam_size: list(sources))
    pairs = [(f"the {w} of march two thousand and {w}", f"the {w} of march two thousand and {w}")
             for w in ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")]  # fmt: skip
    report = robustness(Echo(), None, pairs, Perturbation(misspell=0.3), seed=0)
    noisy = perturb_sentences([s for s, _ in pairs], Perturbation(misspell=0.3), seed=0)
    expected = sacrebleu.corpus_bleu(noisy, [[t for _, t in pairs]]).score
    assert report.bleu_clean == pytest.approx(100.0)
    assert report.bleu_perturbed == pytest.approx(expected, abs=0.01)
    assert report.robustness == pytest.approx(expected / 100.0, abs=1e-3)
    assert report.changed == sum(a != b for a, b in zip([s for s, _ in pairs], noisy, strict=True)) / len(pairs)


def test_noisy_sources_keep_the_plan_and_targets_and_redraw_the_noise_each_step():
    texts = [f"word{i} and more" for i in range(40)]
    tok = SubwordTokenizer.train(texts, vocab_size=80)
    clean = TokenBatches([(tok.encode(t), [5, 6]) for t in texts], max_tokens=64, seed=0, min_batch=2)
    noisy = NoisySources(clean, texts, tok, Perturbation(misspell=0.5), seed=0)
    for step in range(3):
        assert torch.equal(noisy(step).tgt, clean(step).tgt) and noisy(step).global_tokens == clean(step).global_tokens
        assert torch.equal(noisy(step).src, noisy(step).src)  # a pure function of the step: resume is exact
    appearances = [s for s in range(6 * clean.batches_per_epoch()) if 0 in clean.global_indices(s)]  # 6 epochs
    draws = {tok.decode(noisy(s).src[clean.global_indices(s).index(0)].tolist()) for s in appearances}
    assert len(draws) > 1  # fresh noise when the pair comes back


def test_training_with_noise_changes_the_weights_and_resumes_exactly(tmp_path):
    clean = train_translation(tiny_config(tmp_path, "clean", steps=4), progress=False)
    noisy = train_translation(tiny_config(tmp_path, "noisy", steps=4, noise=0.3), progress=False)
    wc, wn = model_weights(clean.run_dir), model_weights(noisy.run_dir)
    assert not all(torch.equal(wc[k], wn[k]) for k in wc)
    assert json.loads((noisy.run_dir / "run.json").read_text())["settings"]["noise"] == 0.3

    def interrupt(event, payload):
        if event == "eval":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_translation(tiny_config(tmp_path, "resumed", steps=4, noise=0.3, eval_every=2), progress=False,
                          report=interrupt)  # fmt: skip
    resumed = train_translation(tiny_config(tmp_path, "resumed", steps=4), resume=True, progress=False)
    wr = model_weights(resumed.run_dir)
    assert all(torch.equal(wn[k], wr[k]) for k in wn)  # the saved noise setting was reused and redrawn identically


def test_cli_train_noise_is_a_probability(capsys, tmp_path):
    assert cli.main(["translate", "train", "--noise", "1.5", "--out", str(tmp_path / "x")]) == 2
    assert "--noise" in capsys.readouterr().err
