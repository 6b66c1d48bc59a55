r"""Masks that cut attention into pieces without a mask: packed documents and key padding.

Two common masks leave every query row one contiguous range of keys that it sees in
full, shared by whole runs of rows:

* ``masks.document(ids)`` whose documents are contiguous runs of positions (packed
  sequences): the rows of document ``[s, e)`` see exactly the keys ``[s, e)``, so
  attention is block diagonal;
* ``masks.padding(lengths)`` (key padding): every query of batch row ``b`` sees exactly
  the keys ``[0, lengths[b])``.

Each piece is plain attention (with ``& masks.causal()``, causal attention) over shorter
sequences, so no tile plan and no mask are needed: consecutive documents of equal length
are stacked as a batch of sequences, batch rows of equal length share one call, and each
call runs in torch's fused CPU FlashAttention kernel
(``aten._scaled_dot_product_flash_attention_for_cpu``, the kernel behind SDPA on CPU) on
views of q, k and v. Short sequences (at most ``SHORT_PAIRS`` = 128 x 128 query-key pairs,
which the kernel would split into blocks of 32 queries) run instead as the formula's three
steps on groups of sequences whose scores stay in cache (bmm, softmax, bmm). Either returns
the output and the log-sum-exp; the backward pass runs the kernel's backward op per piece
(the tiled one when ``lse`` itself gets a gradient, which the op does not take).

Every row sees at least one key (documents: itself; padding: lengths of 0 are left to the
tiled loop), so the kernel never meets a fully masked row. Measured against the tiled loop
(B=1, H=8, D=64, float32, 2 threads, medians of 10-50 calls in one process): 8 equal
documents, L=512 1.03 vs 2.20 ms; random packings, L=1024 (14 documents of 16-128) 2.52
vs 6.18, L=4096 (59 of 16-128) 9.6 vs 25.2, L=16384 (12 of 256-2048) 279 vs 369; the
backward op against the tiled backward pass (8 documents), L=1024 5.0 vs 5.3 ms, 4096 61 vs
66, 8192 226 vs 247. Key padding: see ``benchmarks/results/grid-1k-16k/``. ``attnkit bench``
against FlexAttention: ``benchmarks/results/flex-fused/``.

Example:
    >>> import torch
    >>> from attnkit import masks
    >>> ids = torch.tensor([0] * 24 + [1] * 24 + [2] * 16)  # three packed documents
    >>> plan = plan_segments(masks.document(ids), B=1, H=2, Hkv=2, Lq=64, Lk=64, D=4, Dv=4,
    ...                      dtype=torch.float32, device=torch.device("cpu"))
    >>> [(p.q0, p.lq, p.count) for p in plan.pieces]  # two documents of 24 from 0 (one call), one of 16 from 48
    [(0, 24, 2), (48, 16, 1)]
    >>> plan = plan_segments(masks.padding([64, 40, 40]), B=3, H=2, Hkv=2, Lq=64, Lk=64, D=4, Dv=4,
    ...                      dtype=torch.float32, device=torch.device("cpu"))
    >>> [(p.b0, p.b1, p.lk) for p in plan.pieces]  # batch row 0 sees 64 keys; rows 1-2 see 40 (one call)
    [(0, 1, 64), (1, 3, 40)]

Shape legend: B batch, nb batch rows of a piece, H heads, D head dim, Dv value head dim,
n sequences a piece stacks, lq/lk their queries/keys.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import masks as _masks
from ..masks import Mask
from ._bands import as_penalty

__all__ = ["Piece", "Segments", "plan_segments", "segments_forward", "segments_backward", "fused_kernel",
           "fused_backward_kernel", "grouped", "scratch"]  # fmt: skip

# Documents shorter than this on average mean one fused call per few rows, and the tiled loop (blocks of 128
# holding many documents) is as fast. Random packings, B=1, H=8, D=64, 2 threads, segments vs tiled, ms:
# L=1024 mean length 10: 3.66 vs 5.37; mean 20: 2.51 vs 6.10; mean 4: 6.36 vs 5.86; mean 2: 9.18 vs 4.23;
# L=4096 mean 20: 10.2 vs 23.0; mean 4: 25.7 vs 22.8; mean 70 (15 documents of 64-512): 17.7 vs 33.7.
MIN_MEAN_LENGTH = 8
# Sequences of at most this many (query, key) pairs skip the fused kernel, which splits sequences shorter than 192
# into blocks of 32 queries, and run as three ops per group of sequences instead (bmm, softmax, bmm: see
# _forward_short). 8 equal documents, B=1, H=8, D=64, fp32, 2 threads, medians of 40 in one process, grouped ops vs
# the fused kernel, ms: L=512 (documents of 64) 0.49 vs 0.76, & causal 0.48 vs 0.63; L=1024 (128) 1.84 vs 2.05,
# & causal 1.84 vs 1.98; L=2048 (256) 7.21 vs 6.50 and L=4096 (512) 30.7 vs 27.8: the kernel's longer blocks win.
SHORT_PAIRS = 128 * 128
# Score tiles of a group of short sequences, in bytes: the group's three ops keep them in cache. At L=1024 above:
# 0.5 MiB 1.88 ms, 1 MiB 1.84, 2 MiB 1.81; one group for all (4 MiB) 3.22.
GROUP_BYTES = 1 << 20
_DTYPES = (torch.float32, torch.float64)  # half inputs keep the tiled path (computed in float32 there)


@dataclass(frozen=True)
class Piece:
    """Batch rows ``[b0, b1)``: ``count`` consecutive sequences, sequence ``i`` the queries
    ``[q0 + i*lq, q0 + (i+1)*lq)`` seeing exactly the keys ``[k0 + i*lk, k0 + (i+1)*lk)``."""

    b0: int
    b1: int
    q0: int
    lq: int
    k0: int
    lk: int
    count: int = 1

    @property
    def rows(self) -> slice:
        return slice(self.q0, self.q0 + self.count * self.lq)

    @property
    def keys(self) -> slice:
        return slice(self.k0, self.k0 + self.count * self.lk)


@dataclass(frozen=True)
class Segments:
    """A call as fused kernel calls without a mask, one per :class:`Piece`; together they cover every query."""

    pieces: tuple[Piece, ...]
    causal: bool  # causal inside each piece (document & causal, or padding & causal with Lq == Lk)
    what: str  # "documents" or "padding", for explain()


def fused_kernel():
    """torch's fused CPU FlashAttention op (``(out, logsumexp)``), or None where this torch lacks it."""
    packet = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return None if packet is None else packet.default


