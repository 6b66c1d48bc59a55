"""From transformers' mask functions to :mod:`attnkit.masks` objects.

transformers describes a mask as a *mask function* ``f(batch, head, q_pos, kv_pos) -> bool``
composed from a few factories of ``transformers.masking_utils`` (``causal_mask_function``,
``sliding_window_overlay(w)``, ``and_masks(...)``, ``packed_sequence_mask_function(ids)``, ...),
plus a 2D padding mask and the offsets of the query and key positions (a cache). Its own
backends evaluate that function on every (query, key) pair: a dense ``(B, 1, Lq, Lk)`` mask
whose structure is lost. Here the composition is read back — each factory keeps its
arguments in its closure — and rebuilt from attnkit masks, which classify tiles in closed
form, so the tiled backend skips the empty ones. A function that is not recognized is
evaluated by transformers' own ``sdpa_mask`` and wrapped with :func:`attnkit.masks.dense`:
exact, but no tile is known to be empty.

Positions: query ``i`` has absolute position ``q_offset + i`` and key ``j`` has
``kv_offset + j``, so query ``i`` sits at key index ``i + (q_offset - kv_offset)``. With no
cache or a dynamic cache that is ``i + Lk - Lq`` (attnkit's bottom-right alignment); a static
cache (``Lk`` = its size) needs :func:`attnkit.masks.aligned`.

Shape legend: B batch, Lq queries, Lk keys.

Example:
    >>> from transformers import masking_utils as hf
    >>> structured_mask(1, 4, 8, 0, 0, hf.sliding_window_causal_mask_function(2), None)
    aligned(sliding_window(2, causal=True), offset=0)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import transformers.masking_utils as hf
from torch import Tensor

from .. import masks
from ..masks import Mask

__all__ = ["structured_mask"]

logger = logging.getLogger("attnkit.integrations")


class _Unrecognized(Exception):
    """A mask function this module cannot read back."""


@dataclass(frozen=True)
class _Frame:
    """Where the queries and keys of one call sit."""

    Lq: int  # queries
    Lk: int  # keys
    offset: int  # key index of query 0: q_offset - kv_offset
    kv_offset: int  # absolute position of key 0


def structured_mask(batch_size: int, q_length: int, kv_length: int, q_offset, kv_offset, mask_function: Callable,
                    attention_mask: Tensor | None, *, device=None, use_vmap: bool = False) -> Mask | None:  # fmt: skip
    """The attnkit mask equal to ``transformers.masking_utils.sdpa_mask`` for these arguments; None = every pair.

    ``attention_mask`` is the 2D padding mask ``(B, past + Lq)`` (``True`` = real token) or None.
    """
    frame = _Frame(q_length, kv_length, int(q_offset) - int(kv_offset), int(kv_offset))  # a static cache's offset
    try:
        mask = _translate(mask_function, frame)
    except _Unrecognized as unknown:
        logger.debug("attnkit: mask function %s is not recognized; using a dense mask (no tile skipped)", unknown)
        dense = hf.sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset,
                             kv_offset=kv_offset, mask_function=mask_function, attention_mask=attention_mask,
                             allow_is_causal_skip=False, allow_is_bidirectional_skip=False, use_vmap=use_vmap,
                             device=device if device is not None else "cpu")  # fmt: skip
        return None if dense is None else masks.dense(dense)  # (B, 1, Lq, Lk) bool
    if attention_mask is not None:
        mask = _both(mask, _keys(attention_mask, frame))
    return mask


# ---------------------------------------------------------------------- reading a composition back
def _translate(fn: Callable, frame: _Frame) -> Mask | None:
    """The attnkit mask of one mask function (None = every pair may attend)."""
    if fn is hf.causal_mask_function:  # kv_pos <= q_pos
        if frame.offset >= frame.Lk - 1:  # every query sits at or past the last key (decoding): every pair
            return None
        return _aligned(masks.causal(), frame)
    if fn is hf.bidirectional_mask_function:  # q_pos >= 0: every pair
        return None
    factory, cells = _factory(fn), _closure(fn)
    if factory == "and_masks":
        return _and(cells["mask_functions"], frame)
    if factory == "or_masks":
        parts = [_translate(f, frame) for f in cells["mask_functions"]]
        return None if any(p is None for p in parts) else _fold(parts, lambda a, b: a | b)
    if factory == "sliding_window_overlay":  # kv_pos > q_pos - w, i.e. not (k <= i + offset - w)
        return masks.aligned(~masks.causal(), frame.offset - int(cells["sliding_window"]))
    if factory == "sliding_window_bidirectional_overlay":  # |q_pos - kv_pos| <= w
        return _aligned(masks.sliding_window(int(cells["sliding_window"]) + 1, causal=False), frame)
    if factory == "padding_mask_function":
        return _keys(cells["padding_mask"], frame)
    if factory == "packed_sequence_mask_function":
        return _documents(cells["packed_sequence_mask"], frame)
    raise _Unrecognized(getattr(fn, "__qualname__", repr(fn)))


def _and(functions: Sequence[Callable], frame: _Frame) -> Mask | None:
    """``and_masks(*functions)``; Mistral's ``sliding_window_causal_mask_function`` becomes one sliding window."""
    packed = [_closure(f)["packed_sequence_mask"] for f in functions if _factory(f) == "packed_sequence_mask_function"]
    parts = [_unmapped(f, packed, frame) if _factory(f) == "remap_positions_for_packed_sequence" else f
             for f in functions]  # fmt: skip
    windows = [f for f in parts if _factory(f) == "sliding_window_overlay"]
    result = None
    if len(windows) == 1 and any(f is hf.causal_mask_function for f in parts):
        result = _aligned(masks.sliding_window(int(_closure(windows[0])["sliding_window"])), frame)
        parts = [f for f in parts if f is not windows[0] and f is not hf.causal_mask_function]
    return _fold([result] + [_translate(f, frame) for f in parts], _both)


