"""Adapter to ``torch.nn.functional.scaled_dot_product_attention`` (SDPA).

SDPA shares attnkit's mask polarity (``True`` = may attend), so boolean masks
pass through as they are. Two translations happen here:

* ``is_causal=True`` in SDPA is aligned *top-left*; attnkit's causal mask is
  aligned bottom-right. They agree only when ``Lq == Lk``, so only then is the
  fused causal flag used; otherwise the mask is built densely.
* A bias and a mask together become one float mask (``-inf`` where forbidden),
  broadcast to ``(max(Bm, Bb), max(Hm, Hb), Lq, Lk)``.
* With a bias, half-precision inputs run in float32: SDPA wants the float mask in
  the inputs' dtype, and a bias rounded to fp16 turns values over 65504 into inf
  (and the output into NaN). The result is cast back; it matches the other backends,
  which add the bias to float32 scores.

Any mask or bias is materialized as a ``(Bm, Hm, Lq, Lk)`` tensor here: that is
the memory cost this backend pays; :func:`sdpa_mask_bytes` estimates it and
:func:`attnkit.functional.explain` says so.

Shape legend: B batch, H heads, Hkv key/value heads, Lq queries, Lk keys, D head dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import masks as _masks
from .._tensors import compute_dtype
from ..masks import Mask
from .bias import Bias

__all__ = ["sdpa_attention", "sdpa_mask_bytes", "SDPA_HAS_GQA", "SDPA_SAFE_SOFTMAX"]

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
    """Run torch's fused SDPA kernel with attnkit's mask and bias conventions; returns ``(B, H, Lq, Dv)``.

    Inputs are assumed validated (:func:`attnkit.functional.attention` is the checked entry).

    Example:
        >>> from attnkit import masks
        >>> q = k = v = torch.randn(1, 2, 4, 8)
        >>> sdpa_attention(q, k, v, masks.causal()).shape
        torch.Size([1, 2, 4, 8])
    """
    if bias is not None and compute_dtype(q.dtype) != q.dtype:  # never round a bias to half
        out = sdpa_attention(q.float(), k.float(), v.float(), mask, bias=bias, scale=scale, dropout_p=dropout_p)
        return out.to(q.dtype)  # (B, H, Lq, Dv)
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


def sdpa_mask_bytes(B: int, H: int, Lq: int, Lk: int, dtype: torch.dtype, mask: Mask | None, bias: Bias | None) -> int:
    """Bytes of the dense tensors :func:`sdpa_attention` builds for a mask and/or bias (0 for none).

    What is built, at its peak (tests/functional/test_edges.py measures the bytes the call allocates against it):
    a mask is a bool ``(Bm, Hm, Lq, Lk)`` that SDPA converts to a float mask of the same shape; a bias
    is a float32 ``(Bb, Hb, Lq, Lk)`` (a computed bias such as ALiBi also an int64 ``(Lq, Lk)`` index
    grid); a mask and a bias together become one float ``(max(Bm, Bb), max(Hm, Hb), Lq, Lk)``.

    Example:
        >>> from attnkit import masks
        >>> from attnkit.functional.bias import Alibi, alibi_slopes
        >>> sdpa_mask_bytes(4, 8, 4096, 4096, torch.float32, masks.padding([9] * 4), Alibi(alibi_slopes(8))) / 2**30
        2.6875
    """
    if mask is None and bias is None:
        return 0
    pairs = Lq * Lk
    item = torch.empty((), dtype=compute_dtype(dtype) if bias is not None else dtype).element_size()
    bm, hm = (mask.batch_size() or 1, mask.num_heads() or 1) if mask is not None else (1, 1)
    bb, hb = bias.shape_hint() if bias is not None else (None, None)
    bb, hb = bb or 1, hb or 1
    total = 0
    if mask is not None:
        total += bm * hm * pairs  # the bool mask
    if bias is not None:
        total += bb * hb * pairs * 4  # the float32 bias
        if not isinstance(getattr(bias, "values", None), Tensor):
            total += pairs * 8  # a computed bias's int64 index grid
    if mask is not None and bias is not None:
        total += max(bm, bb) * max(hm, hb) * pairs * item  # the combined float mask
    elif mask is not None:
        total += bm * hm * pairs * item  # SDPA's float copy of a bool mask
    return total
