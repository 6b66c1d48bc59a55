r"""Packed documents as segments: the tiled backend's forward pass for ``masks.document``.

Under a document mask whose documents are contiguous runs of positions (packed
sequences), the rows of document ``[s, e)`` see exactly the keys ``[s, e)``: attention
is block diagonal, and each block is plain (or, with ``& masks.causal()``, causal)
attention over one short sequence. So the forward pass needs no tile plan and no mask
at all: consecutive documents of equal length ``n`` are stacked as a batch of
sequences (a view of Q, K and V when they cover the whole length) and run through
torch's fused CPU FlashAttention kernel
(``aten._scaled_dot_product_flash_attention_for_cpu``, the kernel behind SDPA on CPU),
which returns the output and the log-sum-exp the backward pass needs. The backward
pass stays the tiled one (:func:`.tiled.tiled_backward`: any tiling gives the same
gradients from ``(out, lse)``).

Every row sees at least its own key, so no row is empty (the fused kernel is never
asked for a fully masked row). Measured against the tiled loop (B=1, H=8, D=64, float32,
2 threads, medians of 10-30 calls in one process): 8 equal documents, L=512 0.72 vs 1.94 ms,
1024 2.37 vs 2.78, 2048 6.7 vs 7.7, 4096 25.6 vs 26.9, 8192 88 vs 102, 16384 359 vs 397;
random lengths, L=1024 (14 documents of 16-128) 2.52 vs 6.18, L=4096 (59 of 16-128) 9.6
vs 25.2, L=16384 (12 of 256-2048) 279 vs 369. ``attnkit bench`` against FlexAttention:
``benchmarks/results/flex-fused/``.

Example:
    >>> import torch
    >>> from attnkit import masks
    >>> ids = torch.tensor([0] * 24 + [1] * 24 + [2] * 16)  # three packed documents
    >>> plan = plan_segments(masks.document(ids), B=1, H=2, Hkv=2, Lq=64, Lk=64, D=4, Dv=4,
    ...                      dtype=torch.float32, device=torch.device("cpu"))
    >>> plan.rows[0].groups  # two documents of 24 from position 0 (one call), one of 16 from 48
    (Run(start=0, length=24, count=2), Run(start=48, length=16, count=1))

Shape legend: B batch, nb batch rows of an entry, H heads, L = Lq = Lk, D head dim,
Dv value head dim, n documents of a run, Ld their length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import masks as _masks
from ..masks import Mask

__all__ = ["Run", "Rows", "Segments", "plan_segments", "segments_forward", "segments_backward", "fused_kernel",
           "fused_backward_kernel"]  # fmt: skip

# Documents shorter than this on average mean one fused call per few rows, and the tiled loop (blocks of 128
# holding many documents) is as fast. Random packings, B=1, H=8, D=64, 2 threads, segments vs tiled, ms:
# L=1024 mean length 10: 3.66 vs 5.37; mean 20: 2.51 vs 6.10; mean 4: 6.36 vs 5.86; mean 2: 9.18 vs 4.23;
# L=4096 mean 20: 10.2 vs 23.0; mean 4: 25.7 vs 22.8; mean 70 (15 documents of 64-512): 17.7 vs 33.7.
MIN_MEAN_LENGTH = 8
_DTYPES = (torch.float32, torch.float64)  # half inputs keep the tiled path (computed in float32 there)


@dataclass(frozen=True)
class Run:
    """``count`` consecutive documents of ``length`` positions each, the first starting at ``start``."""

    start: int
    length: int
    count: int


@dataclass(frozen=True)
class Rows:
    """Batch rows ``[b0, b1)`` that share one packing, as runs of equal-length documents."""

    b0: int
    b1: int
    groups: tuple[Run, ...]


@dataclass(frozen=True)
class Segments:
    """The forward pass of a document mask as fused calls: one per :class:`Run` per :class:`Rows`."""

    rows: tuple[Rows, ...]
    causal: bool  # the mask is document & causal: causal inside each document


def fused_kernel():
    """torch's fused CPU FlashAttention op (``(out, logsumexp)``), or None where this torch lacks it."""
    packet = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return None if packet is None else packet.default


def fused_backward_kernel():
    """The backward op of :func:`fused_kernel` (``(dq, dk, dv)``), or None where this torch lacks it."""
    packet = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    return None if packet is None else packet.default