def _unmapped(fn: Callable, packed: list[Tensor], frame: _Frame) -> Callable:
    """``remap_positions_for_packed_sequence(f, position_ids)`` and-ed with its documents: just ``f``.

    transformers starts a new document wherever ``position_ids`` does not grow by one, so inside
    a document two positions differ exactly as their indices do, and every mask made of
    position differences (causal, sliding window) gives the same values on indices.
    """
    cells = _closure(fn)
    positions = cells["position_ids"]  # (B, L)
    documents = hf.find_packed_sequence_indices(positions)
    if not (frame.offset == 0 and frame.Lq == frame.Lk == positions.shape[1] and documents is not None
            and any(torch.equal(documents, p) for p in packed)):  # fmt: skip
        raise _Unrecognized("remap_positions_for_packed_sequence without its documents")
    return cells["mask_function"]


def _keys(padding: Tensor, frame: _Frame) -> Mask | None:
    """The keys ``[kv_offset, kv_offset + Lk)`` of a 2D padding mask (padded with False, as transformers does)."""
    padded = hf.prepare_padding_mask(padding, frame.Lk, frame.kv_offset)  # (B, >= kv_offset + Lk)
    assert padded is not None  # internal invariant: a tensor in, a tensor out
    local = padded[:, frame.kv_offset : frame.kv_offset + frame.Lk].bool()  # (B, Lk)
    return None if bool(local.all()) else masks.key_mask(local)


def _documents(ids: Tensor, frame: _Frame) -> Mask:
    """``packed_sequence_mask_function(ids)``: queries take the ids of their own positions."""
    if frame.offset != frame.Lk - frame.Lq or ids.shape[1] < frame.kv_offset + frame.Lk:
        raise _Unrecognized("packed sequences with a cache")
    return masks.document(ids[:, frame.kv_offset : frame.kv_offset + frame.Lk])  # (B, Lk)


# ---------------------------------------------------------------------- helpers
def _aligned(mask: Mask, frame: _Frame) -> Mask:
    """``mask`` with query ``i`` at key index ``i + frame.offset`` (plain when that is bottom-right)."""
    return mask if frame.offset == frame.Lk - frame.Lq else masks.aligned(mask, frame.offset)


def _both(a: Mask | None, b: Mask | None) -> Mask | None:
    return a if b is None else b if a is None else a & b


def _fold(parts: list, combine: Callable) -> Mask | None:
    result = parts[0]
    for part in parts[1:]:
        result = combine(result, part)
    return result


def _factory(fn: Callable) -> str:
    """The transformers factory that made the closure ``fn`` (``"and_masks"``), or ``""``."""
    name = getattr(fn, "__qualname__", "")
    if getattr(fn, "__module__", None) != hf.__name__ or ".<locals>." not in name:
        return ""
    return name.split(".<locals>.")[0]


def _closure(fn: Callable) -> dict[str, Any]:
    """The free variables of a closure by name (what its factory was called with)."""
    code, cells = getattr(fn, "__code__", None), getattr(fn, "__closure__", None) or ()
    return {} if code is None else dict(zip(code.co_freevars, (c.cell_contents for c in cells), strict=True))