def fused_backward_kernel():
    """The backward op of :func:`fused_kernel` (``(dq, dk, dv)``), or None where this torch lacks it."""
    packet = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    return None if packet is None else packet.default


def plan_segments(mask: Mask | None, bias=None, dropout_p: float = 0.0, *, B: int, H: int, Hkv: int, Lq: int,
                  Lk: int, D: int, Dv: int, dtype: torch.dtype, device: torch.device) -> Segments | None:  # fmt: skip
    """The call as fused pieces without a mask, or None when that does not apply.

    Applies on CPU, float32/float64, values as wide as keys (``Dv == D``: the fused kernel's
    rule), outside ``torch.compile`` (the pieces are read from the mask's values), to

    * ``masks.document(ids)``, ``& masks.causal()`` or not, with ``Lq == Lk`` and as many key
      heads as query heads, when every document is one contiguous run of positions and
      documents are on average at least
      ``MIN_MEAN_LENGTH`` (8) long (shorter ones mean one small call per few rows, where the
      tiled loop's blocks of 128 hold many documents at once);
    * ``masks.padding(lengths)`` (any ``Lq``, ``Lk``), or ``& masks.causal()`` with ``Lq == Lk``,
      when no length is 0.

    A bias or dropout (which depend on absolute positions and are not the kernel's) rule it out.
    """
    if bias is not None or dropout_p > 0:
        return None
    if device.type != "cpu" or dtype not in _DTYPES or D != Dv or 0 in (B, H, Lq, Lk):
        return None  # empty calls keep the tiled path's own handling
    if torch.compiler.is_compiling() or fused_kernel() is None or fused_backward_kernel() is None:
        return None
    base, causal = _base_of(mask)
    if causal and Lq != Lk:
        return None  # the kernel's causal is top-left aligned, attnkit's bottom-right: equal only when Lq == Lk
    plan = None
    if type(base) is _masks._Document and Lq == Lk and base.ids.shape[1] == Lk:
        pieces = _document_pieces(base.ids.to("cpu"), B)
        if pieces is None or sum(p.count * (p.b1 - p.b0) for p in pieces) * MIN_MEAN_LENGTH > B * Lk:
            return None
        plan = Segments(pieces, causal, "documents")
    elif type(base) is _masks._Padding and base.lengths.numel() == B:
        lengths = base.lengths.to("cpu").tolist()
        if min(lengths) < 1 or max(lengths) > Lk:
            return None  # an empty row (output 0) or a length the mask's own check will reject
        plan = Segments(_padding_pieces(lengths, Lq), causal, "padding")
    # Grouped-query heads (H=8, Hkv=2, B=2, fp32, 2 threads, medians of 10, pieces vs tiles, ms): the kernel takes
    # Hkv < H as it is, and key padding gains (L=1024 21.5 vs 22.6, & causal 15.6 vs 16.3; L=4096 301 vs 340, &
    # causal 197 vs 213), but 3 documents of unequal length do not (L=1024 11.7 vs 10.6, 4096 157 vs 157): the tile
    # loop folds the 4 query heads of a key head into one matmul. Stacked documents would also need K, V per head.
    if plan is None or (H != Hkv and plan.what == "documents"):
        return None
    return plan


