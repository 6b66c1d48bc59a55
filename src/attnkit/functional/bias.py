"""Additive attention biases: tensors and ALiBi, evaluated per tile.

A bias is added to the scaled scores before normalization:
``softmax(QK^T / sqrt(d_k) + bias) V``. Like masks, a bias can give its values
for any (query, key) index tile, so a tiled backend never builds ``Lq x Lk``.

ALiBi (Press et al., 2022, "Train Short, Test Long") adds ``-m_h * (i - j)`` for
head ``h``, where the slopes ``m_h`` form a geometric sequence starting at
``2^(-8/n)`` for ``n`` heads (with the paper's interleaving rule when ``n`` is
not a power of two). Query ``i`` is aligned bottom-right, as in
:mod:`attnkit.masks`.

Shape legend: B batch, H heads, Lq queries, Lk keys, tq/tk tile sizes.

Example:
    >>> alibi_slopes(4)
    tensor([0.2500, 0.0625, 0.0156, 0.0039])
    >>> Alibi(alibi_slopes(2)).to_dense(2, 3)[0, 0]  # head 0: slope 2^-4, query i at key i + 1
    tensor([[-0.0625, -0.0000,  0.0625],
            [-0.1250, -0.0625, -0.0000]])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._tensors import as_4d
from ..masks import index_tile

__all__ = ["Bias", "TensorBias", "Alibi", "alibi_slopes", "as_bias"]


class Bias:
    """Base class of additive biases; subclasses implement :meth:`evaluate`."""

    def evaluate(self, q_idx: Tensor, k_idx: Tensor, Lq: int, Lk: int) -> Tensor:
        """Float values for ``q_idx (tq, 1)`` and ``k_idx (1, tk)``, broadcastable to ``(Bm, Hm, tq, tk)``."""
        raise NotImplementedError

    def to_dense(self, Lq: int, Lk: int, *, device=None) -> Tensor:
        """The whole bias ``(Bm, Hm, Lq, Lk)``."""
        q_idx = torch.arange(Lq, device=device)[:, None]  # (Lq, 1)
        k_idx = torch.arange(Lk, device=device)[None, :]  # (1, Lk)
        return as_4d(self.evaluate(q_idx, k_idx, Lq, Lk))  # (Bm, Hm, Lq|1, Lk|1)

    def shape_hint(self) -> tuple[int | None, int | None]:
        """(batch, heads) the bias is tied to; None where it broadcasts."""
        return None, None


class TensorBias(Bias):
    """A float tensor broadcastable to ``(B, H, Lq, Lk)``."""

    def __init__(self, values: Tensor):
        self.values = as_4d(values)  # (Bm, Hm, Lq|1, Lk|1)

    def evaluate(self, q_idx, k_idx, Lq, Lk):
        return index_tile(self.values, q_idx, k_idx)  # (Bm, Hm, tq|1, tk|1)

    def to_dense(self, Lq, Lk, *, device=None):
        return self.values if device is None else self.values.to(device)

    def shape_hint(self):
        b, h = self.values.shape[:2]
        return (b if b != 1 else None), (h if h != 1 else None)

    def __repr__(self):
        return f"TensorBias(shape={tuple(self.values.shape)})"


def alibi_slopes(num_heads: int) -> Tensor:
    """The ALiBi paper's per-head slopes, for any number of heads.

    For a power of two ``n``: ``2^(-8/n), 2^(-16/n), ..., 2^(-8)``. Otherwise the
    slopes of the closest smaller power of two, followed by every other slope of
    the next power of two (the reference implementation's rule).
    """
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"alibi_slopes(): num_heads must be a positive int, got {num_heads!r}")

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = power_of_two(closest)
    if closest != num_heads:
        slopes += power_of_two(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


class Alibi(Bias):
    """ALiBi bias ``-m_h * (i - j)`` per head ``h`` (``symmetric=True``: ``-m_h * |i - j|``).

    Causal models use the default; the symmetric form suits encoders.
    """

    def __init__(self, slopes: Tensor, *, symmetric: bool = False):
        if not isinstance(slopes, Tensor) or slopes.dim() != 1:
            raise ValueError(f"Alibi(): slopes must be a 1-D tensor (H,), got {slopes!r}")
        self.slopes, self.symmetric = slopes, symmetric  # (H,)

    def evaluate(self, q_idx, k_idx, Lq, Lk):
        distance = (q_idx + (Lk - Lq)) - k_idx  # (tq, tk) i - j, bottom-right aligned
        if self.symmetric:
            distance = distance.abs()
        slopes = self.slopes.to(q_idx.device)[:, None, None]  # (H, 1, 1)
        return (-slopes * distance)[None]  # (1, H, tq, tk)

    def shape_hint(self):
        return None, self.slopes.shape[0]

    def __repr__(self):
        return f"Alibi(num_heads={self.slopes.shape[0]}, symmetric={self.symmetric})"


def as_bias(bias: Bias | Tensor | None, fn: str = "attention") -> Bias | None:
    """Accept a Bias, a float tensor (wrapped in :class:`TensorBias`) or None; errors start with ``fn():``.

    Example:
        >>> as_bias(torch.zeros(3, 4))
        TensorBias(shape=(1, 1, 3, 4))
    """
    if bias is None or isinstance(bias, Bias):
        return bias
    if isinstance(bias, Tensor):
        if not bias.dtype.is_floating_point:
            raise TypeError(
                f"{fn}(): bias must be a float tensor added to the scores, got dtype {bias.dtype}; "
                "boolean masks go in mask= (True = may attend)"
            )
        if bias.dim() > 4:
            raise ValueError(
                f"{fn}(): bias must broadcast to (B, H, Lq, Lk), got {bias.dim()} dims: {tuple(bias.shape)}; "
                "drop the extra leading dims"
            )
        return TensorBias(bias)
    raise TypeError(
        f"{fn}(): bias must be a float tensor, an attnkit Bias (e.g. Alibi) or None, got {type(bias).__name__}"
    )
