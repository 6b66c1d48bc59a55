"""``attnkit lab noise``: distractor batches, attention bookkeeping, the translation part, the command end to end.

Oracles: the generator's own labels (the token at the computed answer position must be
the label), the model's forward pass (the per-layer attention walk must reproduce it),
hand-computed attention masses, and hand-made result rows for the tables.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from attnkit import cli
from attnkit.lab.models import ModelSpec, build_model
from attnkit.lab.noise_report import synthetic_table, translation_table
from attnkit.lab.noise_synthetic import (
    SyntheticNoiseConfig,
    answer_positions,
    attention_maps,
    attention_on_query,
    make_batch,
)
from attnkit.lab.noise_translation import TranslationNoiseConfig, run_translation
from attnkit.lab.tasks import IGNORE, TaskBatch, recall_answers

CONFIG = SyntheticNoiseConfig(fractions=(0.0, 0.5), seeds=1, steps=2, test_examples=16)


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5])
def test_distractor_batches_keep_the_task_and_use_their_own_tokens(fraction):
    batch = make_batch(CONFIG, fraction=fraction, num_examples=64, seed=3)
    vocab = CONFIG.task["vocab_size"]
    assert bool((batch.inputs[batch.distractor] >= vocab).all())
    assert bool((batch.inputs[~batch.distractor] < vocab).all())
    share = batch.distractor.float().mean().item()
    assert abs(share - fraction) < 1 / batch.inputs.shape[1] + 1e-9
    expected = recall_answers(batch.inputs, CONFIG.task["num_pairs"], batch.distractor)  # the evaluator of tasks.py
    assert torch.equal(expected, batch.labels)


@pytest.mark.parametrize("fraction", [0.0, 0.4])
def test_answer_positions_hold_the_label_and_the_query_key(fraction):
    batch = make_batch(CONFIG, fraction=fraction, num_examples=32, seed=5)
    rows, queries = (batch.labels != IGNORE).nonzero(as_tuple=True)
    key_at, value_at = answer_positions(batch, CONFIG.task["num_pairs"])
    assert torch.equal(batch.inputs[rows, value_at], batch.labels[rows, queries])  # the answer is the label
    assert torch.equal(batch.inputs[rows, key_at], batch.inputs[rows, queries])  # the key is the query token
    assert bool((key_at < value_at).all() and (value_at < queries).all())
    assert not bool(batch.distractor[rows, value_at].any())


def test_attention_maps_walk_the_layers_as_the_forward_pass_does():
    torch.manual_seed(0)
    model = build_model(ModelSpec("transformer", num_layers=2), CONFIG.vocab_size, CONFIG.vocab_size, 6000).eval()
    ids = make_batch(CONFIG, fraction=0.3, num_examples=3, seed=0).inputs
    maps = attention_maps(model, ids)
    assert len(maps) == 2 and maps[0].shape == (3, 2, ids.shape[1], ids.shape[1])
    assert torch.allclose(maps[1].sum(-1), torch.ones(3, 2, ids.shape[1]), atol=1e-5)
    assert bool((maps[0].triu(1) == 0).all())  # causal: nothing above the diagonal


def test_attention_on_query_matches_hand_counts_for_uniform_attention(monkeypatch):
    from attnkit.lab import noise_synthetic

    inputs = torch.tensor([[3, 20, 40, 9, 41, 3]])  # k=3 v=20 (distractor 40) k=9... query 3 at position 5
    labels = torch.tensor([[IGNORE, IGNORE, IGNORE, IGNORE, IGNORE, 20]])
    distractor = torch.tensor([[False, False, True, False, True, False]])
    batch = TaskBatch(inputs, labels, distractor)
    uniform = torch.tril(torch.ones(6, 6)) / torch.arange(1, 7).unsqueeze(1)  # (L, L) causal, uniform per row
    monkeypatch.setattr(noise_synthetic, "attention_maps", lambda model, ids: [uniform.expand(1, 2, 6, 6)])
    (layer,) = attention_on_query(torch.nn.Identity(), batch, num_pairs=1)
    assert layer["distractor_mass"] == pytest.approx(2 / 6) and layer["uniform_distractor_mass"] == pytest.approx(2 / 6)
    assert layer["answer_mass"] == pytest.approx(1 / 6) and layer["key_mass"] == pytest.approx(1 / 6)
    assert layer["entropy"] == pytest.approx(math.log(6)) and layer["uniform_entropy"] == pytest.approx(math.log(6))


def test_tables_average_over_seeds_and_noise_draws():
    rows = [{"part": "synthetic", "model": "transformer-2L", "seed": s, "fraction": 0.5, "accuracy": a}
            for s, a in ((0, 0.9), (1, 0.5))]  # fmt: skip
    assert synthetic_table(rows) == [{"model": "transformer-2L", "fraction": 0.5, "accuracy": 0.7, "low": 0.5,
                                      "high": 0.9, "seeds": 2}]  # fmt: skip
    draws = [{"part": "translation", "model": "m", "corpus": "numbers-dates", "train_noise": 0.0, "seed": 0,
              "perturbation": "misspell 0.1", "bleu_clean": 80.0, "bleu_perturbed": b, "robustness": b / 80,
              "consistency": c, "changed": 0.3} for b, c in ((40.0, 50.0), (60.0, 70.0))]  # fmt: skip
    (row,) = translation_table(draws)
    assert row["robustness"] == pytest.approx(0.625) and row["consistency"] == pytest.approx(60.0)
    assert row["robustness_sd"] == pytest.approx(math.sqrt(2) * 0.125, abs=1e-4)


def test_translation_part_trains_measures_and_resumes(tmp_path):
    config = TranslationNoiseConfig(corpora=("numbers-dates",), train_noise=(0.0, 0.2), steps=3, test_sentences=12,
                                    noise_seeds=2, corpus_size=300)  # fmt: skip
    saves: list[int] = []
    rows = run_translation(config, tmp_path, [], save=lambda r: saves.append(len(r)))
    assert saves == [8, 16]  # 4 perturbations x 2 draws, per model, saved after each model
    assert {r["train_noise"] for r in rows} == {0.0, 0.2} and all(r["sentences"] == 12 for r in rows)
    assert json.loads((tmp_path / "models" / rows[-1]["model"] / "run.json").read_text())["settings"]["noise"] == 0.2
    again = run_translation(config, tmp_path, list(rows), save=lambda r: saves.append(len(r)))
    assert again == rows and saves == [8, 16]  # --resume: nothing redone


def test_lab_noise_end_to_end_writes_results_report_and_plot_and_resumes(tmp_path, capsys):
    out = tmp_path / "noise"
    argv = ["lab", "noise", "--part", "synthetic", "--fractions", "0,0.5", "--seeds", "1", "--steps", "3",
            "--out", str(out), "--json"]  # fmt: skip
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    doc = json.loads((out / "results.json").read_text())
    assert printed["rows"] == 4 == len(doc["rows"])  # 2 fractions x (transformer, LSTM)
    assert {r["model"] for r in doc["rows"]} == {"transformer-2L", "lstm-1L"}
    clean = next(r for r in doc["rows"] if r["model"] == "transformer-2L" and r["fraction"] == 0.0)
    assert set(clean["accuracy_at"]) == set(clean["attention_at"]) == {"0", "0.5"}
    assert (out / "synthetic.png").stat().st_size > 0 and "## Synthetic" in (out / "report.md").read_text()
    assert cli.main(argv) == 2 and "--resume" in capsys.readouterr().err  # no silent overwrite
    assert cli.main([*argv, "--resume"]) == 0
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["rows"] == doc["rows"]
    assert len(resumed["commands"]) == 2 and resumed["commands"][1].endswith("--resume")
    assert "attnkit lab noise --part synthetic --fractions 0,0.5" in (out / "report.md").read_text()
