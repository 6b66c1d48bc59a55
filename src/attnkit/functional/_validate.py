"""Input checks shared by every attention entry point: :func:`~attnkit.functional.attention`,
:func:`~attnkit.functional.tiled_attention`, :func:`~attnkit.functional.attention_weights` and
:func:`~attnkit.distributed.ring_attention`.

It sits below :mod:`.dispatch`, :mod:`.tiled` and :mod:`attnkit.distributed.ring`, so none of them
imports another to reach the checks. Errors name the entry point the user called.

Shape legend: B batch, H query heads, Hkv key/value heads, Lq queries, Lk keys,
D query/key head dim, Dv value head dim.

Example:
    >>> import torch
    >>> q = torch.zeros(1, 4, 5, 8); k = v = torch.zeros(1, 2, 7, 8)
    >>> validate("attention", q, k, v).Hkv
    2
    >>> validate("tiled_attention", q, k, v, scale=float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: tiled_attention(): scale must be a finite number, got nan; pass None for 1/sqrt(head_dim)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor

from ..masks import Mask, as_mask
from .bias import Bias, as_bias

__all__ = ["Problem", "validate", "fast_check", "leaves"]


@dataclass(frozen=True)
class Problem:
    """A validated attention call: shapes, dtype and what it asks for."""

    B: int  # batch size
    H: int  # query heads
    Hkv: int  # key/value heads (H % Hkv == 0)
    Lq: int  # query length
    Lk: int  # key length
    D: int  # query/key head dim
    Dv: int  # value head dim
    dtype: torch.dtype  # input dtype
    device: torch.device  # input device
    mask: Mask | None  # what may attend (True = may attend)
    bias: Bias | None  # additive bias on the scores
    scale: float | None  # score scale (None: 1/sqrt(D))
    dropout_p: float  # dropout on the weights
    return_weights: bool  # caller wants the (B, H, Lq, Lk) weights
    return_lse: bool  # caller wants the (B, H, Lq) log-sum-exp


def fast_check(q, k, v, scale, dropout_p) -> bool:
    """Cheap check of the common call (no mask, no bias): True if it is certainly valid."""
    if type(q) is not Tensor or type(k) is not Tensor or type(v) is not Tensor:
        return False
    qs, ks, vs = q.shape, k.shape, v.shape
    return (
        len(qs) == 4
        and len(ks) == 4
        and len(vs) == 4
        and qs[0] == ks[0] == vs[0]
        and qs[1] == ks[1] == vs[1]
        and ks[2] == vs[2]
        and ks[2] > 0
        and qs[3] == ks[3]
        and q.dtype == k.dtype == v.dtype
        and q.dtype.is_floating_point
        and q.device == k.device == v.device
        and (scale is None or (type(scale) is float and math.isfinite(scale)))
        and (dropout_p == 0.0 or (type(dropout_p) is float and 0.0 <= dropout_p < 1.0))
    )


def validate(fn: str, q, k, v, mask=None, bias=None, scale=None, dropout_p=0.0, return_weights=False,
             return_lse=False) -> Problem:  # fmt: skip
    """Check one call of ``fn`` and return it as a :class:`Problem`; errors start with ``fn():``."""
    _check_tensors(fn, q, k, v)
    B, H, Lq, D = q.shape
    _, Hkv, Lk, _ = k.shape
    _check_shapes(fn, q, k, v)
    _check_scalars(fn, scale, dropout_p)
    mask = as_mask(mask, f"{fn}(): mask")
    bias = as_bias(bias, fn)
    _check_broadcast(fn, "mask", mask, B, H, Lq, Lk)
    _check_broadcast(fn, "bias", bias, B, H, Lq, Lk)
    if bias is not None and isinstance(getattr(bias, "values", None), Tensor) and bias.values.device != q.device:
        raise ValueError(f"{fn}(): bias is on {bias.values.device} but q is on {q.device}; move it with .to()")
    return Problem(
        B, H, Hkv, Lq, Lk, D, v.shape[3], q.dtype, q.device, mask, bias,
        None if scale is None else float(scale), float(dropout_p), bool(return_weights), bool(return_lse),
    )  # fmt: skip


def _check_tensors(fn: str, q, k, v) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{fn}(): {name} must be a torch.Tensor, got {type(t).__name__}")
    layouts = {"q": "(B, H, Lq, D)", "k": "(B, Hkv, Lk, D)", "v": "(B, Hkv, Lk, Dv)"}
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise ValueError(
                f"{fn}(): {name} must have 4 dims {layouts[name]}, got shape {tuple(t.shape)}; "
                "modules take (B, L, d_model) — split heads with .view(B, L, H, D).transpose(1, 2)"
            )
    if not q.dtype.is_floating_point:
        raise TypeError(f"{fn}(): q must be a floating-point tensor, got dtype {q.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(
            f"{fn}(): q, k, v must share a dtype, got q={q.dtype}, k={k.dtype}, v={v.dtype}; "
            "cast them with .to(q.dtype)"
        )
    if not (q.device == k.device == v.device):
        raise ValueError(f"{fn}(): q, k, v must be on one device, got q={q.device}, k={k.device}, v={v.device}")


def _check_shapes(fn: str, q: Tensor, k: Tensor, v: Tensor) -> None:
    B, H, _, D = q.shape
    _, Hkv, Lk, Dk = k.shape
    if k.shape[0] != B or v.shape[0] != B:
        raise ValueError(
            f"{fn}(): batch sizes differ: q has {B}, k has {k.shape[0]}, v has {v.shape[0]}; they must be equal"
        )
    if Dk != D:
        raise ValueError(f"{fn}(): k has {Dk} features per head but q has {D}; q and k must share head_dim")
    if v.shape[1] != Hkv or v.shape[2] != Lk:
        raise ValueError(
            f"{fn}(): v must be (B, Hkv, Lk, Dv) = ({B}, {Hkv}, {Lk}, Dv) to match k, got {tuple(v.shape)}"
        )
    if Hkv == 0 or H % Hkv != 0:
        raise ValueError(
            f"{fn}(): q has {H} heads and k/v have {Hkv}; the query heads must be a multiple of the "
            f"key/value heads (grouped-query attention), e.g. Hkv in {_divisors(H)}"
        )


def _check_scalars(fn: str, scale, dropout_p) -> None:
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, numbers.Real)):
        raise TypeError(f"{fn}(): scale must be a float or None, got {type(scale).__name__}")
    if scale is not None and not math.isfinite(scale):
        raise ValueError(f"{fn}(): scale must be a finite number, got {scale!r}; pass None for 1/sqrt(head_dim)")
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, numbers.Real) or not 0.0 <= float(dropout_p) < 1.0:
        raise ValueError(f"{fn}(): dropout_p must be a float in [0, 1), got {dropout_p!r}")


def _check_broadcast(fn: str, name: str, obj, B: int, H: int, Lq: int, Lk: int) -> None:
    """Every part of a mask (or a bias) must broadcast to (B, H, Lq, Lk)."""
    for leaf in leaves(obj):
        values = getattr(leaf, "values", None)
        if isinstance(values, Tensor):  # a dense mask or a tensor bias
            shape = tuple(values.shape)
            for got, want, axis in zip(shape, (B, H, Lq, Lk), ("B", "H", "Lq", "Lk"), strict=True):
                if got not in (1, want):
                    raise ValueError(
                        f"{fn}(): {name} of shape {shape} cannot broadcast to (B, H, Lq, Lk) = "
                        f"({B}, {H}, {Lq}, {Lk}): its {axis} axis is {got}, expected 1 or {want}"
                    )
            continue
        b, h = (leaf.batch_size(), leaf.num_heads()) if isinstance(leaf, Mask) else leaf.shape_hint()
        if b not in (None, 1, B):
            raise ValueError(f"{fn}(): {name} {leaf!r} is built for batch size {b} but q has B={B}")
        if h not in (None, 1, H):
            raise ValueError(f"{fn}(): {name} {leaf!r} is built for {h} heads but q has H={H}")


def leaves(obj) -> list:
    """The masks a combined mask is made of (the object itself for a leaf; nothing for None)."""
    if obj is None:
        return []
    children = [getattr(obj, c) for c in ("a", "b") if isinstance(getattr(obj, c, None), Mask)]
    return [leaf for child in children for leaf in leaves(child)] if children else [obj]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
