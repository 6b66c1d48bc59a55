"""Tile classification of position masks in plain Python integers (no tensors).

The tiled backend plans its work from which (query block, key block) tiles of a mask
are EMPTY, FULL or PARTIAL. :meth:`attnkit.masks.Mask.classify_tiles` answers with a
tensor, which a plan then reads back with ``nonzero().tolist()``: fine in eager mode,
but a data-dependent step that ``torch.compile`` cannot put in a graph and ``torch.export``
cannot trace. The masks whose rule depends only on positions (``causal``,
``sliding_window``, ``prefix_lm``, and ``&``, ``|``, ``~`` of them) have a closed form:
for query block ``i`` the keys a row may see form one interval ``[lo(row), hi(row)]``
whose ends grow with the row, so the tiles that some row may see, and those that every
row sees in full, are one run of key blocks each. :func:`tile_runs` returns, per query
block, those runs as ``[start, end)`` pairs of key-block indices; it gives exactly the
codes ``classify_tiles`` gives (tests/functional/test_tile_runs.py checks that), in
``O(number of query blocks)`` Python steps, and it is a pure function of integers, so a
compiled graph needs no guard on tensor values and the same plan serves every call.

Masks built from tensor values (``padding``, ``document``, ``dense``) and user subclasses
return None: their tiles follow from data, not from integers.

Example:
    >>> from attnkit import masks
    >>> blocks = tile_runs(masks.causal(), Lq=4, Lk=4, block_q=2, block_k=2)  # (nonempty, full) per query block
    >>> blocks[0]  # queries 0-1: key block 0 is seen, but only in part (the diagonal)
    (((0, 1),), ())
    >>> blocks[1]  # queries 2-3: key blocks 0-1 are seen, block 0 in full
    (((0, 2),), ((0, 1),))
"""

from __future__ import annotations

import math

from .. import masks as _masks
from ..masks import Mask

__all__ = ["Runs", "tile_runs", "kept_fraction", "complement", "position_key"]

Runs = tuple[tuple[int, int], ...]  # sorted, disjoint, non-adjacent [start, end) ranges of key blocks
_FAR = 1 << 62  # stands for "no bound" on a key interval


def tile_runs(mask: Mask | None, Lq: int, Lk: int, block_q: int, block_k: int) -> tuple[tuple[Runs, Runs], ...] | None:
    """Per query block, ``(nonempty, full)`` runs of key blocks; None when the mask is not positional."""
    nq, nk = math.ceil(Lq / block_q), math.ceil(Lk / block_k)
    every: Runs = ((0, nk),) if nk else ()
    if mask is None:
        return tuple((every, every) for _ in range(nq))
    blocks = []
    for i in range(nq):
        rows = (i * block_q + Lk - Lq, min(Lq, (i + 1) * block_q) - 1 + Lk - Lq)  # aligned first/last query
        runs = _runs_of(mask, rows, Lk, block_k, nk)
        if runs is None:
            return None
        blocks.append(runs)
    return tuple(blocks)


def position_key(mask: Mask | None) -> tuple | None:
    """A hashable description of a position mask (what its tiles follow from); None for other masks.

    Two masks with the same key have the same tiles at every size, so a plan made for one
    serves the other (the tiled backend caches its plans by this key).

    Example:
        >>> from attnkit import masks
        >>> position_key(masks.causal() & masks.sliding_window(4))
        ('and', ('causal',), ('sliding', 4, True))
        >>> position_key(masks.padding(__import__("torch").tensor([3]))) is None
        True
    """
    if mask is None:
        return ("none",)
    kind = type(mask)
    if kind is _masks._And or kind is _masks._Or:
        a, b = position_key(mask.a), position_key(mask.b)  # type: ignore[attr-defined]
        return None if a is None or b is None else ("and" if kind is _masks._And else "or", a, b)
    if kind is _masks._Not:
        a = position_key(mask.a)  # type: ignore[attr-defined]
        return None if a is None else ("not", a)
    if kind is _masks._Causal:
        return ("causal",)
    if kind is _masks._SlidingWindow:
        return ("sliding", mask.window, mask.is_causal)  # type: ignore[attr-defined]
    if kind is _masks._KeyPrefix:
        return ("key_prefix", mask.n)  # type: ignore[attr-defined]
    if kind is _masks._PrefixLM:
        return ("prefix_lm", mask.prefix)  # type: ignore[attr-defined]
    return None


def kept_fraction(mask: Mask, Lq: int, Lk: int, block_q: int, block_k: int) -> float | None:
    """Fraction of tiles that are not EMPTY, from :func:`tile_runs`; None when the mask is not positional."""
    runs = tile_runs(mask, Lq, Lk, block_q, block_k)
    if runs is None:
        return None
    total = len(runs) * math.ceil(Lk / block_k)
    return sum(e - s for nonempty, _ in runs for s, e in nonempty) / total if total else 0.0


