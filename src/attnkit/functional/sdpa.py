"""Adapter to ``torch.nn.functional.scaled_dot_product_attention`` (SDPA).

SDPA shares attnkit's mask polarity (``True`` = may attend), so boolean masks
pass through as they are. Two translations happen here:

* ``is_causal=True`` in SDPA is aligned *top-left*; attnkit's causal mask is
  aligned bottom-right. They agree only when ``Lq == Lk``, so only then is the
  fused causal flag used; otherwise the mask is built densely.
* A bias and a mask together become one float mask (``-inf`` where forbidden).

Any mask or bias is materialized as a ``(Bm, Hm, Lq, Lk)`` tensor here: that is
the memory cost this backend pays, and :func:`attnkit.functional.explain` says so.

Shape legend: B batch, H heads, Hkv key/value heads, Lq queries, Lk keys, D head dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import masks as _masks
from ..masks import Mask
from .bias import Bias

__all__ = ["sdpa_attention", "SDPA_HAS_GQA", "SDPA_SAFE_SOFTMAX"]

_TORCH_VERSION = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
SDPA_HAS_GQA = _TORCH_VERSION >= (2, 5)  #: ``enable_gqa=`` exists (torch >= 2.5)
SDPA_SAFE_SOFTMAX = _TORCH_VERSION >= (2, 5)  #: fully masked rows give 0, not NaN (torch >= 2.5)


def sdpa_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Mask | None = None,
    *,
    bias: Bias | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> Tensor:
    """Run torch's fused SDPA kernel with attnkit's mask and bias conventions; returns ``(B, H, Lq, Dv)``."""
    Lq, Lk = q.shape[2], k.shape[2]
    is_causal = isinstance(mask, _masks._Causal) and Lq == Lk and bias is None
    attn_mask = None if is_causal else _sdpa_mask(mask, bias, Lq, Lk, q)
    if k.shape[1] != q.shape[1] and not SDPA_HAS_GQA:
        group = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(group, dim=1)  # (B, Hkv, Lk, D) -> (B, H, Lk, D), copies on torch < 2.5
        v = v.repeat_interleave(group, dim=1)  # (B, Hkv, Lk, Dv) -> (B, H, Lk, Dv)
    extra = {"enable_gqa": True} if k.shape[1] != q.shape[1] else {}
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, **extra
    )  # (B, H, Lq, Dv)


def _sdpa_mask(mask: Mask | None, bias: Bias | None, Lq: int, Lk: int, q: Tensor) -> Tensor | None:
    """One ``attn_mask`` for SDPA: bool when there is only a mask, float when there is a bias."""
    allowed = None if mask is None else mask.to_dense(Lq, Lk, device=q.device)  # (Bm, Hm, Lq, Lk) bool
    if bias is None:
        return allowed
    values = bias.to_dense(Lq, Lk, device=q.device).to(q.dtype)  # (Bm, Hm, Lq|1, Lk|1)
    if allowed is None:
        return values
    return values.masked_fill(~allowed, float("-inf"))  # (Bm', Hm', Lq, Lk)