def plan_segments(mask: Mask | None, *, B: int, H: int, Hkv: int, Lq: int, Lk: int, D: int, Dv: int,
                  dtype: torch.dtype, device: torch.device) -> Segments | None:  # fmt: skip
    """The forward pass of ``mask`` as segments, or None when it does not apply.

    Applies to ``masks.document(ids)`` and ``masks.document(ids) & masks.causal()`` (either
    order) on CPU, float32/float64, ``Lq == Lk``, as many key heads as query heads, values as
    wide as keys (``Dv == D``: the fused kernel's rule), outside
    ``torch.compile`` (the packing is read from the ids' values), when every document is one
    contiguous run of positions and documents are on average at least ``MIN_MEAN_LENGTH`` (8)
    long (shorter ones mean one small call per few rows, where the tiled loop's blocks of
    128 hold many documents at once). Bias and dropout are checked by the caller.
    """
    if device.type != "cpu" or dtype not in _DTYPES or Lq != Lk or H != Hkv or D != Dv or Lk == 0:
        return None
    if torch.compiler.is_compiling() or fused_kernel() is None or fused_backward_kernel() is None:
        return None
    document, causal = _document_of(mask)
    if document is None:
        return None
    ids = document.ids  # (1 or B, Lk)
    if ids.shape[1] != Lk:
        return None  # the mask's own error is raised by the tiled path
    rows = _rows(ids.to("cpu"), B)
    if rows is None or any(sum(g.count for g in r.groups) * MIN_MEAN_LENGTH > Lk for r in rows):
        return None
    return Segments(rows, causal)


def _document_of(mask: Mask | None) -> tuple[_masks._Document | None, bool]:
    """``(the document mask, whether it is and-ed with causal)``; ``(None, False)`` for other masks."""
    if type(mask) is _masks._Document:
        return mask, False
    if type(mask) is _masks._And:
        a, b = mask.a, mask.b
        if type(a) is _masks._Causal:
            a, b = b, a
        if type(a) is _masks._Document and type(b) is _masks._Causal:
            return a, True
    return None, False


def _rows(ids: Tensor, B: int) -> tuple[Rows, ...] | None:
    """Each distinct packing among the batch rows as :class:`Rows`; None if a document is not contiguous."""
    if ids.shape[0] == 1 or bool((ids == ids[:1]).all()):
        groups = _runs(ids[0])
        return None if groups is None else (Rows(0, B, groups),)
    out = []
    for b in range(B):
        groups = _runs(ids[b])
        if groups is None:
            return None
        out.append(Rows(b, b + 1, groups))
    return tuple(out)


def _runs(ids: Tensor) -> tuple[Run, ...] | None:
    """The documents of one row of ids ``(L,)`` as runs of equal length; None if an id occurs in two places."""
    values, counts = torch.unique_consecutive(ids, return_counts=True)  # (n_docs,), (n_docs,)
    if torch.unique(values).numel() != values.numel():
        return None  # a document split in two places: not block diagonal in contiguous runs
    groups: list[Run] = []
    start = 0
    for length in counts.tolist():
        last = groups[-1] if groups else None
        if last is not None and last.length == length:
            groups[-1] = Run(last.start, length, last.count + 1)
        else:
            groups.append(Run(start, length, 1))
        start += length
    return tuple(groups)