def _base_of(mask: Mask | None) -> tuple[Mask | None, bool]:
    """``(the document or padding mask, whether it is and-ed with causal)``; ``(None, False)`` for other masks."""
    if type(mask) in (_masks._Document, _masks._Padding):
        return mask, False
    if type(mask) is _masks._And:
        a, b = mask.a, mask.b
        if type(a) is _masks._Causal:
            a, b = b, a
        if type(a) in (_masks._Document, _masks._Padding) and type(b) is _masks._Causal:
            return a, True
    return None, False


def _padding_pieces(lengths: list[int], Lq: int) -> tuple[Piece, ...]:
    """One piece per run of batch rows with the same number of real keys."""
    pieces: list[Piece] = []
    for b, n in enumerate(lengths):
        last = pieces[-1] if pieces else None
        if last is not None and last.lk == n:
            pieces[-1] = Piece(last.b0, b + 1, 0, Lq, 0, n)
        else:
            pieces.append(Piece(b, b + 1, 0, Lq, 0, n))
    return tuple(pieces)


def _document_pieces(ids: Tensor, B: int) -> tuple[Piece, ...] | None:
    """Runs of equal-length documents as pieces, for all batch rows at once when they share one packing;
    None if a document is not one contiguous run."""
    if ids.shape[0] == 1 or bool((ids == ids[:1]).all()):
        return _runs(ids[0], 0, B)
    pieces: list[Piece] = []
    for b in range(B):
        row = _runs(ids[b], b, b + 1)
        if row is None:
            return None
        pieces += row
    return tuple(pieces)


def _runs(ids: Tensor, b0: int, b1: int) -> tuple[Piece, ...] | None:
    """The documents of one row of ids ``(L,)`` as runs of equal length; None if an id occurs in two places."""
    values, counts = torch.unique_consecutive(ids, return_counts=True)  # (n_docs,), (n_docs,)
    if torch.unique(values).numel() != values.numel():
        return None  # a document split in two places: not block diagonal in contiguous runs
    pieces: list[Piece] = []
    start = 0
    for length in counts.tolist():
        last = pieces[-1] if pieces else None
        if last is not None and last.lq == length:
            pieces[-1] = Piece(b0, b1, last.q0, length, last.k0, length, last.count + 1)
        else:
            pieces.append(Piece(b0, b1, start, length, start, length))
        start += length
    return tuple(pieces)


def _covers_all(piece: Piece, B: int, Lq: int, Lk: int) -> bool:
    """True when one piece is the whole call (every batch row, query and key): no copy is needed."""
    return piece.b0 == 0 and piece.b1 == B and piece.q0 == 0 and piece.k0 == 0 and \
        piece.count * piece.lq == Lq and piece.count * piece.lk == Lk  # fmt: skip


def _stacked(t: Tensor, length: int) -> Tensor:
    """``(nb, H, n*length, X) -> (nb*H*n, 1, length, X)``: a piece's sequences as a batch (a view if it can);
    a piece of one sequence is passed as it is (the kernel takes fewer key heads than query heads there)."""
    return t if t.shape[2] == length else t.reshape(-1, 1, length, t.shape[-1])