def _runs_of(mask: Mask, rows: tuple[int, int], Lk: int, block_k: int, nk: int) -> tuple[Runs, Runs] | None:
    """``(nonempty, full)`` of one query block whose aligned rows are ``rows`` (inclusive)."""
    kind = type(mask)
    if kind is _masks._And or kind is _masks._Or:
        a = _runs_of(mask.a, rows, Lk, block_k, nk)  # type: ignore[attr-defined]
        b = _runs_of(mask.b, rows, Lk, block_k, nk)  # type: ignore[attr-defined]
        if a is None or b is None:
            return None
        combine = _intersect if kind is _masks._And else _union  # as torch.minimum / torch.maximum of the codes
        return combine(a[0], b[0]), combine(a[1], b[1])
    if kind is _masks._Not:
        a = _runs_of(mask.a, rows, Lk, block_k, nk)  # type: ignore[attr-defined]
        return None if a is None else (complement(a[1], nk), complement(a[0], nk))  # FULL - code
    if kind is _masks._PrefixLM:  # causal | key prefix, as its classify_tiles says
        prefix = _masks._Or(_masks._Causal(), _masks._KeyPrefix(mask.prefix))  # type: ignore[attr-defined]
        return _runs_of(prefix, rows, Lk, block_k, nk)
    interval = _interval(mask)
    return None if interval is None else _interval_runs(interval, rows, Lk, block_k, nk)


def _interval(mask: Mask):
    """``row -> (lo, hi)``: the keys an aligned query row may see, for the position masks; else None."""
    kind = type(mask)
    if kind is _masks._Causal:
        return lambda i: (-_FAR, i)
    if kind is _masks._SlidingWindow:
        w = mask.window  # type: ignore[attr-defined]
        if mask.is_causal:  # type: ignore[attr-defined]
            return lambda i: (i - w + 1, i)
        return lambda i: (i - w + 1, i + w - 1)
    if kind is _masks._KeyPrefix:
        n = mask.n  # type: ignore[attr-defined]
        return lambda i: (0, n - 1)
    return None


def _interval_runs(interval, rows: tuple[int, int], Lk: int, block_k: int, nk: int) -> tuple[Runs, Runs]:
    """``(nonempty, full)`` of a mask whose row ``i`` sees keys ``interval(i) = (lo, hi)``, both growing with ``i``."""
    first, last = rows
    lo_first, hi_first = interval(first)
    lo_last, hi_last = interval(last)
    # some row may see key block j: [k0_j, k1_j] meets the union of the rows' intervals,
    # which is [lo(first), hi(last)] (the intervals grow by at most one per row, so they touch)
    seen_lo, seen_hi = max(0, lo_first), min(Lk - 1, hi_last)
    nonempty: Runs = ()
    if seen_lo <= seen_hi and nk:
        nonempty = ((seen_lo // block_k, seen_hi // block_k + 1),)
    # every row sees all of key block j: k0_j >= max lo = lo(last) and k1_j <= min hi = hi(first)
    start = -(-max(0, lo_last) // block_k)  # ceil: first block starting at or after lo(last)
    end = nk if hi_first >= Lk - 1 else max(0, (hi_first + 1) // block_k)  # blocks ending at or before hi(first)
    full: Runs = ((start, end),) if start < end else ()
    return nonempty, full


def _intersect(a: Runs, b: Runs) -> Runs:
    out = []
    for s0, e0 in a:
        for s1, e1 in b:
            s, e = max(s0, s1), min(e0, e1)
            if s < e:
                out.append((s, e))
    return _normalized(out)


def _union(a: Runs, b: Runs) -> Runs:
    merged, i, j = [], 0, 0
    while i < len(a) or j < len(b):  # merge by start (no sorted() of tuples: torch.compile traces this)
        if j == len(b) or (i < len(a) and a[i][0] <= b[j][0]):
            merged.append(a[i])
            i += 1
        else:
            merged.append(b[j])
            j += 1
    return _normalized(merged)


def complement(a: Runs, nk: int) -> Runs:
    """The key blocks of ``[0, nk)`` that are in no run of ``a``."""
    out, at = [], 0
    for s, e in a:
        if at < s:
            out.append((at, s))
        at = max(at, e)
    if at < nk:
        out.append((at, nk))
    return tuple(out)


def _normalized(runs: list[tuple[int, int]]) -> Runs:
    """Runs sorted by start with overlapping or adjacent ones joined (the form ``nonzero`` on a row of flags gives)."""
    out: list[tuple[int, int]] = []
    for s, e in runs:
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return tuple(out)
