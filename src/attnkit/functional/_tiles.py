"""Tile plans and per-tile values for the tiled backend (:mod:`attnkit.functional.tiled`).

A *plan* says, for each block of queries, which contiguous ranges of keys
(*chunks*) to multiply, and inside each chunk which key ranges (*runs*) hold
tiles that are not FULL and so need the mask. It is built once per call from
the mask's tile classes (in integers for position masks, :mod:`._tile_runs`; else
:meth:`attnkit.masks.Mask.classify_tiles`) and reused by the backward pass:

* EMPTY tiles are skipped: a chunk covers only a run of non-empty key blocks
  (short gaps of one block are merged so a span stays one matmul);
* FULL tiles get no masking op;
* PARTIAL tiles get ``mask.evaluate`` on exactly their indices.

Score tiles live in the *folded* layout: ``(nb*Hkv, tq*G, w)`` — batch and key
heads flattened for ``bmm``, and the ``G`` query heads that share a key head
folded into the query axis next to their position (row ``i*G + g``). Mask, bias
and dropout tiles are produced as ``(nb, Hkv, tq, G, w)`` (or broadcastable),
which is a view of the same memory.

Dropout uses a counter-based stream: the keep bit of ``(b, h, i, j)`` is a hash
of ``(seed, b, h, i, j)``, so the forward and backward passes (and any block
sizes) regenerate exactly the same mask without storing it.

Shape legend: B batch, nb batch rows of a group, H query heads, Hkv key/value
heads, G = H // Hkv, Lq/Lk lengths, tq/w query/key extent of a tile, nq/nk
number of query/key blocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .._tensors import as_4d, compute_dtype
from ..masks import EMPTY, FULL, Mask
from ._tile_runs import Runs, complement, tile_runs
from .bias import Alibi, Bias, TensorBias

__all__ = ["Chunk", "Block", "Band", "Group", "TilePlan", "make_plan", "bands", "mask_tile", "bias_tile",
           "dropout_keep_tile", "fold", "unfold", "flat_kv", "block_rows", "store_rows", "zero_uncovered",
           "indices_of", "bias_rows"]  # fmt: skip

CHUNK_OVERHEAD = 65536  # one chunk's Python-level ops in score elements: measured 170 us fwd / 390 us fwd+bwd ~ 40-80K
MERGE_GAP = 1  # EMPTY key blocks between two non-empty runs that are computed (masked) rather than split


@dataclass(frozen=True)
class Chunk:
    """Keys ``[k0, k1)`` multiplied in one ``bmm``; ``runs`` are the sub-ranges needing the mask."""

    k0: int  # first key
    k1: int  # one past the last key
    runs: tuple[tuple[int, int], ...]  # absolute key ranges [a, b) whose tiles are not FULL


@dataclass(frozen=True)
class Block:
    """Queries ``[q0, q1)`` and the key chunks they attend to (never empty)."""

    q0: int  # first query
    q1: int  # one past the last query
    chunks: tuple[Chunk, ...]  # in increasing key order


@dataclass(frozen=True)
class Group:
    """Batch rows ``[b0, b1)`` sharing one list of blocks (all rows, or one row of a per-row mask)."""

    b0: int  # first batch row
    b1: int  # one past the last batch row
    blocks: tuple[Block, ...]  # query blocks with at least one non-empty tile


@dataclass(frozen=True)
class Band:
    """``m`` consecutive query blocks of ``tq`` rows whose one key chunk sits at the same offset.

    Block ``i`` holds queries ``[q0 + i*tq, q0 + (i+1)*tq)`` and attends keys
    ``[k0 + i*tq, k0 + i*tq + w)``; the keys needing the mask (``runs``, relative to the
    chunk start) are the same for every block. Sliding-window and causal-at-long-range
    plans are made of such blocks: with a shift-invariant mask one mask tile serves the
    whole band, and the key windows are overlapping views of K (``Tensor.unfold``), so a
    band costs a few batched matmuls instead of a dozen ops per block.
    """

    q0: int  # first query
    tq: int  # queries per block
    m: int  # blocks
    k0: int  # first key of the first block's chunk
    w: int  # keys per chunk
    runs: tuple[tuple[int, int], ...]  # key ranges [a, b) relative to each chunk start that need the mask

    @property
    def q1(self) -> int:
        return self.q0 + self.m * self.tq


@dataclass(frozen=True)
class TilePlan:
    """Everything the kernels need to know about the mask's sparsity, for one call."""

    groups: tuple[Group, ...]
    max_tile: int  # largest score tile (elements) of any chunk: the size of the scratch buffers
    block_q: int | None = None  # queries per block (the last block of a group may be shorter)

    def score_elements(self, H: int) -> int:
        """Score entries actually computed (for tests and benchmarks: the work after skipping)."""
        return sum(
            (g.b1 - g.b0) * H * (blk.q1 - blk.q0) * (c.k1 - c.k0)
            for g in self.groups
            for blk in g.blocks
            for c in blk.chunks
        )


