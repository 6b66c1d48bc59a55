r"""The learning-rate schedule of "Attention Is All You Need" (5.3), a.k.a. Noam / inverse square root.

.. math::

    lrate = d_{model}^{-0.5} \cdot \min(step\_num^{-0.5},\ step\_num \cdot warmup\_steps^{-1.5})

Linear warm-up for ``warmup_steps`` updates, then decay with the inverse square root of
the step (the paper: ``warmup_steps = 4000``, Adam with beta1 = 0.9, beta2 = 0.98, eps = 1e-9).

As a :class:`torch.optim.lr_scheduler.LambdaLR`, the factor multiplies the optimizer's
``lr``: construct the optimizer with ``lr=1.0`` to get the paper's rate exactly, or
with ``lr=c`` to scale it by ``c``. Updates are counted from 1: the ``n``-th
``optimizer.step()`` (after ``n - 1`` calls of ``scheduler.step()``) uses
``lrate(step_num=n)``, so no update runs with a zero rate.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["noam_rate", "NoamSchedule", "inverse_sqrt_schedule"]


def noam_rate(step_num: int, d_model: int, warmup_steps: int) -> float:
    """The paper's ``lrate`` at update ``step_num`` (counted from 1).

    Example:
        >>> round(noam_rate(4000, 512, 4000), 6)     # the peak: 512**-0.5 * 4000**-0.5
        0.000699
    """
    if step_num < 1:
        raise ValueError(f"noam_rate(): step_num counts updates from 1, got {step_num}")
    return d_model**-0.5 * min(step_num**-0.5, step_num * warmup_steps**-1.5)


class _InverseSqrtFactor:
    """A callable object, not a function, so LambdaLR keeps its ``__dict__`` (two ints) in ``state_dict()``."""

    def __init__(self, d_model: int, warmup_steps: int):
        self.d_model = d_model
        self.warmup_steps = warmup_steps

    def __call__(self, last_epoch: int) -> float:
        return noam_rate(last_epoch + 1, self.d_model, self.warmup_steps)  # update number = last_epoch + 1


class NoamSchedule(LambdaLR):
    """``LambdaLR`` with the paper's factor; set the optimizer's ``lr`` to 1.0 (or a scale).

    Example:
        >>> import torch
        >>> opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0, betas=(0.9, 0.98), eps=1e-9)
        >>> sched = NoamSchedule(opt, d_model=512, warmup_steps=4000)
        >>> opt.param_groups[0]["lr"] == 512**-0.5 * 4000**-1.5   # rate of update 1
        True
    """

    def __init__(self, optimizer: Optimizer, d_model: int, warmup_steps: int, *, last_epoch: int = -1):
        for name, value in (("d_model", d_model), ("warmup_steps", warmup_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"NoamSchedule(): {name} must be a positive int, got {value!r}; "
                                 "the paper uses d_model=512, warmup_steps=4000")  # fmt: skip
        self.d_model = d_model
        self.warmup_steps = warmup_steps
        super().__init__(optimizer, _InverseSqrtFactor(d_model, warmup_steps), last_epoch=last_epoch)


def inverse_sqrt_schedule(optimizer: Optimizer, d_model: int, warmup_steps: int) -> NoamSchedule:
    """The paper's schedule for ``optimizer`` (whose ``lr`` should be 1.0, or a scale factor).

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = inverse_sqrt_schedule(opt, d_model=16, warmup_steps=4)
        >>> for _ in range(3):
        ...     opt.step(); sched.step()
        >>> opt.param_groups[0]["lr"] == 16**-0.5 * 4 * 4**-1.5    # update 4: the peak
        True
    """
    return NoamSchedule(optimizer, d_model, warmup_steps)
