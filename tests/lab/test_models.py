"""Lab models: matched parameter counts, what a sliding window can see, and that each learns a trivial task."""

from __future__ import annotations

import pytest
import torch

from attnkit.lab.models import (
    LSTMTagger,
    ModelSpec,
    TransformerTagger,
    build_model,
    count_parameters,
    evaluate,
    match_width,
    task_stream,
    train_model,
)
from attnkit.lab.tasks import RecallTask

SPECS = [ModelSpec("transformer", 1), ModelSpec("transformer", 2), ModelSpec("transformer", 2, window=8),
         ModelSpec("lstm", 1), ModelSpec("lstm", 2)]  # fmt: skip


def test_lstm_parameter_count_matches_formula():
    h, v, c = 12, 10, 7  # torch LSTM: per layer 4h(in + h) weights and two 4h biases
    expected = v * h + 2 * (4 * h * (h + h) + 2 * 4 * h) + (h * c + c)
    assert count_parameters(LSTMTagger(v, c, hidden_size=h, num_layers=2)) == expected


@pytest.mark.parametrize("budget", [5_000, 20_000])
def test_build_model_matches_budget_within_five_percent(budget):
    counts = {s.name: count_parameters(build_model(s, 32, 32, budget)) for s in SPECS}
    assert all(abs(n - budget) <= 0.05 * budget for n in counts.values()), counts


def test_match_width_picks_closest_count():
    assert match_width(lambda w: torch.nn.Linear(w, 1, bias=False), budget=7, widths=[2, 5, 8, 11]) == 8


def test_sliding_window_output_ignores_tokens_outside_window():
    torch.manual_seed(0)
    model = TransformerTagger(12, 12, d_model=16, num_layers=1, window=3).eval()
    ids = torch.randint(0, 12, (1, 10))
    changed = ids.clone()
    changed[0, 2] = (ids[0, 2] + 1) % 12  # position 2 is outside the window of query 9 (keys 7, 8, 9)
    a, b = model(ids), model(changed)
    torch.testing.assert_close(a[0, 5:], b[0, 5:])  # queries 5..9 see keys > 2 only
    assert not torch.allclose(a[0, 2], b[0, 2])  # the changed position itself does change


def test_causal_transformer_output_ignores_future_tokens():
    torch.manual_seed(0)
    model = TransformerTagger(12, 12, d_model=16, num_layers=2).eval()
    ids = torch.randint(0, 12, (1, 8))
    changed = ids.clone()
    changed[0, 6:] = (ids[0, 6:] + 1) % 12
    torch.testing.assert_close(model(ids)[0, :6], model(changed)[0, :6])


@pytest.mark.parametrize("spec", [ModelSpec("lstm", 1), ModelSpec("transformer", 1)], ids=lambda s: s.name)
def test_model_learns_trivial_recall(spec):
    task = RecallTask(vocab_size=8, num_pairs=1, distance=2, random_non_queries=False, shuffle_queries=False)
    torch.manual_seed(0)
    model = build_model(spec, task.vocab_size, task.vocab_size, budget=3000)
    trainer = train_model(model, task_stream(task, 32, seed=0), steps=150, lr=1e-2, warmup=10)
    assert trainer.history[-1]["loss"] < 0.1
    assert evaluate(model, task.generate(200, seed=99)) > 0.95
