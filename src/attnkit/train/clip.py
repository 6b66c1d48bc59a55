r"""Gradient clipping by the global norm (Pascanu et al., 2013).

.. math::

    g \leftarrow g \cdot \min\left(1, \frac{max\_norm}{\lVert g \rVert_2 + 10^{-6}}\right),
    \qquad \lVert g \rVert_2 = \sqrt{\textstyle\sum_{p} \sum_i g_{p,i}^2}

The norm is taken over all parameters together, so clipping keeps the direction of the update.
The ``1e-6`` guards the division, as in ``torch.nn.utils.clip_grad_norm_`` (which does the work).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["clip_grad_norm"]


def clip_grad_norm(parameters: Iterable[Tensor], max_norm: float, *, norm_type: float = 2.0) -> Tensor:
    """Scale the gradients of ``parameters`` in place so their global norm is at most ``max_norm``.

    Returns the norm before clipping (log it: spikes warn of divergence). Parameters without
    a gradient are skipped. A non-finite norm leaves the gradients non-finite (the
    returned norm says so); no exception.

    Example:
        >>> p = torch.zeros(2, requires_grad=True)
        >>> p.grad = torch.tensor([3.0, 4.0])                 # norm 5
        >>> clip_grad_norm([p], max_norm=1.0).item(), [round(g, 4) for g in p.grad.tolist()]
        (5.0, [0.6, 0.8])
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not max_norm > 0:
        raise ValueError(f"clip_grad_norm(): max_norm must be a number > 0, got {max_norm!r}; "
                         "to disable clipping do not call it (TrainerConfig(grad_clip=None))")  # fmt: skip
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.tensor(0.0)
    return torch.nn.utils.clip_grad_norm_(params, float(max_norm), norm_type=norm_type)
