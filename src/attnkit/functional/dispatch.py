"""``attention()``: validate once, pick a backend, say why.

Every backend shares one signature and one contract (DESIGN.md): the shapes
``q (B, H, Lq, D)``, ``k (B, Hkv, Lk, D)``, ``v (B, Hkv, Lk, Dv)``; one mask
convention (``True`` = may attend); zeros, never NaN, for a query that may attend
to nothing. A backend is a :class:`Backend` entry in :data:`BACKENDS`; adding
one is a file in ``functional/`` plus one line there.

``backend="auto"`` takes the first backend of :data:`AUTO_ORDER` that can run
the call exactly, except that between ``sdpa`` and ``tiled`` it picks by
measured thresholds (:data:`TILED_MAX_KEPT`, :data:`TILED_MIN_PAIRS`,
:data:`DENSE_MASK_BUDGET`): torch's fused kernel for no mask and top-left causal,
tiled when the mask skips enough tiles or a dense mask would be too large.
:func:`explain` returns that choice and, for every other backend, the reason it
was not chosen. Debug logging (logger ``attnkit.functional``) prints the same.

Inside ``torch.compile`` and ``torch.export`` the choice is made while tracing, from what a
graph can know without reading tensor values: position masks (causal, sliding window,
prefix-LM) still count their tiles (:mod:`._tile_runs`, integers only); a mask made of tensor
values goes to sdpa under ``auto``; a symbolic (dynamic) length goes to sdpa, whose graph
serves every length; debug logging is off.

Shape legend: B batch, H query heads, Hkv key/value heads, Lq queries, Lk keys,
D query/key head dim, Dv value head dim.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, overload

import torch
from torch import Tensor

from .. import masks as _masks
from ..masks import Mask
from ._segments import plan_segments
from ._tile_runs import kept_fraction
from ._validate import Problem, fast_check, leaves, validate
from .bias import Bias
from .reference import nan_in_nan_out, reference_attention
from .sdpa import SDPA_SAFE_SOFTMAX, sdpa_attention, sdpa_mask_bytes
from .tiled import TiledCall, bias_grad_problem, route, tiled_attention_unchecked

__all__ = ["attention", "explain", "Explanation", "Problem", "Backend", "BACKENDS", "AUTO_ORDER"]

logger = logging.getLogger("attnkit.functional")


@dataclass(frozen=True)
class Backend:
    """One way to compute attention.

    ``run(q, k, v, problem)`` returns ``(out, weights or None, lse or None)``;
    ``why_not(problem)`` returns None when the backend can run the call exactly,
    else a sentence saying why not.
    """

    name: str  # registry key, as passed to backend=
    run: Callable[[Tensor, Tensor, Tensor, Problem], tuple[Tensor, Tensor | None, Tensor | None]]
    why_not: Callable[[Problem], str | None]
    summary: str  # one line for `attnkit info`


def _run_reference(q, k, v, p: Problem):
    return reference_attention(q, k, v, p.mask, bias=p.bias, scale=p.scale, dropout_p=p.dropout_p)


def _reference_why_not(p: Problem) -> str | None:
    return None  # the spec runs everything


def _run_sdpa(q, k, v, p: Problem):
    return sdpa_attention(q, k, v, p.mask, bias=p.bias, scale=p.scale, dropout_p=p.dropout_p), None, None


def _sdpa_why_not(p: Problem) -> str | None:
    if p.return_weights:
        return "torch SDPA does not return the attention weights"
    if p.return_lse:
        return "torch SDPA does not return the log-sum-exp"
    if p.mask is not None and not SDPA_SAFE_SOFTMAX:
        return f"torch {torch.__version__} SDPA returns NaN for fully masked rows (fixed in 2.5)"
    return None


def _run_tiled(q, k, v, p: Problem):
    out, lse = tiled_attention_unchecked(q, k, v, p.mask, p.bias, p.scale, p.dropout_p)
    return out, None, lse


def _tiled_why_not(p: Problem) -> str | None:
    if torch.compiler.is_exporting() and not _static_lengths(p):
        return (
            "the tiled backend plans its tiles from the sequence lengths in Python, so torch.export needs them "
            "static; export with a static length, or use backend='auto' (sdpa at a dynamic length)"
        )
    if p.return_weights:
        return (
            "the tiled backend does not return the (B, H, Lq, Lk) weights; "
            "use attention_weights() for chosen heads/rows"
        )
    return bias_grad_problem(p.bias)


BACKENDS: dict[str, Backend] = {
    "reference": Backend(
        "reference", _run_reference, _reference_why_not, "the three steps of the formula; returns weights"
    ),
    "sdpa": Backend("sdpa", _run_sdpa, _sdpa_why_not, "torch.nn.functional.scaled_dot_product_attention"),
    "tiled": Backend(
        "tiled", _run_tiled, _tiled_why_not, "exact tiled FlashAttention-2, O(L) memory, skips masked tiles"
    ),
}
AUTO_ORDER: tuple[str, ...] = ("sdpa", "tiled", "reference")  #: preference of backend="auto", fastest first


# Thresholds of the sdpa-vs-tiled choice, measured with `attnkit bench` and /benchmarks/results
# (B=1, H=8, D=64, fp32, CPU): SDPA given a dense mask computes every (query, key) pair, so its
# time does not fall with sparsity; tiled costs about (kept tile fraction) x (SDPA's full time) plus
# ~0.2 ms of Python per tile chunk. Tiled won from L=512 at <= 50% kept tiles (1.3-1.8x) and at
# L=2048-4096 up to ~94% kept (1.0x); it lost at L<=256 and at >= 94% kept below L=2048.
TILED_MAX_KEPT = 0.75  #: tiled runs when the mask keeps at most this fraction of 128x128 tiles ...
TILED_MIN_PAIRS = 512 * 512  #: ... and Lq * Lk is at least this (smaller calls are overhead-bound)
DENSE_MASK_BUDGET = 1 << 30  #: bytes a dense mask/bias for SDPA may take before tiled runs regardless
# Packed documents and key padding run on tiled as pieces of plain attention without a mask (._segments: in
# SDPA's fused kernel over fewer keys, short ones as grouped matmuls), so tiled wins at any kept fraction once
# the call is not tiny; below that, planning and checks (~0.1 ms) and ~0.05 ms per piece (one call each) are
# most of it. The crossing follows the work per piece, B*H*Lq*Lk / pieces. Measured (D=64, fp32, 2 threads,
# medians of 100-300 in one process, tiled / sdpa), 4 or 8 documents, B=1 (one piece): H=8 L=64 1.16-1.22,
# L=96 0.96-1.03, L=128 0.63-0.64, L=192 0.51-0.54; H=4 L=128 0.82-0.84; H=1 L=128 1.23-1.28, L=192 0.96-0.99,
# L=256 0.77-0.81, L=384 0.53-0.57. Key padding, random lengths L/4..L (about one piece per batch row), H=8:
# B=64 L=48 1.27; B=32 L=64 1.45; B=32 L=96 1.10; B=16 L=96 1.11; B=4 L=128 1.00; B=16 L=128 0.87; B=32 L=128
# 0.87; B=2 L=192 0.80; B=8 L=256 0.67. (H=4 at 2^16 and H=1 L=256 would gain a little more; the rule leaves
# them to sdpa rather than lose the cases at 1.1-1.45.)
PIECES_MIN_WORK = 1 << 17  #: pieces run on tiled when B * H * Lq * Lk per piece is at least this (H=8: L >= 128)


def _static_lengths(p: Problem) -> bool:
    """Lq and Lk are plain ints, not the symbolic lengths of a traced graph with dynamic shapes."""
    return type(p.Lq) is int and type(p.Lk) is int


def _sdpa_or_tiled(p: Problem) -> tuple[str, str]:
    """Which of sdpa/tiled is slower for this call, and why (both can run it)."""
    if not _static_lengths(p):
        return "tiled", (
            "the sequence length is symbolic (torch.compile/torch.export with dynamic shapes): tiled's "
            "plan follows from the length, sdpa's graph serves every length"
        )
    if p.mask is None and p.bias is None:
        return "tiled", "sdpa runs unmasked attention in torch's fused kernel, the fastest exact path here"
    if p.bias is None and isinstance(p.mask, _masks._Causal) and p.Lq == p.Lk:
        return "tiled", "sdpa runs top-left causal (Lq == Lk) in torch's fused kernel with is_causal=True"
    dense_bytes = _dense_bytes(p)
    if dense_bytes > DENSE_MASK_BUDGET:
        return "sdpa", (
            f"sdpa would build a dense mask/bias of {dense_bytes / 2**30:.1f} GiB "
            f"(budget {DENSE_MASK_BUDGET / 2**30:.0f} GiB); tiled evaluates it per tile in O(L) memory"
        )
    if p.mask is None:
        return "tiled", (
            f"only a bias ({p.bias!r}), no mask: tiled has no tile to skip, and sdpa adds the "
            f"{dense_bytes / 2**20:.1f} MiB dense bias in one fused call"
        )
    if any(isinstance(leaf, _masks._Dense) for leaf in leaves(p.mask)):
        return "tiled", "the mask is a dense tensor already: sdpa reads it in one fused call"
    work = p.B * p.H * p.Lq * p.Lk
    pieces = _pieces(p) if work >= PIECES_MIN_WORK else 0  # planning reads the mask's values: only when it can pay
    if pieces and work >= PIECES_MIN_WORK * pieces:
        return "sdpa", (
            "tiled runs it as pieces of plain attention (packed documents or key padding) without a mask, in "
            "torch's fused kernel or as grouped matmuls; sdpa would compute every pair under a dense mask"
        )
    if p.Lq * p.Lk < TILED_MIN_PAIRS:
        return "tiled", f"Lq*Lk = {p.Lq * p.Lk} < {TILED_MIN_PAIRS}: tiled's per-tile overhead dominates"
    kept = kept_fraction(p.mask, p.Lq, p.Lk, 128, 128)  # position masks: from integers alone
    if kept is None and torch.compiler.is_compiling():
        return "tiled", (
            "under torch.compile the mask's tiles follow from tensor values (padding, document, dense), which a "
            "graph cannot read without a break; sdpa runs the dense mask in one fused call"
        )
    if kept is None:
        tiles = p.mask.classify_tiles(p.Lq, p.Lk, 128, 128)  # on the mask's own device (CPU for index-only masks)
        kept = float((tiles != _masks.EMPTY).float().mean())
    if kept <= TILED_MAX_KEPT:
        return "sdpa", (
            f"the mask keeps {kept:.0%} of 128x128 tiles (<= {TILED_MAX_KEPT:.0%}): tiled skips the rest, "
            "sdpa would compute every pair under a dense mask"
        )
    return "tiled", f"the mask keeps {kept:.0%} of tiles (> {TILED_MAX_KEPT:.0%}): skipping saves too little"


def _pieces(p: Problem) -> int:
    """How many pieces (calls) the tiled backend would run this call as, without a mask (:mod:`._segments`);
    0 where it would not."""
    plan = plan_segments(p.mask, p.bias, p.dropout_p, B=p.B, H=p.H, Hkv=p.Hkv, Lq=p.Lq, Lk=p.Lk, D=p.D, Dv=p.Dv,
                         dtype=p.dtype, device=p.device)  # fmt: skip
    return 0 if plan is None else len(plan.pieces)


def _dense_bytes(p: Problem) -> int:
    """Bytes of the dense mask/bias tensors the sdpa backend would build for this call."""
    return sdpa_mask_bytes(p.B, p.H, p.Lq, p.Lk, p.dtype, p.mask, p.bias)


@dataclass(frozen=True)
class Explanation:
    """Which backend runs and why each other backend does not."""

    backend: str  # the backend that runs
    reasons: dict[str, str]  # backend name -> why it was not chosen
    problem: Problem  # the validated call
    how: str | None = None  # how the backend runs it (tiled: which fast path and tiles), when it says

    def __str__(self) -> str:
        p = self.problem
        mask = "none" if p.mask is None else repr(p.mask)
        bias = "none" if p.bias is None else repr(p.bias)
        lines = [
            f"attention(B={p.B}, H={p.H}, Hkv={p.Hkv}, Lq={p.Lq}, Lk={p.Lk}, D={p.D}, Dv={p.Dv}, "
            f"dtype={str(p.dtype).replace('torch.', '')}, mask={mask}, bias={bias})",
            f"  runs on: {self.backend}",
        ]
        if self.how is not None:
            lines.append(f"  how: {self.how}")
        lines += [f"  not {name}: {why}" for name, why in self.reasons.items()]
        return "\n".join(lines)


def _choose(p: Problem, backend: str) -> Explanation:
    if backend != "auto":
        if backend not in BACKENDS:
            raise ValueError(
                f"attention(): backend must be 'auto' or one of {sorted(BACKENDS)}, got {backend!r}"
            )
        why = BACKENDS[backend].why_not(p)
        if why is not None:
            raise ValueError(f"attention(): backend={backend!r} cannot run this call: {why}")
        return Explanation(backend, {n: f"backend={backend!r} was requested" for n in BACKENDS if n != backend}, p)
    reasons: dict[str, str] = {}
    runnable = []
    for name in AUTO_ORDER:
        why = BACKENDS[name].why_not(p)
        if why is None:
            runnable.append(name)
        else:
            reasons[name] = why
    if "sdpa" in runnable and "tiled" in runnable:
        slower, why = _sdpa_or_tiled(p)
        runnable.remove(slower)
        reasons[slower] = why
    if runnable:
        for later in runnable[1:]:
            reasons[later] = f"{runnable[0]} is preferred: it comes first in AUTO_ORDER and can run this call"
        return Explanation(runnable[0], reasons, p)
    raise AssertionError("the reference backend runs every call")  # internal invariant


# The return type follows the flags: a plain call gives the output tensor, a call asking for
# weights and/or lse a tuple (out, ...); a flag that is a runtime bool gives the union.
@overload
def attention(q: Tensor, k: Tensor, v: Tensor, mask: Mask | Tensor | None = None, *,
              bias: Bias | Tensor | None = None, scale: float | None = None, dropout_p: float = 0.0,
              return_weights: Literal[False] = False, return_lse: Literal[False] = False,
              backend: str = "auto") -> Tensor: ...  # fmt: skip
@overload
def attention(q: Tensor, k: Tensor, v: Tensor, mask: Mask | Tensor | None = None, *,
              bias: Bias | Tensor | None = None, scale: float | None = None, dropout_p: float = 0.0,
              return_weights: Literal[True], return_lse: bool = False,
              backend: str = "auto") -> tuple[Tensor, ...]: ...  # fmt: skip
@overload
def attention(q: Tensor, k: Tensor, v: Tensor, mask: Mask | Tensor | None = None, *,
              bias: Bias | Tensor | None = None, scale: float | None = None, dropout_p: float = 0.0,
              return_weights: bool = False, return_lse: Literal[True],
              backend: str = "auto") -> tuple[Tensor, ...]: ...  # fmt: skip
@overload
def attention(q: Tensor, k: Tensor, v: Tensor, mask: Mask | Tensor | None = None, *,
              bias: Bias | Tensor | None = None, scale: float | None = None, dropout_p: float = 0.0,
              return_weights: bool = False, return_lse: bool = False,
              backend: str = "auto") -> Tensor | tuple[Tensor, ...]: ...  # fmt: skip
def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Mask | Tensor | None = None,
    *,
    bias: Bias | Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    return_weights: bool = False,
    return_lse: bool = False,
    backend: str = "auto",
) -> Tensor | tuple[Tensor, ...]:
    r"""Scaled dot-product attention, exactly: ``softmax(QK^T * scale + bias) V``.

    Args:
        q: queries ``(B, H, Lq, D)``.
        k: keys ``(B, Hkv, Lk, D)``; ``H % Hkv == 0`` (grouped-query attention: query
            head ``h`` reads key head ``h // (H // Hkv)``; K/V are never copied per head).
        v: values ``(B, Hkv, Lk, Dv)``; ``Dv`` may differ from ``D``.
        mask: an :mod:`attnkit.masks` object or a bool tensor broadcastable to
            ``(B, H, Lq, Lk)``; ``True`` = may attend. Causal masks are aligned
            bottom-right when ``Lq != Lk``.
        bias: additive float tensor broadcastable to ``(B, H, Lq, Lk)``, or a
            :class:`~attnkit.functional.bias.Bias` such as ``Alibi``.
        scale: multiplies ``QK^T``; default ``1 / sqrt(D)``.
        dropout_p: dropout probability on the weights, in ``[0, 1)``.
        return_weights: also return the weights ``(B, H, Lq, Lk)`` (before dropout).
        return_lse: also return the row log-sum-exp ``(B, H, Lq)`` (``-inf`` on empty rows).
        backend: ``"auto"`` or a name in :data:`BACKENDS`.

    Returns:
        ``out (B, H, Lq, Dv)``; with ``return_weights`` and/or ``return_lse`` a tuple
        ``(out, weights)``, ``(out, lse)`` or ``(out, weights, lse)``.

    A query row whose mask allows no key gets output 0, weights 0 and zero gradient;
    with no keys at all (``Lk = 0``) every row is such a row (``lse = -inf``, weights
    ``(B, H, Lq, 0)``). Non-finite inputs give NaN, never a silent 0, the same in every
    backend: a NaN or inf in a query row makes that output row NaN, and one in the keys or
    values of a key head makes every row of the query heads reading it NaN (masking does not
    hide it; see :func:`~attnkit.functional.reference.nan_in_nan_out`).

    Example:
        >>> import torch
        >>> from attnkit import masks
        >>> q = k = v = torch.randn(1, 2, 5, 8)
        >>> attention(q, k, v, mask=masks.causal()).shape
        torch.Size([1, 2, 5, 8])
    """
    if (
        bias is None
        and backend == "auto"
        and not (return_weights or return_lse)
        and (mask is None or type(mask) is _masks._Causal)
        and fast_check(q, k, v, scale, dropout_p)
        and (mask is None or q.shape[2] == k.shape[2])
        and not _debug()
    ):
        out = sdpa_attention(q, k, v, mask, scale=scale, dropout_p=dropout_p)  # fused kernel; nothing to choose
        return nan_in_nan_out(q, k, v, out)[0]
    p = validate("attention", q, k, v, mask, bias, scale, dropout_p, return_weights, return_lse)
    choice = _choose(p, backend)
    if _debug():
        logger.debug("%s", choice)
    out, weights, lse = BACKENDS[choice.backend].run(q, k, v, p)
    if choice.backend != "reference":  # the reference applies the rule itself
        out, weights, lse = nan_in_nan_out(q, k, v, out, weights, lse)
    if not (return_weights or return_lse):
        return out
    extra = [_returned(t, what, choice.backend) for t, what, wanted in
             ((weights, "weights", return_weights), (lse, "lse", return_lse)) if wanted]  # fmt: skip
    return (out, *extra)


def _debug() -> bool:
    """Debug logging is on, outside of ``torch.compile``/``torch.export`` tracing (a graph cannot hold a
    ``logging`` call: it would break the graph, and the choice is the same on every call it traces)."""
    return not torch.compiler.is_compiling() and logger.isEnabledFor(logging.DEBUG)


def _returned(t: Tensor | None, what: str, backend: str) -> Tensor:
    """``t``, which the backend chosen for the call must have returned (an internal invariant)."""
    if t is None:
        raise AssertionError(f"backend {backend!r} ran a call asking for {what} but returned none")
    return t


def explain(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Mask | Tensor | None = None,
    *,
    bias: Bias | Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    return_weights: bool = False,
    return_lse: bool = False,
    backend: str = "auto",
) -> Explanation:
    """Which backend :func:`attention` would run for these arguments, and why not the others.

    Example:
        >>> import torch
        >>> q = k = v = torch.randn(1, 1, 4, 8)
        >>> explain(q, k, v, return_weights=True).backend
        'reference'
    """
    p = validate("explain", q, k, v, mask, bias, scale, dropout_p, return_weights, return_lse)
    chosen = _choose(p, backend)
    if chosen.backend != "tiled" or q.is_meta:  # meta tensors (shape-only planning) hold no data to plan tiles from
        return chosen
    call = TiledCall.build(q, k, p.mask, p.bias, p.scale, p.dropout_p, 0, Dv=p.Dv)  # the plan the call would make
    return dataclasses.replace(chosen, how=route(call))
