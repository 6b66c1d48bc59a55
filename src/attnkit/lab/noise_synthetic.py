"""The synthetic half of ``attnkit lab noise``: recall through distractor tokens, attention vs an LSTM.

The task is multi-query associative recall (:class:`~attnkit.lab.tasks.RecallTask`) with
distractors inserted by :func:`~attnkit.lab.tasks.insert_distractors` so they make up a
fraction ``f`` of every sequence (0 to 50%). Distractors come from ``num_distractors``
token ids of their own (after the task's vocabulary): they never collide with a key or a
value, so a perfect model stays 100% accurate at every ``f`` and any loss is the model's
sensitivity to noise, not an ambiguity of the data. They fall anywhere, also between a key
and its value, so "the token after the key" becomes "the next non-distractor token".

For each ``f`` and seed, a Transformer (attention) and an LSTM at the same parameter
budget (:func:`~attnkit.lab.models.build_model`) are trained for the same number of
updates on fresh batches with distractors at ``f``, then scored on a fixed test set at
``f``. The models trained at ``f = 0`` are also scored at every ``f`` (noise never seen in
training), and their attention measured there. For the Transformer,
:func:`attention_on_query` says where the attention of each query position goes, per
layer: the mass on distractors, on the answer (the value of the queried pair) and on the
queried key, and the entropy of the attention row.

Shape legend: N sequences, L length, H heads.

Example:
    >>> config = SyntheticNoiseConfig(fractions=(0.0, 0.5), seeds=1, steps=2)
    >>> batch = make_batch(config, fraction=0.5, num_examples=2, seed=0)
    >>> batch.inputs.shape[1] == 2 * RecallTask(**config.task).length, bool(batch.distractor.float().mean() == 0.5)
    (True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .models import ModelSpec, TransformerTagger, build_model, evaluate, train_model
from .tasks import IGNORE, RecallTask, TaskBatch, insert_distractors

__all__ = ["SyntheticNoiseConfig", "make_batch", "attention_maps", "attention_on_query", "answer_positions",
           "run_synthetic", "chance", "MODELS"]  # fmt: skip

#: the two models compared: attention that can reach every position, and a recurrent network
MODELS = (ModelSpec("transformer", num_layers=2), ModelSpec("lstm", num_layers=1))


@dataclass(frozen=True)
class SyntheticNoiseConfig:
    """The recall task, the distractor fractions and the training budget of every model."""

    fractions: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)  # share of each sequence that is distractors
    seeds: int = 2  # training seeds per (model, fraction)
    steps: int = 1000  # optimizer updates per model (equal for all)
    batch_size: int = 32  # sequences per update (fresh every step)
    budget: int = 30_000  # parameters per model (matched widths)
    lr: float = 3e-3  # peak AdamW learning rate (warm-up then cosine), the same for both models
    test_examples: int = 512  # fixed test sequences per fraction
    num_distractors: int = 8  # distractor token ids, after the task's vocabulary
    task: dict = field(default_factory=lambda: {"vocab_size": 32, "num_pairs": 2, "distance": 8})  # RecallTask(**)

    def __post_init__(self) -> None:
        if not self.fractions or any(not 0.0 <= f <= 0.5 for f in self.fractions):
            raise ValueError(f"SyntheticNoiseConfig: fractions must be in [0, 0.5], got {self.fractions}")
        for name in ("seeds", "steps", "batch_size", "budget", "test_examples", "num_distractors"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SyntheticNoiseConfig: {name} must be an int >= 1, got {value!r}")
        RecallTask(**self.task)  # validates the task settings

    @property
    def vocab_size(self) -> int:
        """Task tokens plus distractor tokens."""
        return self.task["vocab_size"] + self.num_distractors


def make_batch(config: SyntheticNoiseConfig, *, fraction: float, num_examples: int, seed: int) -> TaskBatch:
    """Recall sequences (seeded), then distractors from their own ids making up ``fraction`` of each."""
    clean = RecallTask(**config.task).generate(num_examples, seed=seed)
    low = config.task["vocab_size"]
    return insert_distractors(clean, fraction, seed=seed + 7_777_777, tokens=(low, low + config.num_distractors))


def attention_maps(model: TransformerTagger, ids: Tensor) -> list[Tensor]:
    """The self-attention weights of every layer of ``model`` on ``ids (N, L)``: a list of ``(N, H, L, L)``."""
    x = model.embed(ids)  # (N, L) -> (N, L, d)
    maps = []
    for layer in model.encoder.layers:
        x, weights = layer(x, model.mask, need_weights=True)  # (N, L, d), (N, H, L, L)
        maps.append(weights)
    return maps


def answer_positions(batch: TaskBatch, num_pairs: int) -> tuple[Tensor, Tensor]:
    """For each supervised position of ``batch``: the position of its key and of its value (the answer).

    Read from the tokens: the key is the first earlier non-distractor occurrence of the
    query token among the pairs; the value is the next non-distractor position after it.
    Returns ``(key_at, value_at)``, each ``(Q,)`` for the ``Q`` supervised positions in
    row-major order (the order of ``batch.labels != IGNORE``).
    """
    keys_at, values_at = [], []
    distractor = batch.distractor if batch.distractor is not None else torch.zeros_like(batch.inputs, dtype=torch.bool)
    for row, labels, noise in zip(batch.inputs.tolist(), batch.labels.tolist(), distractor.tolist(), strict=True):
        real = [i for i, is_noise in enumerate(noise) if not is_noise]  # positions of the task's own tokens
        pair_slots = real[: 2 * num_pairs]  # k0 v0 k1 v1 ...
        for i, label in enumerate(labels):
            if label == IGNORE:
                continue
            k = next(j for j in pair_slots[::2] if row[j] == row[i])
            keys_at.append(k)
            values_at.append(pair_slots[pair_slots.index(k) + 1])
    return torch.tensor(keys_at), torch.tensor(values_at)


@torch.no_grad()
def attention_on_query(model: TransformerTagger, batch: TaskBatch, num_pairs: int) -> list[dict]:
    """Per layer, averaged over heads and query positions: where the attention of each query goes.

    ``distractor_mass``: total weight on distractor positions; ``uniform_distractor_mass``:
    what uniform attention over the visible positions would put there; ``answer_mass`` and
    ``key_mass``: weight on the value and on the key of the queried pair; ``entropy``
    (nats) of the attention row, beside ``uniform_entropy`` (log of the visible positions).
    """
    model.eval()
    supervised = batch.labels != IGNORE  # (N, L)
    rows, queries = supervised.nonzero(as_tuple=True)  # (Q,), (Q,)
    key_at, value_at = answer_positions(batch, num_pairs)
    noise = (batch.inputs < 0).float() if batch.distractor is None else batch.distractor.float()  # (N, L) 1 = noise
    visible = torch.arange(batch.inputs.shape[1]).unsqueeze(0) <= queries.unsqueeze(1)  # (Q, L) causal
    uniform_noise = (noise[rows] * visible).sum(-1) / visible.sum(-1)  # (Q,)
    out = []
    for layer, weights in enumerate(attention_maps(model, batch.inputs)):
        w = weights.mean(1)[rows, queries]  # (N, H, L, L) -> (N, L, L) -> (Q, L): each query's row
        entropy = -(w * w.clamp_min(1e-30).log()).sum(-1)  # (Q,)
        out.append({
            "layer": layer,
            "distractor_mass": float((w * noise[rows]).sum(-1).mean()),
            "uniform_distractor_mass": float(uniform_noise.mean()),
            "answer_mass": float(w.gather(1, value_at.unsqueeze(1)).mean()),
            "key_mass": float(w.gather(1, key_at.unsqueeze(1)).mean()),
            "entropy": float(entropy.mean()),
            "uniform_entropy": float(visible.sum(-1).float().log().mean()),
        })  # fmt: skip
    return out


Progress = Callable[[str, float], None]  # (what is happening, fraction of the part done)


def _jobs(config: SyntheticNoiseConfig) -> list[tuple[int, float, ModelSpec]]:
    return [(seed, f, spec) for seed in range(config.seeds) for f in config.fractions for spec in MODELS]


def run_synthetic(config: SyntheticNoiseConfig, rows: list[dict], *, save: Callable[[list[dict]], None],
                  progress: Progress | None = None) -> list[dict]:  # fmt: skip
    """Train and score every (seed, fraction, model), appending one row each to ``rows`` (saved after each).

    A (seed, fraction, model) already in ``rows`` is skipped (``--resume``); so are the
    cross scores of models trained at ``f = 0``, written in the same row.
    """
    progress = progress or (lambda what, done: None)
    jobs = _jobs(config)
    num_pairs = config.task["num_pairs"]
    tests = {f: make_batch(config, fraction=f, num_examples=config.test_examples, seed=10**9 + i)
             for i, f in enumerate(config.fractions)}  # fmt: skip
    for index, (seed, fraction, spec) in enumerate(jobs):
        key = {"part": "synthetic", "model": spec.name, "seed": seed, "fraction": fraction}
        if any(all(r.get(k) == v for k, v in key.items()) for r in rows):
            continue
        progress(f"{spec.name}, {fraction:.0%} distractors, seed {seed}", index / len(jobs))
        torch.manual_seed(seed)
        model = build_model(spec, config.vocab_size, config.vocab_size, config.budget)
        data = lambda step, f=fraction, s=seed: make_batch(  # noqa: E731
            config, fraction=f, num_examples=config.batch_size, seed=s * 1_000_003 + step)
        trainer = train_model(model, data, steps=config.steps, lr=config.lr, seed=seed)
        row = {**key, "parameters": sum(p.numel() for p in model.parameters()), "steps": config.steps,
               "final_loss": _last_loss(trainer.history), "accuracy": evaluate(model, tests[fraction])}  # fmt: skip
        if fraction == 0.0:
            row["accuracy_at"] = {f"{f:g}": evaluate(model, test) for f, test in tests.items()}
        if isinstance(model, TransformerTagger):
            row["attention"] = attention_on_query(model, tests[fraction], num_pairs)
            if fraction == 0.0:  # the clean-trained model facing distractors it never saw
                row["attention_at"] = {f"{f:g}": attention_on_query(model, test, num_pairs)
                                       for f, test in tests.items()}  # fmt: skip
        rows.append(row)
        save(rows)
    progress("synthetic part done", 1.0)
    return rows


def _last_loss(history: list[dict]) -> float | None:
    losses = [r["loss"] for r in history if r.get("kind") == "train" and "loss" in r]
    return None if not losses else float(losses[-1])


def chance(config: SyntheticNoiseConfig) -> float:
    """Accuracy of guessing a value uniformly: 1 / (number of value tokens)."""
    vocab = config.task["vocab_size"]
    return 1.0 / (vocab - vocab // 2)

