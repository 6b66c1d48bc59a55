r"""The reference: scaled dot-product attention in the three steps of the formula.

.. math::

    \mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right) V

1. **scores**  ``S = Q K^T * scale + bias``, with disallowed pairs set to ``-inf``;
2. **normalize** ``P = softmax(S)`` row by row, so each row sums to 1 — or to 0
   when the mask allows nothing in that row (no NaN);
3. **weighted sum** ``O = P V``.

This file is the spec: every other backend is tested against it, run in
float64. It is written for reading, not for speed, and it is the only backend
that must return the weights ``P``.

Shape legend: B batch, H query heads, Hkv key/value heads (``H % Hkv == 0``),
G = H // Hkv query heads per key/value head, Lq queries, Lk keys,
D key/query head dim, Dv value head dim.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._tensors import compute_dtype
from ..masks import Mask
from .bias import Bias

__all__ = ["reference_attention", "attention_scores", "normalize", "weighted_sum", "nan_in_nan_out"]


def attention_scores(
    q: Tensor, k: Tensor, *, scale: float, mask: Mask | None = None, bias: Bias | None = None
) -> Tensor:
    """Step 1: ``S = QK^T * scale + bias``, ``-inf`` where the mask forbids; float32 or wider.

    Grouped-query attention folds the G query heads that share a key head into the
    query axis, so K is never copied per head.
    """
    B, H, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    q_grouped = q.reshape(B, Hkv, (H // Hkv) * Lq, D)  # (B, H, Lq, D) -> (B, Hkv, G*Lq, D)
    s = q_grouped @ k.transpose(-1, -2)  # (B, Hkv, G*Lq, D) @ (B, Hkv, D, Lk) -> (B, Hkv, G*Lq, Lk)
    s = s.reshape(B, H, Lq, Lk).to(compute_dtype(q.dtype)) * scale  # -> (B, H, Lq, Lk)
    if bias is not None:
        s = s + bias.to_dense(Lq, Lk, device=q.device)  # (B, H, Lq, Lk) + (Bm, Hm, Lq, Lk)
    if mask is not None:
        s = s.masked_fill(~mask.to_dense(Lq, Lk, device=q.device), float("-inf"))  # (B, H, Lq, Lk)
    return s


def normalize(scores: Tensor) -> tuple[Tensor, Tensor]:
    """Step 2: a softmax over keys that returns zeros, not NaN, for rows with nothing allowed.

    Returns the weights ``P`` (rows sum to 1, or 0) and the log-sum-exp ``lse``
    of each row (``-inf`` for an empty row).
    """
    if scores.shape[-1] == 0:  # no keys at all: every row is empty
        return scores, scores.new_full(scores.shape[:-1], float("-inf"))  # (B, H, Lq, 0), (B, H, Lq)
    m = scores.amax(dim=-1, keepdim=True).detach()  # (B, H, Lq, 1) row maximum
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # empty rows: any finite shift will do
    e = torch.exp(scores - m)  # (B, H, Lq, Lk); exp(-inf) = 0 on forbidden pairs
    l = e.sum(dim=-1, keepdim=True)  # (B, H, Lq, 1)
    p = e / torch.where(l > 0, l, torch.ones_like(l))  # rows sum to 1, empty rows stay 0
    lse = (m + torch.log(l)).squeeze(-1)  # (B, H, Lq); log(0) = -inf on empty rows
    return p, lse


def weighted_sum(p: Tensor, v: Tensor) -> Tensor:
    """Step 3: ``O = P V``, folding grouped query heads onto their value head."""
    B, H, Lq, Lk = p.shape
    Hkv, Dv = v.shape[1], v.shape[3]
    p_grouped = p.reshape(B, Hkv, (H // Hkv) * Lq, Lk)  # (B, H, Lq, Lk) -> (B, Hkv, G*Lq, Lk)
    o = p_grouped @ v  # (B, Hkv, G*Lq, Lk) @ (B, Hkv, Lk, Dv) -> (B, Hkv, G*Lq, Dv)
    return o.reshape(B, H, Lq, Dv)  # -> (B, H, Lq, Dv)


def reference_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Mask | None = None,
    *,
    bias: Bias | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Attention in three explicit steps; returns ``(out, weights, lse)``.

    Inputs are assumed validated (use :func:`attnkit.functional.attention` for
    checked entry). Half-precision inputs get float32 scores and softmax; the
    weights are cast back to the input dtype before the weighted sum.
    ``weights`` are the normalized probabilities before dropout.

    Example:
        >>> q = k = v = torch.eye(2)[None, None]            # (1, 1, 2, 2)
        >>> out, weights, lse = reference_attention(q, k, v, scale=1.0)
        >>> weights[0, 0].sum(dim=-1)
        tensor([1., 1.])
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = attention_scores(q, k, scale=scale, mask=mask, bias=bias)  # 1. (B, H, Lq, Lk)
    weights, lse = normalize(scores)  # 2. rows sum to 1
    dropped = torch.nn.functional.dropout(weights, dropout_p) if dropout_p > 0 else weights
    out = weighted_sum(dropped.to(v.dtype), v)  # 3. (B, H, Lq, Dv)
    return nan_in_nan_out(q, k, v, out, weights.to(q.dtype), lse)


def nan_in_nan_out(q: Tensor, k: Tensor, v: Tensor, *results: Tensor | None) -> tuple:
    """The rule for non-finite inputs, the same in every backend: NaN in, NaN out.

    A NaN or +-inf anywhere in query row ``q[b, h, i]`` makes row ``i`` of every result NaN;
    one anywhere in ``k[b, g]`` or ``v[b, g]`` makes every row of the query heads reading key
    head ``g`` NaN. Masking never hides a non-finite input (backends that skip masked tiles
    and backends that add the mask to the scores would otherwise disagree). ``results`` are
    ``(B, H, Lq, ...)`` or ``(B, H, Lq)`` tensors (out, weights, lse); None passes through.

    Example:
        >>> q, k, v = torch.ones(1, 1, 2, 2), torch.ones(1, 1, 3, 2), torch.ones(1, 1, 3, 2)
        >>> q[0, 0, 1, 0] = float("nan")  # query row 1
        >>> nan_in_nan_out(q, k, v, torch.zeros(1, 1, 2, 2))[0][0, 0]
        tensor([[0., 0.],
                [nan, nan]])
    """
    B, H, Lq = q.shape[:3]
    bad_q = _nonfinite(q, (-1,))  # (B, H, Lq)
    bad_kv = _nonfinite(k, (-2, -1)) | _nonfinite(v, (-2, -1))  # (B, Hkv)
    bad = bad_q | bad_kv.repeat_interleave(H // k.shape[1], dim=1)[..., None]  # (B, H, Lq)
    if bad.device.type == "cpu" and not torch.compiler.is_compiling() and not bool(bad.any()):
        return results  # all finite, the usual case: no copy of the results (eager CPU only: reading
        # bad.any() back is a data-dependent branch that torch.compile and torch.export cannot trace)
    out = []
    for r in results:
        if r is not None:
            r = r.masked_fill(bad.view(B, H, Lq, *[1] * (r.dim() - 3)), float("nan"))  # (B, H, Lq, ...)
        out.append(r)
    return tuple(out)


def _nonfinite(t: Tensor, dims: tuple[int, ...]) -> Tensor:
    """``~isfinite(t).all(dims)``, fast on CPU: there ``isfinite`` costs ~25x a ``sum``, and a sum is
    finite whenever every term is (NaN and inf propagate), so only a non-finite sum (a non-finite
    input, or a rare overflow) pays for the exact test."""
    if t.device.type == "cpu" and t.numel() and not torch.compiler.is_compiling():  # a graph takes the exact test
        rough = ~torch.isfinite(t.sum(dim=dims))  # True where a term may be non-finite
        if not bool(rough.any()):
            return rough
    finite = torch.isfinite(t)
    for d in sorted(dims):  # from the lowest (most negative) dim, so the others keep their index
        finite = finite.all(dim=d)
    return ~finite