def segments_forward(q: Tensor, k: Tensor, v: Tensor, seg: Segments, scale: float) -> tuple[Tensor, Tensor]:
    """``(out (B, H, L, Dv), lse (B, H, L))`` of the document mask planned as ``seg``.

    One fused call per run: its ``n`` documents of ``Ld`` positions become ``nb*H*n``
    sequences ``(nb*H*n, 1, Ld, D)``, so the kernel's output (laid out sequence by
    sequence) is already in ``(B, H, L)`` order; when one run covers every position
    and batch row, it is returned as is, without a copy.
    """
    B, H, L, _ = q.shape
    kernel = fused_kernel()
    if len(seg.rows) == 1 and len(seg.rows[0].groups) == 1:  # one run over everything: no copy at all
        o, lse = _run(kernel, q, k, v, seg.rows[0].groups[0], seg.causal, scale)  # (B*H*n, 1, Ld, Dv), (B*H*n, 1, Ld)
        return o.reshape(B, H, L, -1), lse.reshape(B, H, L)  # views: the kernel writes sequence by sequence
    out = q.new_empty(B, H, L, v.shape[3])  # (B, H, L, Dv)
    lse = q.new_empty(B, H, L)
    for rows in seg.rows:
        span = slice(rows.b0, rows.b1)
        for run in rows.groups:
            cols = slice(run.start, run.start + run.length * run.count)
            nb = rows.b1 - rows.b0
            o, row_lse = _run(kernel, q[span, :, cols], k[span, :, cols], v[span, :, cols], run, seg.causal, scale)
            out[span, :, cols] = o.reshape(nb, H, -1, o.shape[-1])  # (nb*H*n, 1, Ld, Dv) -> (nb, H, n*Ld, Dv)
            lse[span, :, cols] = row_lse.reshape(nb, H, -1)  # (nb*H*n, 1, Ld) -> (nb, H, n*Ld)
    return out, lse


def _run(kernel, q: Tensor, k: Tensor, v: Tensor, run: Run, causal: bool, scale: float) -> tuple[Tensor, Tensor]:
    """One fused call over the ``run.count`` documents that ``q, k, v (nb, H, n*Ld, D)`` hold."""

    def stacked(t: Tensor) -> Tensor:
        return t.reshape(-1, 1, run.length, t.shape[-1])  # (nb, H, n*Ld, D) -> (nb*H*n, 1, Ld, D), a view if it can

    return kernel(stacked(q), stacked(k), stacked(v), 0.0, causal, scale=scale)  # (nb*H*n, 1, Ld, Dv), (.., 1, Ld)


def segments_backward(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, seg: Segments,
                      scale: float) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """``(dq, dk, dv)`` of :func:`segments_forward`'s call, one fused backward call per run.

    Documents do not share keys, so each run's key gradients are its own (no overlapping
    windows to add up). Measured against the tiled backward pass (8 equal documents, B=1, H=8,
    D=64, float32, 2 threads, medians of 10): L=1024 5.0 vs 5.3 ms, 4096 61 vs 66, 8192 226 vs 247.
    """
    backward = fused_backward_kernel()
    B, H, L, _ = q.shape
    if len(seg.rows) == 1 and len(seg.rows[0].groups) == 1:  # one run over everything
        grads = _run_backward(backward, (dout, q, k, v, out), lse, seg.rows[0].groups[0], seg.causal, scale)
        dq, dk, dv = grads  # each (B*H*n, 1, Ld, D or Dv)
        return dq.reshape(q.shape), dk.reshape(k.shape), dv.reshape(v.shape)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    for rows in seg.rows:
        span = slice(rows.b0, rows.b1)
        for run in rows.groups:
            cols = slice(run.start, run.start + run.length * run.count)
            parts = tuple(t[span, :, cols] for t in (dout, q, k, v, out))  # each (nb, H, n*Ld, D or Dv)
            grads = _run_backward(backward, parts, lse[span, :, cols], run, seg.causal, scale)
            nb = rows.b1 - rows.b0
            for whole, part in zip((dq, dk, dv), grads, strict=True):
                whole[span, :, cols] = part.reshape(nb, H, -1, part.shape[-1])  # (nb*H*n, 1, Ld, D) -> (nb, H, n*Ld, D)
    return dq, dk, dv


def _run_backward(backward, tensors: tuple[Tensor, ...], lse: Tensor, run: Run, causal: bool, scale: float):
    """One fused backward call over a run: ``(dq, dk, dv)`` each ``(nb*H*n, 1, Ld, D)``, from
    ``tensors = (dout, q, k, v, out)``, each ``(nb, H, n*Ld, D)``, and ``lse (nb, H, n*Ld)``."""

    def stacked(t: Tensor) -> Tensor:
        return t.reshape(-1, 1, run.length, t.shape[-1])  # (nb, H, n*Ld, D) -> (nb*H*n, 1, Ld, D)

    row_lse = lse.reshape(-1, 1, run.length)  # (nb, H, n*Ld) -> (nb*H*n, 1, Ld)
    return backward(*(stacked(t) for t in tensors), row_lse, 0.0, causal, scale=scale)
