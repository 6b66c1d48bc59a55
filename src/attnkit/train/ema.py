"""Exponential moving average of the weights (Polyak averaging), the streaming form of the paper's
checkpoint averaging.

The Transformer paper evaluates "a single model obtained by averaging the last 5
checkpoints"; an EMA keeps such an average as training goes, at the cost of one
``lerp`` per parameter per update::

    shadow = d * shadow + (1 - d) * weights,   d = min(decay, (1 + t) / (10 + t))

(the ramp on ``d`` lets the first updates count fully: a fresh average is not stuck
near the random initialization). Evaluate or save the average with :meth:`applied`
or :meth:`copy_to`; the model's own weights keep training.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(2, 1)
    >>> ema = ExponentialMovingAverage(model, decay=0.5)
    >>> with torch.no_grad():
    ...     _ = model.weight.fill_(1.0)
    >>> ema.update(model)  # t = 1: d = min(0.5, 2 / 11)
    >>> with ema.applied(model):
    ...     round(model.weight[0, 0].item(), 6) != 1.0
    True
    >>> model.weight[0, 0].item()  # restored
    1.0
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

__all__ = ["ExponentialMovingAverage"]


class ExponentialMovingAverage:
    """Shadow copies of a model's floating-point parameters and buffers, averaged after every update."""

    def __init__(self, model: nn.Module, decay: float):
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < decay < 1.0:
            raise ValueError(f"ExponentialMovingAverage: decay must be a number in (0, 1), e.g. 0.995, got {decay!r}")
        self.decay = float(decay)
        self.updates = 0  # averaging steps taken
        self.shadow: dict[str, Tensor] = {name: t.detach().clone() for name, t in _floats(model)}

    def rate(self) -> float:
        """The decay ``d`` the next update uses."""
        t = self.updates + 1
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``shadow = d * shadow + (1 - d) * weights`` for every tracked tensor."""
        d = self.rate()
        names, tensors = zip(*_floats(model), strict=True) if self.shadow else ((), ())
        if list(names) != list(self.shadow):
            raise ValueError("ExponentialMovingAverage.update(): the model's tensors differ from the ones averaged; "
                             "build the average from the model being trained")  # fmt: skip
        torch._foreach_lerp_([self.shadow[n] for n in names], list(tensors), 1.0 - d)
        self.updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's weights with the average."""
        for name, t in _floats(model):
            t.copy_(self.shadow[name])

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """Inside the block the model holds the average; its own weights come back afterwards."""
        backup = {name: t.detach().clone() for name, t in _floats(model)}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, t in _floats(model):
                    t.copy_(backup[name])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        if set(state["shadow"]) != set(self.shadow):
            missing = sorted(set(self.shadow) - set(state["shadow"]))[:3]
            raise ValueError(f"ExponentialMovingAverage.load_state_dict(): saved average does not match the model "
                             f"(missing e.g. {missing})")  # fmt: skip
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        with torch.no_grad():
            for name, t in state["shadow"].items():
                self.shadow[name].copy_(t)


def _floats(model: nn.Module) -> list[tuple[str, Tensor]]:
    """The model's floating-point parameters and buffers by state-dict name (shared tensors once)."""
    return [(name, t) for name, t in model.state_dict(keep_vars=True).items() if t.is_floating_point()]
