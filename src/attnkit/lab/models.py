"""Small sequence models for the lab tasks, at matched parameter counts, trained by attnkit's ``Trainer``.

* :class:`TransformerTagger` — token embedding, an :class:`attnkit.nn.Encoder` of 1-2
  layers (RoPE, pre-LN, no dropout), a linear read-out at every position; causal attention,
  optionally restricted to ``masks.sliding_window(window)``;
* :class:`LSTMTagger` — token embedding, ``torch.nn.LSTM`` of 1-2 layers, the same read-out.

Both map ``ids (B, L)`` to logits ``(B, L, num_outputs)``; the tasks of
:mod:`attnkit.lab.tasks` say which positions are scored. :func:`build_model` builds a
:class:`ModelSpec` at the width whose parameter count is closest to a budget
(:func:`match_width`), so every model of a sweep has about the same number of weights;
:func:`train_model` trains any of them with :class:`attnkit.train.Trainer` on a stream of
:class:`~attnkit.lab.tasks.TaskBatch` es and :func:`evaluate` scores one.

Shape legend: B batch, L sequence length, d width (d_model or LSTM hidden size), C outputs.

Example:
    >>> from attnkit.lab.tasks import RecallTask
    >>> spec = ModelSpec("lstm", num_layers=1)
    >>> model = build_model(spec, vocab_size=16, num_outputs=16, budget=5000)
    >>> abs(count_parameters(model) - 5000) < 700
    True
    >>> model(torch.zeros(2, 7, dtype=torch.long)).shape
    torch.Size([2, 7, 16])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import masks
from ..nn import Encoder, RotaryEmbedding, TransformerConfig
from ..train import Trainer, TrainerConfig
from .tasks import IGNORE, TaskBatch

__all__ = [
    "TransformerTagger",
    "LSTMTagger",
    "ModelSpec",
    "build_model",
    "count_parameters",
    "match_width",
    "task_stream",
    "train_model",
    "evaluate",
]


class TransformerTagger(nn.Module):
    """Embedding -> ``num_layers`` encoder layers (causal, optionally a sliding window) -> linear, per position.

    Example:
        >>> m = TransformerTagger(vocab_size=10, num_outputs=10, d_model=16, num_layers=2, window=4)
        >>> m(torch.zeros(3, 9, dtype=torch.long)).shape
        torch.Size([3, 9, 10])
    """

    def __init__(
        self,
        vocab_size: int,
        num_outputs: int,
        *,
        d_model: int = 64,
        num_heads: int = 2,
        num_layers: int = 2,
        d_ff: int | None = None,
        window: int | None = None,
        causal: bool = True,
    ):
        super().__init__()
        config = TransformerConfig(vocab_size=vocab_size, d_model=d_model, num_heads=num_heads,
                                   d_ff=2 * d_model if d_ff is None else d_ff, num_encoder_layers=num_layers,
                                   num_decoder_layers=0, dropout=0.0, positional="rotary",
                                   tie_embeddings=False)  # fmt: skip
        self.embed = nn.Embedding(vocab_size, d_model)
        self.encoder = Encoder(config, RotaryEmbedding(config.d_head, base=config.rope_base))
        self.head = nn.Linear(d_model, num_outputs)
        if window is not None:
            self.mask: masks.Mask | None = masks.sliding_window(window, causal=causal)
        else:
            self.mask = masks.causal() if causal else None
        self.window = window

    def forward(self, ids: Tensor) -> Tensor:
        x = self.embed(ids)  # (B, L) -> (B, L, d)
        x = self.encoder(x, self.mask)  # (B, L, d)
        return self.head(x)  # (B, L, d) -> (B, L, C)


class LSTMTagger(nn.Module):
    """Embedding -> ``torch.nn.LSTM`` (``num_layers``, left to right) -> linear, per position.

    Example:
        >>> LSTMTagger(vocab_size=10, num_outputs=4, hidden_size=8)(torch.zeros(2, 5, dtype=torch.long)).shape
        torch.Size([2, 5, 4])
    """

    def __init__(self, vocab_size: int, num_outputs: int, *, hidden_size: int = 64, num_layers: int = 1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, hidden_size)
        self.lstm = nn.LSTM(hidden_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, num_outputs)

    def forward(self, ids: Tensor) -> Tensor:
        x = self.embed(ids)  # (B, L) -> (B, L, d)
        x, _ = self.lstm(x)  # (B, L, d)
        return self.head(x)  # (B, L, d) -> (B, L, C)


@dataclass(frozen=True)
class ModelSpec:
    """One model of a sweep, without its width (the width follows from the parameter budget).

    Example:
        >>> ModelSpec("transformer", num_layers=2, window=8).name
        'transformer-2L-w8'
    """

    kind: str  # "transformer" | "lstm"
    num_layers: int = 1  # encoder layers or stacked LSTM layers (1 or 2 in the lab)
    window: int | None = None  # transformer only: sliding_window(window); None = full causal attention
    num_heads: int = 2  # transformer only: heads per layer

    def __post_init__(self) -> None:
        if self.kind not in ("transformer", "lstm"):
            raise ValueError(f"ModelSpec: kind must be 'transformer' or 'lstm', got {self.kind!r}")
        if isinstance(self.num_layers, bool) or not isinstance(self.num_layers, int) or self.num_layers < 1:
            raise ValueError(f"ModelSpec: num_layers must be a positive int, got {self.num_layers!r}")
        if self.window is not None and (self.kind != "transformer" or not isinstance(self.window, int)
                                        or self.window < 1):  # fmt: skip
            raise ValueError(f"ModelSpec: window must be None or a positive int, and only for a transformer; "
                             f"got window={self.window!r} for kind={self.kind!r}")  # fmt: skip

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.num_layers}L" + ("" if self.window is None else f"-w{self.window}")

    def make(self, vocab_size: int, num_outputs: int, width: int, d_ff: int | None = None) -> nn.Module:
        """The model at ``width`` (d_model, a multiple of ``num_heads``, or the LSTM hidden size).

        ``d_ff``: the transformer's feed-forward width (None: ``2 * width``).
        """
        if self.kind == "lstm":
            return LSTMTagger(vocab_size, num_outputs, hidden_size=width, num_layers=self.num_layers)
        return TransformerTagger(vocab_size, num_outputs, d_model=width, num_heads=self.num_heads,
                                 num_layers=self.num_layers, d_ff=d_ff, window=self.window)  # fmt: skip


def count_parameters(model: nn.Module) -> int:
    """Number of trainable weights."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def match_width(make: Callable[[int], nn.Module], budget: int, widths: Iterable[int]) -> int:
    """The width among ``widths`` whose model ``make(width)`` has the parameter count closest to ``budget``.

    Assumes the count grows with the width (bisection: a few models are built, not all).

    Example:
        >>> match_width(lambda w: nn.Linear(w, w), budget=110, widths=range(1, 20))  # 10*10 + 10 weights
        10
    """
    candidates = sorted(widths)
    if not candidates:
        raise ValueError("match_width(): widths is empty; pass the candidate widths, e.g. range(2, 257, 2)")
    lo, hi = 0, len(candidates) - 1
    while lo < hi:  # the first width whose count reaches the budget
        mid = (lo + hi) // 2
        if count_parameters(make(candidates[mid])) < budget:
            lo = mid + 1
        else:
            hi = mid
    near = candidates[max(0, lo - 1) : lo + 1]
    return min(near, key=lambda w: (abs(count_parameters(make(w)) - budget), w))