# ---------------------------------------------------------------------- planning
def make_plan(
    mask: Mask | None, *, B: int, H: int, Lq: int, Lk: int, block_q: int, block_k: int, budget: int, device
) -> TilePlan:
    """Build the plan; per-batch masks get one group per batch row when that is cheaper.

    Position masks (none, causal, sliding window, prefix-LM and their combinations) are
    planned from integers alone (:func:`._tile_runs.tile_runs`): no tensor is read back,
    so the plan is the same inside ``torch.compile`` and ``torch.export``. Other masks
    classify their tiles as a tensor that is read back here; a traced call cannot read
    tensor values, so there it plans every tile as PARTIAL: nothing is skipped, the mask
    is evaluated on every tile, and the result is the same.
    """
    runs = tile_runs(mask, Lq, Lk, block_q, block_k)
    nk = math.ceil(Lk / block_k)
    if runs is None and torch.compiler.is_compiling():
        every: Runs = ((0, nk),) if nk else ()
        runs = tuple((every, ()) for _ in range(math.ceil(Lq / block_q)))  # every tile nonempty, none FULL
    if runs is not None:
        nonempty, masked = [r[0] for r in runs], [complement(r[1], nk) for r in runs]
        return _finish((_group(nonempty, masked, 0, B, H, Lq, Lk, block_q, block_k, budget),), H, block_q)
    assert mask is not None  # tile_runs plans the call without a mask
    codes = _tile_codes(mask, Lq, Lk, block_q, block_k, device)  # (Bm, Hm, nq, nk) on the CPU
    union = (_group_of_codes(codes.flatten(0, 1), 0, B, H, Lq, Lk, block_q, block_k, budget),)
    if codes.shape[0] == 1:
        return _finish(union, H, block_q)
    per_row = tuple(_group_of_codes(codes[b], b, b + 1, H, Lq, Lk, block_q, block_k, budget) for b in range(B))
    cheaper = _cost(per_row, H) < _cost(union, H)
    return _finish(per_row if cheaper else union, H, block_q)


def _tile_codes(mask: Mask, Lq: int, Lk: int, block_q: int, block_k: int, device) -> Tensor:
    codes = mask.classify_tiles(Lq, Lk, block_q, block_k, device=device)
    return as_4d(codes).cpu()  # -> (Bm, Hm, nq, nk)


def _group_of_codes(codes: Tensor, b0: int, b1: int, H: int, Lq, Lk, block_q, block_k, budget) -> Group:
    """One group's blocks from its tile codes ``(M, nq, nk)`` (M = the mask rows it covers)."""
    nonempty = (codes != EMPTY).any(dim=0)  # (nq, nk) some row of the group may attend
    masked = (codes != FULL).any(dim=0)  # (nq, nk) some row of the group needs the mask
    return _group(_runs(nonempty), _runs(masked), b0, b1, H, Lq, Lk, block_q, block_k, budget)


