"""``TrainerConfig``: how long to train, how often to log, evaluate and checkpoint.

Example:
    >>> TrainerConfig(max_steps=100, log_every=10, out_dir="runs/copy").checkpoint_every
    0
    >>> TrainerConfig(max_steps=0)
    Traceback (most recent call last):
    ...
    ValueError: TrainerConfig: max_steps must be a positive int, got 0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["TrainerConfig"]


@dataclass(frozen=True)
class TrainerConfig:
    """Settings of :class:`~attnkit.train.Trainer` (saved in every checkpoint's ``trainer.json``)."""

    max_steps: int = 1000  # optimizer updates in total, counting those done before a resume
    max_minutes: float | None = None  # wall-clock budget of one fit() call; None = no limit; stops with a checkpoint
    log_every: int = 10  # steps per history record (mean loss of the window) and progress refresh
    checkpoint_every: int = 0  # steps between periodic checkpoints; 0 = only at the end, timeout or interrupt
    eval_every: int = 0  # steps between calls of the eval hook; 0 = never
    grad_clip: float | None = 1.0  # max global L2 norm of the gradients; None = no clipping
    out_dir: str | None = None  # checkpoints/ and history.jsonl go here; None = write nothing (no resume)
    seed: int = 0  # seeds torch, random and numpy at the start of a fresh run
    keep_checkpoints: int = 1  # newest checkpoints kept under out_dir/checkpoints; older ones are deleted
    ema_decay: float | None = None  # keep an exponential moving average of the weights (e.g. 0.995); None = off

    def __post_init__(self) -> None:
        for name in ("max_steps", "log_every", "keep_checkpoints"):
            _int_at_least(name, getattr(self, name), 1)
        for name in ("checkpoint_every", "eval_every", "seed"):
            _int_at_least(name, getattr(self, name), 0)
        decay = self.ema_decay
        is_number = isinstance(decay, (int, float)) and not isinstance(decay, bool)
        if decay is not None and (not is_number or not 0.0 < decay < 1.0):
            raise ValueError(f"TrainerConfig: ema_decay must be in (0, 1) or None, got {decay!r}; e.g. 0.995")
        for name in ("max_minutes", "grad_clip"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
                raise ValueError(f"TrainerConfig: {name} must be a number > 0 (not NaN) or None, got {value!r}")
        if self.out_dir is not None and not isinstance(self.out_dir, str):
            raise TypeError(f"TrainerConfig: out_dir must be a str path or None, got {type(self.out_dir).__name__}; "
                            "use str(path)")  # fmt: skip

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _int_at_least(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "a positive int" if low == 1 else f"an int >= {low}"
        raise ValueError(f"TrainerConfig: {name} must be {kind}, got {value!r}")
