"""Per-head statistics of attention weights: mean attention distance and entropy.

Shape legend: B batch, H heads, Lq queries, Lk keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import as_matrix_stack

__all__ = ["HeadStatistics", "head_statistics"]

_ROW_SUM_TOLERANCE = 1e-3  # weights rows must sum to 1 (or 0) within this; generous for fp16


@dataclass(frozen=True)
class HeadStatistics:
    """Per-head summaries of attention weights, averaged over batch and query rows.

    Rows whose weights are all zero (queries a mask let attend to nothing) are left
    out of both averages; a head with no such row at all gets NaN.
    """

    mean_distance: Tensor  # (H,) float64: average over rows of sum_j p_ij |pos(i) - j|, in positions
    entropy: Tensor  # (H,) float64: average over rows of -sum_j p_ij log p_ij, in nats (uniform over n keys: log n)
    rows: Tensor  # (H,) int64: rows that entered the averages (B * Lq minus the empty rows)

    def to_dict(self) -> dict[str, list]:
        """Plain lists, ready for ``json.dumps`` (NaN becomes None)."""

        def clean(t: Tensor) -> list:
            return [None if isinstance(x, float) and math.isnan(x) else x for x in t.tolist()]

        return {"mean_distance": clean(self.mean_distance), "entropy": clean(self.entropy), "rows": self.rows.tolist()}


def head_statistics(weights) -> HeadStatistics:
    r"""Mean attention distance and entropy of each head.

    For query row ``i`` with weights ``p_i`` over keys ``j``:

    .. math::
        \mathrm{dist}_i = \sum_j p_{ij} \, |(i + L_k - L_q) - j|, \qquad
        \mathrm{H}_i = -\sum_j p_{ij} \log p_{ij} \quad (0 \log 0 = 0)

    (query ``i`` sits at key position ``i + Lk - Lq``: bottom-right alignment), each
    averaged over the rows that carry weight, across the batch. Distance 0 means
    every query reads only its own position; entropy 0 means one key per query,
    ``log Lk`` means uniform attention.

    Args:
        weights: ``(H, Lq, Lk)`` or ``(B, H, Lq, Lk)``, non-negative, each row summing
            to 1 (or 0 for a fully masked query) — the normalized weights, not scores.

    Example:
        >>> import torch
        >>> stats = head_statistics(torch.stack([torch.eye(3), torch.full((3, 3), 1 / 3)]))
        >>> stats.entropy  # one-hot rows: 0; uniform over 3 keys: log 3
        tensor([0.0000, 1.0986], dtype=torch.float64)
        >>> stats.mean_distance  # identity: 0; uniform: (1 + 2/3 + 1) / 3
        tensor([0.0000, 0.8889], dtype=torch.float64)
    """
    fn = "head_statistics()"
    w = as_matrix_stack(fn, weights, (3, 4), "(H, Lq, Lk) or (B, H, Lq, Lk)")
    if w.dim() == 3:
        w = w[None]  # (H, Lq, Lk) -> (1, H, Lq, Lk)
    B, H, Lq, Lk = w.shape
    if (w < 0).any():
        raise ValueError(
            f"{fn}: weights must be non-negative, got a minimum of {float(w.min()):.4g}; pass softmax outputs"
        )
    row_sums = w.sum(dim=-1)  # (B, H, Lq)
    empty = row_sums <= _ROW_SUM_TOLERANCE  # (B, H, Lq) queries that attend to nothing
    bad = ~empty & ((row_sums - 1.0).abs() > _ROW_SUM_TOLERANCE)
    if bad.any():
        raise ValueError(
            f"{fn}: each row of weights must sum to 1 (or 0 for a fully masked query); row sums range over "
            f"[{float(row_sums.min()):.4g}, {float(row_sums.max()):.4g}]. Did you pass scores? Apply softmax over "
            "the last axis first"
        )
    q_pos = torch.arange(Lq, dtype=torch.float64)[:, None] + (Lk - Lq)  # (Lq, 1) aligned on the key axis
    k_pos = torch.arange(Lk, dtype=torch.float64)[None, :]  # (1, Lk)
    distance = (w * (q_pos - k_pos).abs()).sum(dim=-1)  # (B, H, Lq, Lk) * (Lq, Lk) -> (B, H, Lq)
    entropy = -torch.xlogy(w, w).sum(dim=-1)  # (B, H, Lq); xlogy(0, 0) = 0
    keep = (~empty).to(torch.float64)  # (B, H, Lq)
    rows = keep.sum(dim=(0, 2))  # (H,)

    def per_head(t: Tensor) -> Tensor:
        return (t * keep).sum(dim=(0, 2)) / rows  # (B, H, Lq) -> (H,); 0 / 0 = NaN for a head of empty rows

    return HeadStatistics(per_head(distance), per_head(entropy), rows.to(torch.int64))