def segments_forward(q: Tensor, k: Tensor, v: Tensor, seg: Segments, scale: float) -> tuple[Tensor, Tensor]:
    """``(out (B, H, Lq, Dv), lse (B, H, Lq))`` of the call planned as ``seg``, one fused call per piece.

    A piece's ``n`` sequences become ``nb*H*n`` sequences ``(nb*H*n, 1, lq, D)``, so the
    kernel's output (laid out sequence by sequence) is already in ``(B, H, Lq)`` order; when
    one piece is the whole call, it is returned as is, without a copy.
    """
    B, H, Lq, _ = q.shape
    kernel = fused_kernel()
    if len(seg.pieces) == 1 and _covers_all(seg.pieces[0], B, Lq, k.shape[2]):
        o, lse = _forward_piece(kernel, q, k, v, seg.pieces[0], seg.causal, scale)
        return o.reshape(B, H, Lq, -1), lse.reshape(B, H, Lq)  # views: the kernel writes sequence by sequence
    out = q.new_empty(B, H, Lq, v.shape[3])  # (B, H, Lq, Dv): the pieces cover every query
    lse = q.new_empty(B, H, Lq)
    for p in seg.pieces:
        b = slice(p.b0, p.b1)
        o, row_lse = _forward_piece(kernel, q[b, :, p.rows], k[b, :, p.keys], v[b, :, p.keys], p, seg.causal, scale)
        out[b, :, p.rows] = o.reshape(p.b1 - p.b0, H, -1, o.shape[-1])  # (nb*H*n, 1, lq, Dv) -> (nb, H, n*lq, Dv)
        lse[b, :, p.rows] = row_lse.reshape(p.b1 - p.b0, H, -1)  # (nb*H*n, 1, lq) -> (nb, H, n*lq)
    return out, lse


def _forward_piece(kernel, q: Tensor, k: Tensor, v: Tensor, p: Piece, causal: bool, scale: float):
    """One fused call: ``q (nb, H, n*lq, D)``, ``k, v (nb, H, n*lk, D)`` -> out ``(nb*H*n, 1, lq, Dv)``, lse
    ``(nb*H*n, 1, lq)``; sequences of at most ``SHORT_PAIRS`` pairs as :func:`_forward_short`."""
    if grouped(p, q.shape[1] != k.shape[1]):
        return _forward_short(q, k, v, p, causal, scale)
    return kernel(_stacked(q, p.lq), _stacked(k, p.lk), _stacked(v, p.lk), 0.0, causal, scale=scale)


def grouped(p: Piece, grouped_query_heads: bool) -> bool:
    """Whether the forward pass runs ``p`` as :func:`_forward_short`'s grouped steps (short sequences, as many
    key heads as query heads) rather than in the fused kernel."""
    return p.lq * p.lk <= SHORT_PAIRS and not grouped_query_heads