def build_model(spec: ModelSpec, vocab_size: int, num_outputs: int, budget: int) -> nn.Module:
    """``spec`` with the parameter count closest to ``budget``: the width, then (transformer) ``d_ff`` fine-tunes."""
    if spec.kind == "lstm":
        width = match_width(lambda w: spec.make(vocab_size, num_outputs, w), budget, range(1, 1025))
        return spec.make(vocab_size, num_outputs, width)
    step = spec.num_heads * 2  # d_model: a multiple of num_heads with an even head_dim (RoPE)
    square = lambda w: spec.make(vocab_size, num_outputs, w, w)  # noqa: E731  (d_ff = d_model, then widened)
    width = match_width(square, budget, range(step, 1025, step))
    if width > step and count_parameters(square(width)) > budget:
        width -= step  # leave d_ff room to reach the budget from below
    with_ff = lambda d_ff: spec.make(vocab_size, num_outputs, width, d_ff)  # noqa: E731
    return with_ff(match_width(with_ff, budget, range(1, 16 * width + 1)))


def task_stream(task, batch_size: int, seed: int) -> Callable[[int], TaskBatch]:
    """``step -> task.generate(batch_size, seed=...)``: fresh examples every step, reproducible from ``seed``."""
    return lambda step: task.generate(batch_size, seed=seed * 1_000_003 + step)


def _loss(model: nn.Module, batch: TaskBatch) -> tuple[Tensor, int]:
    logits = model(batch.inputs)  # (B, L, C)
    loss = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE)  # (B*L, C), (B*L,)
    return loss, int((batch.labels != IGNORE).sum())


def train_model(model: nn.Module, data: Callable[[int], TaskBatch], *, steps: int, lr: float = 3e-3,
                seed: int = 0, warmup: int = 50, progress: bool = False, **trainer_options) -> Trainer:  # fmt: skip
    """Train with AdamW (linear warm-up, then cosine decay) and cross-entropy on the supervised positions.

    Returns the :class:`~attnkit.train.Trainer` after ``fit()`` (``.history``: losses).
    ``trainer_options`` go to :class:`~attnkit.train.TrainerConfig` (e.g. ``out_dir``).
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _rate(s, steps, warmup))
    config = TrainerConfig(max_steps=steps, log_every=max(1, min(50, steps // 4)), seed=seed,
                           **{"grad_clip": 1.0, **trainer_options})  # fmt: skip
    trainer = Trainer(model, optimizer, loss_fn=_loss, data=data, config=config, scheduler=schedule,
                      progress=progress)  # fmt: skip
    trainer.fit()
    return trainer


def _rate(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def evaluate(model: nn.Module, batch: TaskBatch, batch_size: int = 256) -> float:
    """Accuracy of ``model`` on the supervised positions of ``batch`` (in chunks of ``batch_size`` rows)."""
    was_training = model.training
    model.eval()
    hits, total = 0, 0
    try:
        for i in range(0, batch.inputs.shape[0], batch_size):
            labels = batch.labels[i : i + batch_size]  # (b, L)
            predicted = model(batch.inputs[i : i + batch_size]).argmax(-1)  # (b, L, C) -> (b, L)
            keep = labels != IGNORE
            hits += int((predicted[keep] == labels[keep]).sum())
            total += int(keep.sum())
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("evaluate(): batch has no supervised position (all labels are IGNORE)")
    return hits / total