def _group(nonempty: Sequence[Runs], masked: Sequence[Runs], b0: int, b1: int, H: int, Lq, Lk, block_q, block_k,
           budget) -> Group:  # fmt: skip
    """One group's blocks from, per query block, the runs of key blocks to compute and those to mask."""
    rows_per_block = max(1, (b1 - b0) * H * block_q)  # score rows of one query block (an empty batch: 1)
    max_blocks = max(1, budget // (rows_per_block * block_k))  # key blocks per chunk within the budget
    blocks = []
    for i, (spans, need) in enumerate(zip(nonempty, masked, strict=True)):
        chunks = [
            Chunk(c0 * block_k, min(Lk, c1 * block_k), _clip(need, c0, c1, block_k, Lk))
            for s0, s1 in _merge(spans)
            for c0, c1 in _split(s0, s1, max_blocks)
        ]
        if chunks:
            blocks.append(Block(i * block_q, min(Lq, (i + 1) * block_q), tuple(chunks)))
    return Group(b0, b1, tuple(blocks))


def _runs(flags: Tensor) -> list[Runs]:
    """Maximal runs of True in each row of ``flags (n, m)``, as ``[start, end)`` pairs."""
    padded = torch.nn.functional.pad(flags.to(torch.int8), (1, 1))  # (n, m + 2)
    step = padded[:, 1:] - padded[:, :-1]  # (n, m + 1): +1 where a run starts, -1 just after it ends
    runs: list[list[tuple[int, int]]] = [[] for _ in range(flags.shape[0])]
    for (row, start), (_, end) in zip((step == 1).nonzero().tolist(), (step == -1).nonzero().tolist(), strict=True):
        runs[row].append((start, end))
    return [tuple(r) for r in runs]


def _merge(spans: Runs) -> list[tuple[int, int]]:
    """Join runs separated by at most MERGE_GAP blocks (the gap is masked, not skipped)."""
    merged: list[tuple[int, int]] = []
    for s0, s1 in spans:
        if merged and s0 - merged[-1][1] <= MERGE_GAP:
            merged[-1] = (merged[-1][0], s1)
        else:
            merged.append((s0, s1))
    return merged


def _split(s0: int, s1: int, max_blocks: int) -> list[tuple[int, int]]:
    """Cut blocks ``[s0, s1)`` into near-equal pieces of at most ``max_blocks``."""
    pieces = math.ceil((s1 - s0) / max_blocks)
    bounds = [s0 + round(p * (s1 - s0) / pieces) for p in range(pieces + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _clip(need: Runs, c0: int, c1: int, block_k: int, Lk: int) -> tuple[tuple[int, int], ...]:
    """The parts of the masked runs inside chunk ``[c0, c1)``, converted from blocks to keys."""
    return tuple(
        (max(a, c0) * block_k, min(Lk, min(b, c1) * block_k)) for a, b in need if a < c1 and b > c0
    )


def _cost(groups: tuple[Group, ...], H: int) -> int:
    chunks = sum(len(blk.chunks) for g in groups for blk in g.blocks)
    return TilePlan(groups, 0).score_elements(H) + CHUNK_OVERHEAD * chunks


def _finish(groups: tuple[Group, ...], H: int, block_q: int) -> TilePlan:
    largest = max(  # a list, not a generator with default=: torch.compile traces this planning code
        [0] + [(g.b1 - g.b0) * H * (blk.q1 - blk.q0) * (c.k1 - c.k0) for g in groups for blk in g.blocks
               for c in blk.chunks]
    )  # fmt: skip
    return TilePlan(groups, largest, block_q)


def bands(blocks: tuple[Block, ...], tq: int, max_rows: int, min_blocks: int = 2) -> list[Block | Band]:
    """The blocks in order, with runs of equally laid-out ones grouped into :class:`Band` s.

    A band holds between ``min_blocks`` and ``max_rows // tq`` blocks: full-size blocks
    (``tq`` queries) with a single chunk at the same offset, width and masked runs.

    Example:
        >>> blk = lambda q0: Block(q0, q0 + 4, (Chunk(max(0, q0 - 4), q0 + 4, ((q0, q0 + 4),)),))
        >>> [type(b).__name__ for b in bands(tuple(blk(q) for q in range(0, 20, 4)), 4, 100)]
        ['Block', 'Band']
    """
    out: list[Block | Band] = []
    run: list[Block] = []

    def layout(blk: Block) -> tuple:
        c = blk.chunks[0]
        return c.k0 - blk.q0, c.k1 - c.k0, tuple((a - c.k0, b - c.k0) for a, b in c.runs)

    def flush() -> None:
        for i in range(0, len(run), max(1, max_rows // tq)):
            piece = run[i : i + max(1, max_rows // tq)]
            if len(piece) < max(2, min_blocks):
                out.extend(piece)
                continue
            c = piece[0].chunks[0]
            out.append(Band(piece[0].q0, tq, len(piece), c.k0, c.k1 - c.k0, layout(piece[0])[2]))
        run.clear()

    for blk in blocks:
        fits = len(blk.chunks) == 1 and blk.q1 - blk.q0 == tq
        if not (fits and run and blk.q0 == run[-1].q1 and layout(blk) == layout(run[-1])):
            flush()
        if fits:
            run.append(blk)
        else:
            out.append(blk)
    flush()
    return out


# ---------------------------------------------------------------------- layout
def fold(t: Tensor, Hkv: int) -> Tensor:
    """Fold query heads into rows: ``(B, H, L, X) -> (B*Hkv, L*G, X)``, row ``i*G + g``."""
    B, H, L, X = t.shape
    t = t.unflatten(1, (Hkv, H // Hkv)).transpose(2, 3)  # (B, Hkv, G, L, X) -> (B, Hkv, L, G, X)
    return t.reshape(B * Hkv, L * (H // Hkv), X)  # -> (B*Hkv, L*G, X)


def unfold(t: Tensor, B: int, Hkv: int, L: int) -> Tensor:
    """Inverse of :func:`fold`: ``(B*Hkv, L*G, X) -> (B, H, L, X)``."""
    X = t.shape[-1]
    t = t.view(B, Hkv, L, -1, X).transpose(2, 3)  # (B, Hkv, L, G, X) -> (B, Hkv, G, L, X)
    return t.reshape(B, -1, L, X)  # -> (B, H, L, X)


def flat_kv(t: Tensor, Lk: int) -> Tensor:
    """Keys or values ``(B, Hkv, Lk, X) -> (N, Lk, X)`` in the compute dtype (a view when possible)."""
    return t.to(compute_dtype(t.dtype)).reshape(-1, Lk, t.shape[3])  # (B, Hkv, Lk, X) -> (N, Lk, X)


def block_rows(t: Tensor, grp: Group, blk: Block, Hkv: int) -> Tensor:
    """One query block of ``t (B, H, Lq, X)`` folded to ``(nb*Hkv, tq*G, X)`` in the compute dtype (may be a view)."""
    block = t[grp.b0 : grp.b1, :, blk.q0 : blk.q1]  # (nb, H, tq, X)
    return fold(block.to(compute_dtype(t.dtype)), Hkv)  # -> (nb*Hkv, tq*G, X)


def store_rows(dst: Tensor, src: Tensor, grp: Group, blk: Block, Hkv: int) -> None:
    """Write a folded block ``src (nb*Hkv, tq*G, X)`` into ``dst (B, H, Lq, X)``, converting the dtype."""
    dst[grp.b0 : grp.b1, :, blk.q0 : blk.q1] = unfold(src, grp.b1 - grp.b0, Hkv, blk.q1 - blk.q0)


def zero_uncovered(t: Tensor, grp: Group, Lq: int) -> None:
    """Zero the query rows of ``t (B, H, Lq, X)`` that no block of the group computes (nothing allowed)."""
    edges = [0] + [e for blk in grp.blocks for e in (blk.q0, blk.q1)] + [Lq]
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if a < b:
            t[grp.b0 : grp.b1, :, a:b] = 0


# ---------------------------------------------------------------------- tile values
def fold_heads(t: Tensor, b0: int, b1: int, Hkv: int, G: int) -> Tensor:
    """A ``(Bm, Hm, tq|1, w|1)`` tile for batch rows ``[b0, b1)`` as ``(nb|1, Hkv|1, tq|1, G|1, w|1)``."""
    t = as_4d(t)  # (Bm, Hm, tq|1, w|1)
    if t.shape[0] != 1:
        t = t[b0:b1]  # (nb, Hm, tq|1, w|1)
    if t.shape[1] == 1:
        return t[:, :, :, None, :]  # (Bm, 1, tq, 1, w)
    return t.unflatten(1, (Hkv, G)).transpose(2, 3)  # (Bm, H, tq, w) -> (Bm, Hkv, G, tq, w) -> (Bm, Hkv, tq, G, w)


def _indices(q0: int, q1: int, k0: int, k1: int, device) -> tuple[Tensor, Tensor]:
    q_idx = torch.arange(q0, q1, device=device)[:, None]  # (tq, 1)
    k_idx = torch.arange(k0, k1, device=device)[None, :]  # (1, w)
    return q_idx, k_idx


def mask_tile(mask: Mask, q0, q1, k0, k1, Lq, Lk, b0, b1, Hkv, G, device) -> Tensor:
    """``True`` = may attend, for queries ``[q0, q1)`` and keys ``[k0, k1)``, folded."""
    q_idx, k_idx = _indices(q0, q1, k0, k1, device)
    return fold_heads(mask.evaluate(q_idx, k_idx, Lq, Lk), b0, b1, Hkv, G)  # (nb|1, Hkv|1, tq|1, G|1, w|1)


def bias_tile(bias: Bias, q0, q1, k0, k1, Lq, Lk, b0, b1, Hkv, G, device) -> Tensor:
    """Bias values for queries ``[q0, q1)`` and keys ``[k0, k1)``, folded; a tensor bias is sliced, not gathered."""
    if isinstance(bias, TensorBias):
        t = bias.values  # (Bm, Hm, Lq|1, Lk|1)
        t = t if t.shape[2] == 1 else t[:, :, q0:q1]  # (Bm, Hm, tq|1, Lk|1)
        t = t if t.shape[3] == 1 else t[:, :, :, k0:k1]  # (Bm, Hm, tq|1, w|1)
    else:
        t = bias.evaluate(*_indices(q0, q1, k0, k1, device), Lq, Lk)  # (Bm, Hm, tq, w)
    return fold_heads(t, b0, b1, Hkv, G)  # (nb|1, Hkv|1, tq|1, G|1, w|1)


# ---------------------------------------------------------------------- dropout stream
_M32 = 0xFFFFFFFF


def _mix32(x):
    """A 32-bit integer hash (lowbias32) on Python ints or int64 tensors holding values in [0, 2^32)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32  # int64 products wrap; the low 32 bits are exact
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def dropout_keep_tile(seed: int, p: float, q0, q1, k0, k1, b0, b1, Hkv, G, device) -> Tensor:
    """Keep bits ``(nb, Hkv, tq, G, w)`` of the dropout stream: a pure function of ``(seed, b, h, i, j)``.

    Query head ``h = hkv * G + g``; keys ``j`` and queries ``i`` are absolute positions,
    so any tiling of the same call gives the same bits.
    """
    H = Hkv * G
    base = _mix32((seed & _M32) ^ _mix32((seed >> 32) & _M32))  # Python int
    b = torch.arange(b0, b1, device=device)[:, None, None, None, None]  # (nb, 1, 1, 1, 1)
    h = (torch.arange(Hkv, device=device)[:, None] * G + torch.arange(G, device=device))[None, :, None, :, None]
    row = _mix32((b * H + h + base) & _M32)  # (nb, Hkv, 1, G, 1) one stream per (batch, head)
    row = _mix32(row ^ _mix32(torch.arange(q0, q1, device=device))[:, None, None])  # (nb, Hkv, tq, G, 1)
    col = _mix32(torch.arange(k0, k1, device=device) * 0x9E3779B9 & _M32)  # (w,)
    x = _mix32((row + col) & _M32)  # (nb, Hkv, tq, G, w)
    return x >= min(_M32, round(p * 2.0**32))  # P(keep) = 1 - p


# ---------------------------------------------------------------------- attention_weights selections
def indices_of(name: str, sel, n: int) -> Tensor:
    """Normalize a head/row selection to a LongTensor of indices in ``[0, n)``."""
    if sel is None:
        return torch.arange(n)
    if isinstance(sel, slice):
        return torch.arange(n)[sel]
    idx = torch.as_tensor(sel).reshape(-1)
    if idx.dtype.is_floating_point or idx.dtype == torch.bool:
        raise TypeError(f"attention_weights(): {name} must be integer indices, a slice or None, got dtype {idx.dtype}")
    if ((idx < -n) | (idx >= n)).any():
        raise ValueError(f"attention_weights(): {name} must be in [-{n}, {n}), got {idx.tolist()}")
    return idx.long() % n


def bias_rows(bias: Bias, h: int, row_idx: Tensor, Lq: int, Lk: int) -> Tensor:
    """Bias of head ``h`` for the chosen rows, ``(Bm, nr|1, Lk|1)``, without evaluating the other heads."""
    if isinstance(bias, Alibi):
        bias = Alibi(bias.slopes[h : h + 1], symmetric=bias.symmetric)
    if isinstance(bias, TensorBias):
        t = bias.values[:, min(h, bias.values.shape[1] - 1)]  # (Bm, Lq|1, Lk|1)
        return t if t.shape[1] == 1 else t[:, row_idx.to(t.device)]  # (Bm, nr|1, Lk|1)
    t = as_4d(bias.evaluate(row_idx[:, None], torch.arange(Lk, device=row_idx.device)[None, :], Lq, Lk))
    return t[:, min(h, t.shape[1] - 1)]  # (Bm, nr, Lk)