def _forward_short(q: Tensor, k: Tensor, v: Tensor, p: Piece, causal: bool, scale: float) -> tuple[Tensor, Tensor]:
    """What :func:`_forward_piece`'s kernel returns, for short sequences: the three steps of the formula on
    groups of sequences whose score tiles fit in ``GROUP_BYTES`` (in cache through all three ops).

    The log-sum-exp comes from the softmax itself: the largest weight of a row is
    ``exp(max - lse)``, so ``lse = max - log(largest weight)`` (two reads of a cached tile
    instead of a ``logsumexp`` pass and an ``exp`` of the whole tile). Every row sees at least
    one key (documents: itself; padding: key 0), so no row is all ``-inf``.
    """
    qs, ks, vs = (_stacked(t, n).flatten(0, 1) for t, n in ((q, p.lq), (k, p.lk), (v, p.lk)))  # (S, lq|lk, X)
    S, lq, lk = qs.shape[0], p.lq, p.lk
    out, lse = qs.new_empty(S, lq, vs.shape[2]), qs.new_empty(S, lq)  # (S, lq, Dv), (S, lq)
    penalty = None
    if causal:  # top-left aligned, as the kernel's: row i sees keys j <= i
        penalty = as_penalty(torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril_(), qs.dtype)  # (lq, lk)
    kt = ks.transpose(1, 2)  # (S, D, lk), a view
    group = min(S, max(1, GROUP_BYTES // (lq * lk * qs.element_size())))
    scores, weights = scratch(2 * group * lq * lk, qs).view(2, group, lq, lk).unbind()  # (group, lq, lk) each
    for i in range(0, S, group):
        j = min(S, i + group)
        s, w = scores[: j - i], weights[: j - i]  # (g, lq, lk)
        if penalty is None:
            torch.baddbmm(s, qs[i:j], kt[i:j], beta=0, alpha=scale, out=s)  # (g, lq, D) @ (g, D, lk) -> (g, lq, lk)
        else:
            torch.baddbmm(penalty, qs[i:j], kt[i:j], alpha=scale, out=s)  # (lq, lk) + (g, lq, D) @ (g, D, lk)
        top = s.amax(-1)  # (g, lq)
        torch.softmax(s, -1, out=w)  # rows sum to 1
        torch.sub(top, w.amax(-1).log_(), out=lse[i:j])  # (g, lq)
        torch.bmm(w, vs[i:j], out=out[i:j])  # (g, lq, lk) @ (g, lk, Dv) -> (g, lq, Dv)
    return out.unsqueeze(1), lse.unsqueeze(1)  # (S, 1, lq, Dv), (S, 1, lq): the kernel's layout


_workspace = threading.local()


def scratch(numel: int, like: Tensor) -> Tensor:
    """A flat buffer of ``numel`` elements of ``like``'s dtype and device, reused from call to call
    (one per thread, grown as needed; its contents are garbage).

    A fresh tensor of a megabyte or more is new pages from the OS on every call, and their
    first touch costs a page fault per 4 KiB: 8 documents of 64 at L=512, H=8, grouped steps
    with fresh score tensors 1.05 ms, with this buffer 0.51 ms (torch's fused kernel: 0.61).
    The buffer holds scores only; nothing returned or saved for backward is a view of it. One
    made under ``torch.inference_mode()`` cannot be written outside it, so it is replaced then.
    """
    buf = getattr(_workspace, "buf", None)
    if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device or \
            (buf.is_inference() and not torch.is_inference_mode_enabled()):  # fmt: skip
        buf = like.new_empty(numel)
        _workspace.buf = buf
    return buf[:numel]


def segments_backward(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, seg: Segments,
                      scale: float) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """``(dq, dk, dv)`` of :func:`segments_forward`'s call, one fused backward call per piece.

    Pieces do not share queries, and documents do not share keys (padding pieces are
    different batch rows), so each piece's gradients are its own; keys no query sees
    (padding) get 0.
    """
    backward = fused_backward_kernel()
    B, H, Lq, _ = q.shape
    if len(seg.pieces) == 1 and _covers_all(seg.pieces[0], B, Lq, k.shape[2]):
        dq, dk, dv = _backward_piece(backward, (dout, q, k, v, out), lse, seg.pieces[0], seg.causal, scale)
        return dq.reshape(q.shape), dk.reshape(k.shape), dv.reshape(v.shape)
    dq, dk, dv = torch.empty_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for p in seg.pieces:
        b = slice(p.b0, p.b1)
        parts = (dout[b, :, p.rows], q[b, :, p.rows], k[b, :, p.keys], v[b, :, p.keys], out[b, :, p.rows])
        grads = _backward_piece(backward, parts, lse[b, :, p.rows], p, seg.causal, scale)
        for whole, part, span in zip((dq, dk, dv), grads, (p.rows, p.keys, p.keys), strict=True):
            dst = whole[b, :, span]  # (nb, H or Hkv, n*l, X)
            dst.copy_(part.reshape(dst.shape))  # (nb*H*n, 1, l, X) or (nb, H or Hkv, l, X) -> (nb, H or Hkv, n*l, X)
    return dq, dk, dv


def _backward_piece(backward, tensors: tuple[Tensor, ...], lse: Tensor, p: Piece, causal: bool, scale: float):
    """One fused backward call: ``(dq, dk, dv)`` of one piece, stacked like :func:`_forward_piece`'s inputs, from
    ``tensors = (dout, q, k, v, out)``, each ``(nb, H, n*l, X)``, and ``lse (nb, H, n*lq)``."""
    dout, q, k, v, out = tensors
    stacked = (_stacked(dout, p.lq), _stacked(q, p.lq), _stacked(k, p.lk), _stacked(v, p.lk), _stacked(out, p.lq))
    row_lse = lse if p.count == 1 else lse.reshape(-1, 1, p.lq)  # (nb, H, lq) or (nb*H*n, 1, lq), like q
    return backward(*stacked, row_lse, 0.0, causal, scale=scale)
