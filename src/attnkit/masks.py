"""Masks: what may attend to what, with one convention.

``True`` means *may attend*, as in ``torch.nn.functional.scaled_dot_product_attention``
and FlexAttention. (``nn.MultiheadAttention``'s ``attn_mask`` and
``key_padding_mask`` use the opposite polarity; :mod:`attnkit.nn.attention`
converts at the boundary and says so.)

A mask is an object, not a tensor. It knows three things:

* ``mask.to_dense(Lq, Lk)`` — a bool tensor ``(Bm, Hm, Lq, Lk)`` with ``Bm`` in
  ``{1, B}`` and ``Hm`` in ``{1, H}`` (broadcasts against the scores);
* ``mask.evaluate(q_idx, k_idx, Lq, Lk)`` — the same values for any index tiles,
  the way FlexAttention's ``mask_mod`` works, so a tiled kernel can build just the
  tile it needs;
* ``mask.classify_tiles(Lq, Lk, block_q, block_k)`` — for each (query block, key
  block) tile: :data:`EMPTY` (nothing may attend: skip the matmul), :data:`FULL`
  (everything may attend: no masking op) or :data:`PARTIAL`.

Masks combine with ``&`` (both allow), ``|`` (either allows) and ``~`` (negation).

Alignment when ``Lq != Lk``: query ``i`` sits at key position ``i + (Lk - Lq)``
(bottom-right alignment), so the last query lines up with the last key, as in
KV-cache decoding. Every position-based mask here uses that rule.

Shape legend: B batch, H heads, Lq queries, Lk keys, nq/nk number of tiles.

Example:
    >>> from attnkit import masks
    >>> m = masks.causal() & masks.sliding_window(2)
    >>> m.to_dense(4, 4)[0, 0].int()
    tensor([[1, 0, 0, 0],
            [1, 1, 0, 0],
            [0, 1, 1, 0],
            [0, 0, 1, 1]], dtype=torch.int32)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import overload

import torch
from torch import Tensor

from ._tensors import as_4d

__all__ = [
    "EMPTY",
    "PARTIAL",
    "FULL",
    "Mask",
    "causal",
    "sliding_window",
    "padding",
    "document",
    "prefix_lm",
    "dense",
    "as_mask",
    "aligned",
    "key_mask",
]

EMPTY = 0  #: no (query, key) pair in the tile may attend
PARTIAL = 1  #: some pairs may attend
FULL = 2  #: every pair may attend

_CHUNK_ELEMENTS = 1 << 22  # generic tile classification evaluates at most this many pairs at once


def _aligned_queries(q_idx: Tensor, Lq: int, Lk: int) -> Tensor:
    """Query positions on the key axis: bottom-right alignment."""
    return q_idx + (Lk - Lq)


def _tile_bounds(L: int, block: int, device: torch.device | None) -> tuple[Tensor, Tensor]:
    """First and last (inclusive) index of each tile along an axis of length L."""
    starts = torch.arange(0, L, block, device=device)  # (n,)
    ends = torch.clamp(starts + block, max=L) - 1  # (n,)
    return starts, ends


def _status(full: Tensor, empty: Tensor) -> Tensor:
    """Combine two bool tensors into EMPTY / PARTIAL / FULL codes (int8)."""
    out = torch.full(torch.broadcast_shapes(full.shape, empty.shape), PARTIAL, dtype=torch.int8, device=full.device)
    out[full.expand_as(out)] = FULL
    out[empty.expand_as(out)] = EMPTY
    return out


def index_tile(t: Tensor, q_idx: Tensor, k_idx: Tensor) -> Tensor:
    """Rows ``q_idx (tq, 1)`` and columns ``k_idx (1, tk)`` of a ``(Bm, Hm, Lq|1, Lk|1)`` tensor.

    Size-1 (broadcast) axes are kept as they are. Shared by dense masks and tensor biases.
    """
    if t.shape[2] != 1:
        t = t[:, :, q_idx[:, 0], :]  # (Bm, Hm, tq, Lk|1)
    if t.shape[3] != 1:
        t = t[..., k_idx[0]]  # (Bm, Hm, tq|1, tk)
    return t


class Mask:
    """Base class: a rule saying which (query, key) pairs may attend.

    Subclasses implement :meth:`evaluate`; structured masks also override
    :meth:`classify_tiles` with a closed form so no ``Lq x Lk`` tensor is built.
    """

    def __new__(cls, *args, **kwargs):
        if cls is Mask:
            raise TypeError(
                "masks.Mask() is the abstract base class and has no rule; build a mask with masks.causal(), "
                "sliding_window(w), padding(lengths), document(ids), prefix_lm(n) or dense(bool_tensor), "
                "or subclass Mask and implement evaluate()"
            )
        return super().__new__(cls)

    #: True when the rule depends only on the offset between query and key (for fixed
    #: Lq, Lk): ``evaluate(i + t, j + t) == evaluate(i, j)``. Causal and sliding-window
    #: masks are; the tiled backend then reuses one mask tile along a band of blocks.
    shift_invariant: bool = False

    # ------------------------------------------------------------------ values
    def evaluate(self, q_idx: Tensor, k_idx: Tensor, Lq: int, Lk: int) -> Tensor:
        """Bool values for query indices ``q_idx (tq, 1)`` and key indices ``k_idx (1, tk)``.

        Returns a bool tensor broadcastable to ``(Bm, Hm, tq, tk)``.
        """
        raise NotImplementedError(
            f"{type(self).__name__}.evaluate(q_idx, k_idx, Lq, Lk) is not implemented: a Mask subclass must "
            "return the bool values (True = may attend) for query indices (tq, 1) and key indices (1, tk)"
        )

    def to_dense(self, Lq: int, Lk: int, *, device: torch.device | str | None = None) -> Tensor:
        """The whole mask as a bool tensor ``(Bm, Hm, Lq, Lk)``; ``True`` = may attend."""
        device = self._device(device)
        q_idx = torch.arange(Lq, device=device)[:, None]  # (Lq, 1)
        k_idx = torch.arange(Lk, device=device)[None, :]  # (1, Lk)
        values = as_4d(self.evaluate(q_idx, k_idx, Lq, Lk))  # (Bm, Hm, Lq or 1, Lk or 1)
        return values.expand(*values.shape[:2], Lq, Lk)  # (Bm, Hm, Lq, Lk)

    def batch_size(self) -> int | None:
        """Batch size the mask is tied to (padding/document/dense), or None if any."""
        return None

    def num_heads(self) -> int | None:
        """Head count the mask is tied to (a 4-D dense mask), or None if any."""
        return None

    def _device(self, device):
        return device

    # ------------------------------------------------------------------ tiles
    def classify_tiles(
        self, Lq: int, Lk: int, block_q: int, block_k: int, *, device: torch.device | str | None = None
    ) -> Tensor:
        """Tile codes ``(Bm, Hm, nq, nk)`` (int8): EMPTY, PARTIAL or FULL.

        The generic version evaluates the mask a few query blocks at a time, so its
        memory stays ``O(block_q * Lk)``; structured masks answer in closed form.
        """
        device = self._device(device)
        nq, nk = math.ceil(Lq / block_q), math.ceil(Lk / block_k)
        rows_per_chunk = max(1, _CHUNK_ELEMENTS // max(1, block_q * Lk))
        k_idx = torch.arange(Lk, device=device)[None, :]  # (1, Lk)
        pad_k = nk * block_k - Lk
        chunks = []
        for first in range(0, nq, rows_per_chunk):
            q_lo, q_hi = first * block_q, min(Lq, (first + rows_per_chunk) * block_q)
            q_idx = torch.arange(q_lo, q_hi, device=device)[:, None]  # (tq, 1)
            vals = as_4d(self.evaluate(q_idx, k_idx, Lq, Lk))  # (Bm, Hm, tq|1, Lk|1)
            vals = vals.expand(*vals.shape[:2], q_hi - q_lo, Lk)  # (Bm, Hm, tq, Lk)
            pad_q = math.ceil((q_hi - q_lo) / block_q) * block_q - (q_hi - q_lo)
            any_ = torch.nn.functional.pad(vals, (0, pad_k, 0, pad_q), value=False)
            all_ = torch.nn.functional.pad(vals, (0, pad_k, 0, pad_q), value=True)
            shape = (*vals.shape[:2], -1, block_q, nk, block_k)
            any_ = any_.reshape(shape).any(dim=5).any(dim=3)  # (Bm, Hm, nq_chunk, nk)
            all_ = all_.reshape(shape).all(dim=5).all(dim=3)  # (Bm, Hm, nq_chunk, nk)
            chunks.append(_status(all_, ~any_))
        return torch.cat(chunks, dim=2)  # (Bm, Hm, nq, nk)

    # ------------------------------------------------------------------ algebra
    # None stands for "no mask" (every pair may attend), as in attention(mask=None), so
    # ``m & None`` is ``m`` and ``m | None`` is None.
    def __and__(self, other: Mask | Tensor | None) -> Mask:
        other = as_mask(other, "mask & other: other")
        return self if other is None else _And(self, other)

    def __rand__(self, other: Mask | Tensor | None) -> Mask:
        other = as_mask(other, "other & mask: other")
        return self if other is None else _And(other, self)

    @overload
    def __or__(self, other: None) -> None: ...
    @overload
    def __or__(self, other: Mask | Tensor) -> Mask: ...
    def __or__(self, other: Mask | Tensor | None) -> Mask | None:
        other = as_mask(other, "mask | other: other")
        return None if other is None else _Or(self, other)

    @overload
    def __ror__(self, other: None) -> None: ...
    @overload
    def __ror__(self, other: Mask | Tensor) -> Mask: ...
    def __ror__(self, other: Mask | Tensor | None) -> Mask | None:
        other = as_mask(other, "other | mask: other")
        return None if other is None else _Or(other, self)

    def __invert__(self) -> Mask:
        return _Not(self)


# ---------------------------------------------------------------------- combinators
class _And(Mask):
    def __init__(self, a: Mask, b: Mask):
        self.a, self.b = a, b
        self.shift_invariant = a.shift_invariant and b.shift_invariant

    def evaluate(self, q_idx, k_idx, Lq, Lk):
        return self.a.evaluate(q_idx, k_idx, Lq, Lk) & self.b.evaluate(q_idx, k_idx, Lq, Lk)

    def classify_tiles(self, Lq, Lk, block_q, block_k, *, device=None):
        a = as_4d(self.a.classify_tiles(Lq, Lk, block_q, block_k, device=device))
        b = as_4d(self.b.classify_tiles(Lq, Lk, block_q, block_k, device=device))
        return torch.minimum(a, b)  # EMPTY if either is empty, FULL only if both are full

    def batch_size(self):
        return self.a.batch_size() or self.b.batch_size()

    def num_heads(self):
        return self.a.num_heads() or self.b.num_heads()

    def _device(self, device):
        return device if device is not None else (self.a._device(None) or self.b._device(None))

    def __repr__(self):
        return f"({self.a!r} & {self.b!r})"


class _Or(_And):
    def evaluate(self, q_idx, k_idx, Lq, Lk):
        return self.a.evaluate(q_idx, k_idx, Lq, Lk) | self.b.evaluate(q_idx, k_idx, Lq, Lk)

    def classify_tiles(self, Lq, Lk, block_q, block_k, *, device=None):
        a = as_4d(self.a.classify_tiles(Lq, Lk, block_q, block_k, device=device))
        b = as_4d(self.b.classify_tiles(Lq, Lk, block_q, block_k, device=device))
        return torch.maximum(a, b)  # FULL if either is full, EMPTY only if both are empty

    def __repr__(self):
        return f"({self.a!r} | {self.b!r})"


class _Not(Mask):
    def __init__(self, a: Mask):
        self.a = a
        self.shift_invariant = a.shift_invariant

    def evaluate(self, q_idx, k_idx, Lq, Lk):
        return ~self.a.evaluate(q_idx, k_idx, Lq, Lk)

    def classify_tiles(self, Lq, Lk, block_q, block_k, *, device=None):
        return FULL - self.a.classify_tiles(Lq, Lk, block_q, block_k, device=device)  # swaps EMPTY and FULL

    def batch_size(self):
        return self.a.batch_size()

    def num_heads(self):
        return self.a.num_heads()

    def _device(self, device):
        return self.a._device(device)

    def __repr__(self):
        return f"~{self.a!r}"


# ---------------------------------------------------------------------- position masks
class _Causal(Mask):
    shift_invariant = True

    def evaluate(self, q_idx, k_idx, Lq, Lk):
        return k_idx <= _aligned_queries(q_idx, Lq, Lk)  # (tq, tk)

    def classify_tiles(self, Lq, Lk, block_q, block_k, *, device=None):
        q0, q1 = _tile_bounds(Lq, block_q, device)
        k0, k1 = _tile_bounds(Lk, block_k, device)
        q0, q1 = _aligned_queries(q0, Lq, Lk)[:, None], _aligned_queries(q1, Lq, Lk)[:, None]  # (nq, 1)
        full = k1[None, :] <= q0  # the tile's last key is visible to its first query
        empty = k0[None, :] > q1  # the tile's first key is beyond its last query
        return as_4d(_status(full, empty))  # (1, 1, nq, nk)

    def __repr__(self):
        return "causal()"


class _SlidingWindow(Mask):
    shift_invariant = True

    def __init__(self, window: int, is_causal: bool):
        self.window, self.is_causal = window, is_causal

    def evaluate(self, q_idx, k_idx, Lq, Lk):
        i = _aligned_queries(q_idx, Lq, Lk)
        if self.is_causal:
            return (k_idx <= i) & (k_idx > i - self.window)  # i - w < j <= i
        return (k_idx - i).abs() < self.window  # |i - j| < w

    def classify_tiles(self, Lq, Lk, block_q, block_k, *, device=None):
        w = self.window
        q0, q1 = _tile_bounds(Lq, block_q, device)
        k0, k1 = _tile_bounds(Lk, block_k, device)
        q0, q1 = _aligned_queries(q0, Lq, Lk)[:, None], _aligned_queries(q1, Lq, Lk)[:, None]  # (nq, 1)
        k0, k1 = k0[None, :], k1[None, :]  # (1, nk)
        if self.is_causal:
            full = (k1 <= q0) & (k0 > q1 - w)
            empty = (k0 > q1) | (k1 <= q0 - w)
        else:
            full = torch.maximum(q1 - k0, k1 - q0) < w
            empty = (k0 >= q1 + w) | (k1 <= q0 - w)
        return as_4d(_status(full, empty))  # (1, 1, nq, nk)

    def __repr__(self):
        return f"sliding_window({self.window}, causal={self.is_causal})"


class _PrefixLM(Mask):
    def __init__(self, prefix: int):
        self.prefix = prefix

    def evaluate(self, q_idx, k_idx, Lq, Lk):
        return (k_idx < self.prefix) | (k_idx <= _aligned_queries(q_idx, Lq, Lk))

    def classify_tiles(self, Lq, Lk, block_q, block_k, *, device=None):
        return _Or(_Causal(), _KeyPrefix(self.prefix)).classify_tiles(Lq, Lk, block_q, block_k, device=device)

    def __repr__(self):
        return f"prefix_lm({self.prefix})"


class _KeyPrefix(Mask):
    """Keys j < n may be attended by every query (the bidirectional part of prefix-LM)."""

    def __init__(self, n: int):
        self.n = n

    def evaluate(self, q_idx, k_idx, Lq, Lk):
        return (k_idx < self.n) & (q_idx >= 0)  # (tq, tk)

    def classify_tiles(self, Lq, Lk, block_q, block_k, *, device=None):
        k0, k1 = _tile_bounds(Lk, block_k, device)
        full, empty = k1 < self.n, k0 >= self.n  # (nk,)
        nq = math.ceil(Lq / block_q)
        return as_4d(_status(full, empty)[None, :].expand(nq, -1))  # (1, 1, nq, nk)


# ---------------------------------------------------------------------- per-batch masks
class _Padding(Mask):
    def __init__(self, lengths: Tensor):
        self.lengths = lengths  # (B,) number of real keys per batch row
        # read once here, checked against Lk later; None inside torch.compile/export (a value a graph cannot read)
        self.longest = None if torch.compiler.is_compiling() else int(lengths.max()) if lengths.numel() else 0

    def _check(self, Lk: int) -> None:
        if self.longest is not None and self.longest > Lk:
            raise ValueError(
                f"masks.padding(): lengths count the real keys of each batch row, at most Lk={Lk}, got a length "
                f"of {self.longest} (lengths={self.lengths.tolist()}); pass the lengths of these keys"
            )

    def evaluate(self, q_idx, k_idx, Lq, Lk):
        self._check(Lk)
        lengths = self.lengths.to(k_idx.device)  # follow the inputs' device
        allowed = k_idx[None] < lengths[:, None, None]  # (B, 1, tk): the same for every query
        return allowed[:, None]  # (B, 1, 1, tk)

    def classify_tiles(self, Lq, Lk, block_q, block_k, *, device=None):
        self._check(Lk)
        device = self._device(device)
        k0, k1 = _tile_bounds(Lk, block_k, device)
        n = self.lengths.to(device)[:, None]  # (B, 1)
        codes = _status(k1[None, :] < n, k0[None, :] >= n)  # (B, nk)
        nq = math.ceil(Lq / block_q)
        return codes[:, None, None, :].expand(-1, 1, nq, -1)  # (B, 1, nq, nk)

    def batch_size(self):
        return self.lengths.shape[0]

    def _device(self, device):
        return self.lengths.device if device is None else device

    def __repr__(self):
        return f"padding(lengths={self.lengths.tolist()})"


class _Document(Mask):
    def __init__(self, ids: Tensor):
        self.ids = ids  # (B, Lk) document id of every key position

    def evaluate(self, q_idx, k_idx, Lq, Lk):
        self._check_lengths(Lq, Lk)
        ids = self.ids.to(k_idx.device)  # follow the inputs' device
        qi = ids[:, Lk - Lq :][:, q_idx[:, 0]]  # (B, tq): bottom-right alignment
        ki = ids[:, k_idx[0]]  # (B, tk)
        return (qi[:, :, None] == ki[:, None, :])[:, None]  # (B, 1, tq, tk)

    def classify_tiles(self, Lq, Lk, block_q, block_k, *, device=None):
        self._check_lengths(Lq, Lk)
        _, dense_ids = torch.unique(self.ids.to(self._device(device)), return_inverse=True)  # (B, Lk) renumbered 0..n-1
        n_docs = int(dense_ids.max()) + 1
        q_present, q_single = _tile_presence(dense_ids[:, Lk - Lq :], block_q, n_docs)  # (B, nq, n)
        k_present, k_single = _tile_presence(dense_ids, block_k, n_docs)  # (B, nk, n)
        shared = (q_present.float() @ k_present.float().transpose(1, 2)) > 0  # (B, nq, nk) a common document
        full = q_single[:, :, None] & k_single[:, None, :] & shared  # one document on both sides, the same one
        return _status(full, ~shared)[:, None]  # (B, 1, nq, nk)

    def _check_lengths(self, Lq: int, Lk: int) -> None:
        if self.ids.shape[1] != Lk:
            raise ValueError(
                f"masks.document(): ids cover {self.ids.shape[1]} positions but the keys have length {Lk}; "
                "pass one document id per key position"
            )
        if Lq > Lk:
            raise ValueError(
                f"masks.document(): queries take the document ids of the last Lq key positions, so Lq must be "
                f"<= Lk, got Lq={Lq}, Lk={Lk}; use masks.dense(...) to give queries their own documents"
            )

    def batch_size(self):
        return self.ids.shape[0]

    def _device(self, device):
        return self.ids.device if device is None else device

    def __repr__(self):
        return f"document(ids of shape {tuple(self.ids.shape)})"


def _tile_presence(ids: Tensor, block: int, n_docs: int) -> tuple[Tensor, Tensor]:
    """For each tile: which documents occur in it (B, n, n_docs) and whether only one does (B, n)."""
    B, L = ids.shape
    n = math.ceil(L / block)
    present = torch.zeros(B, n, n_docs, dtype=torch.bool, device=ids.device)
    tile = (torch.arange(L, device=ids.device) // block).expand(B, L)  # (B, L)
    batch = torch.arange(B, device=ids.device)[:, None].expand(B, L)  # (B, L)
    present[batch, tile, ids] = True
    return present, present.sum(dim=-1) == 1


class _Dense(Mask):
    def __init__(self, values: Tensor):
        self.values = values  # (Bm, Hm, Lq|1, Lk|1) bool

    def evaluate(self, q_idx, k_idx, Lq, Lk):
        self._check(Lq, Lk)
        return index_tile(self.values, q_idx, k_idx)  # (Bm, Hm, tq|1, tk|1)

    def to_dense(self, Lq, Lk, *, device=None):
        self._check(Lq, Lk)
        t = self.values if device is None else self.values.to(device)
        return t.expand(*t.shape[:2], Lq, Lk)  # (Bm, Hm, Lq, Lk)

    def _check(self, Lq: int, Lk: int) -> None:
        lq, lk = self.values.shape[-2:]
        if lq not in (1, Lq) or lk not in (1, Lk):
            raise ValueError(
                f"masks.dense(): the mask is {(lq, lk)} (queries, keys) "
                f"but the inputs have Lq={Lq}, Lk={Lk}; build it for those lengths (or 1 to broadcast)"
            )

    def batch_size(self):
        return self.values.shape[0] if self.values.shape[0] != 1 else None

    def num_heads(self):
        return self.values.shape[1] if self.values.shape[1] != 1 else None

    def _device(self, device):
        return self.values.device if device is None else device

    def __repr__(self):
        return f"dense(shape={tuple(self.values.shape)})"


# ---------------------------------------------------------------------- constructors
def causal() -> Mask:
    """Causal mask: query ``i`` may attend to keys ``j <= i`` (bottom-right aligned).

    When ``Lq < Lk`` (decoding with a KV cache) the last query sees every key::

        Lq=2, Lk=5           Lq=5, Lk=5
        keys  0 1 2 3 4      keys  0 1 2 3 4
        q0    1 1 1 1 0      q0    1 0 0 0 0
        q1    1 1 1 1 1      q1    1 1 0 0 0
                             q2    1 1 1 0 0  ...

    When ``Lq > Lk`` the first ``Lq - Lk`` queries see nothing and return zeros.

    Example:
        >>> causal().to_dense(2, 5)[0, 0].int()
        tensor([[1, 1, 1, 1, 0],
                [1, 1, 1, 1, 1]], dtype=torch.int32)
    """
    return _Causal()


def sliding_window(window: int, causal: bool = True) -> Mask:
    """Local attention over ``window`` keys.

    ``causal=True`` (Mistral): query at aligned position ``i`` sees keys
    ``i - window < j <= i`` — ``window`` keys, itself included.
    ``causal=False``: keys with ``|i - j| < window``.

    Example:
        >>> sliding_window(2).to_dense(3, 3)[0, 0].int()
        tensor([[1, 0, 0],
                [1, 1, 0],
                [0, 1, 1]], dtype=torch.int32)
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"masks.sliding_window(): window must be a positive int, got {window!r}")
    return _SlidingWindow(window, bool(causal))


def padding(lengths_or_mask: Tensor | Sequence[int]) -> Mask:
    """Key padding: batch row ``b`` may attend only to its first ``lengths[b]`` keys.

    Accepts lengths ``(B,)`` (ints) or a bool tensor ``(B, Lk)`` with ``True`` on real
    tokens (right padding: the real tokens must come first).

    Inside ``torch.compile``/``torch.export`` the checks that read values (lengths ``>= 0``,
    right padding) are skipped, as a graph cannot branch on values; a bool tensor is then
    used as the dense mask it is, whichever side the padding is on.

    Example:
        >>> padding([2, 3]).to_dense(1, 3)[:, 0].int()
        tensor([[[1, 1, 0]],
        <BLANKLINE>
                [[1, 1, 1]]], dtype=torch.int32)
    """
    t = _int_tensor("padding", "lengths_or_mask", lengths_or_mask, "lengths (B,) or a bool mask (B, Lk)")
    if t.dtype == torch.bool:
        if t.dim() != 2:
            raise ValueError(
                f"masks.padding(): a bool mask must be (B, Lk) with True on real tokens, got shape {tuple(t.shape)}"
            )
        if torch.compiler.is_compiling():  # a graph cannot check the padding side: the bool mask as it is
            return dense(t[:, None, None, :])  # (B, Lk) -> (B, 1, 1, Lk)
        lengths = t.sum(dim=1)
        if not torch.equal(t, torch.arange(t.shape[1], device=t.device)[None] < lengths[:, None]):
            raise ValueError(
                "masks.padding(): the bool mask has padding before real tokens; only right padding is a "
                "padding mask — use masks.dense(...) for arbitrary patterns"
            )
        return _Padding(lengths)
    if t.dtype.is_floating_point or t.dim() != 1:
        raise ValueError(
            f"masks.padding(): expected lengths as a 1-D integer tensor (B,) or a bool mask (B, Lk), "
            f"got dtype {t.dtype} and shape {tuple(t.shape)}"
        )
    if not torch.compiler.is_compiling() and (t < 0).any():  # an eager check: a traced graph cannot branch on values
        raise ValueError(f"masks.padding(): lengths must be >= 0, got {t.tolist()}")
    return _Padding(t.long())


def document(ids: Tensor | Sequence[int]) -> Mask:
    """Block-diagonal mask for packed sequences: a query sees only keys of its own document.

    ``ids`` holds a document id per key position, ``(Lk,)`` or ``(B, Lk)``. Queries take
    the ids of the last ``Lq`` positions (bottom-right alignment; ``Lq <= Lk``). Combine with
    :func:`causal` for packed decoder training.

    Example:
        >>> document([0, 0, 1]).to_dense(3, 3)[0, 0].int()
        tensor([[1, 1, 0],
                [1, 1, 0],
                [0, 0, 1]], dtype=torch.int32)
    """
    t = _int_tensor("document", "ids", ids, "document ids (Lk,) or (B, Lk)")
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.dim() not in (1, 2):
        raise ValueError(
            f"masks.document(): ids must be integers of shape (Lk,) or (B, Lk), "
            f"got dtype {t.dtype} and shape {tuple(t.shape)}"
        )
    return _Document(t.long().reshape(-1, t.shape[-1]))  # (B or 1, Lk)


def _int_tensor(fn: str, arg: str, value, expected: str) -> Tensor:
    """``value`` as a tensor, or a TypeError naming ``masks.fn()``, ``arg`` and what was given."""
    if isinstance(value, Tensor):
        return value
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        t = None
    if t is None or not (t.dtype == torch.bool or not (t.dtype.is_floating_point or t.dtype.is_complex)):
        raise TypeError(f"masks.{fn}(): {arg} must be integer {expected}, got {value!r}")
    return t


def prefix_lm(prefix: int) -> Mask:
    """Prefix-LM: the first ``prefix`` keys are visible to every query, the rest causally.

    Example:
        >>> prefix_lm(2).to_dense(3, 3)[0, 0].int()
        tensor([[1, 1, 0],
                [1, 1, 0],
                [1, 1, 1]], dtype=torch.int32)
    """
    if isinstance(prefix, bool) or not isinstance(prefix, int) or prefix < 0:
        raise ValueError(f"masks.prefix_lm(): prefix must be an int >= 0, got {prefix!r}")
    return _PrefixLM(prefix)


def dense(values: Tensor) -> Mask:
    """Wrap a bool tensor (``True`` = may attend) of shape ``(Lq, Lk)``, ``(B, Lq, Lk)``
    or ``(B, H, Lq, Lk)``; any dim may be 1 to broadcast.

    Example:
        >>> dense(torch.tensor([[True, False], [True, True]])).to_dense(2, 2).shape
        torch.Size([1, 1, 2, 2])
    """
    if not isinstance(values, Tensor) or values.dtype != torch.bool:
        got = values.dtype if isinstance(values, Tensor) else type(values).__name__
        raise TypeError(
            f"masks.dense(): expected a bool tensor (True = may attend), got {got}; "
            "for additive float masks pass them as bias= instead"
        )
    if values.dim() == 3:
        values = values[:, None]  # (B, Lq, Lk) -> (B, 1, Lq, Lk)
    if values.dim() not in (2, 4):
        raise ValueError(
            f"masks.dense(): expected shape (Lq, Lk), (B, Lq, Lk) or (B, H, Lq, Lk), got {tuple(values.shape)}"
        )
    return _Dense(as_4d(values))  # (Bm, Hm, Lq, Lk)


def as_mask(mask: Mask | Tensor | None, name: str = "mask") -> Mask | None:
    """Accept a Mask, a bool tensor (wrapped with :func:`dense`) or None."""
    if mask is None or isinstance(mask, Mask):
        return mask
    if isinstance(mask, Tensor):
        if mask.dtype != torch.bool:
            raise TypeError(
                f"{name} must be a bool tensor (True = may attend) or an attnkit.masks.Mask, got a tensor of "
                f"dtype {mask.dtype}; pass additive float masks as bias="
            )
        return dense(mask)
    raise TypeError(f"{name} must be an attnkit.masks.Mask, a bool tensor or None, got {type(mask).__name__}")


# ---------------------------------------------------------------------- alignment and per-key masks
def _position_leaves_only(mask: Mask) -> bool:
    """True when ``mask`` is built from causal / sliding-window masks with ``&``, ``|``, ``~`` only."""
    if isinstance(mask, _And):  # _Or derives from _And
        return _position_leaves_only(mask.a) and _position_leaves_only(mask.b)
    if isinstance(mask, _Not):
        return _position_leaves_only(mask.a)
    return type(mask) in (_Causal, _SlidingWindow)


class _Aligned(Mask):
    shift_invariant = True

    def __init__(self, inner: Mask, offset: int):
        self.inner, self.offset = inner, offset

    def evaluate(self, q_idx, k_idx, Lq, Lk):
        # the inner mask puts query i at key position i + (Lk - Lq'); with Lq' = Lk - offset that is i + offset
        return self.inner.evaluate(q_idx, k_idx, Lk - self.offset, Lk)

    def classify_tiles(self, Lq, Lk, block_q, block_k, *, device=None):
        nq, nk = math.ceil(Lq / block_q), math.ceil(Lk / block_k)
        if Lk - self.offset >= Lq:  # classify Lq' = Lk - offset >= Lq queries and keep the first nq rows
            codes = as_4d(self.inner.classify_tiles(Lk - self.offset, Lk, block_q, block_k, device=device))
            return codes[:, :, :nq]  # (1, 1, nq, nk)
        # else classify Lk' = Lq + offset > Lk keys and keep the first nk columns; either way a last tile
        # that was cut short is a subset of the tile classified, so EMPTY and FULL stay true for it
        codes = as_4d(self.inner.classify_tiles(Lq, Lq + self.offset, block_q, block_k, device=device))
        return codes[..., :nk]  # (1, 1, nq, nk)

    def __repr__(self):
        return f"aligned({self.inner!r}, offset={self.offset})"


def aligned(mask: Mask, offset: int) -> Mask:
    """Re-align a causal or sliding-window mask: query ``i`` sits at key position ``i + offset``.

    Every position mask here aligns bottom-right (``offset = Lk - Lq``: the last query sees the
    last key, as in KV-cache decoding). ``offset=0`` is top-left, the alignment of SDPA's
    ``is_causal=True`` and of a Hugging Face static cache at prefill (queries ``0..Lq-1`` over a
    cache of ``Lk`` slots, the unused slots masked as padding). ``mask`` is built from
    :func:`causal` and :func:`sliding_window` with ``&``, ``|``, ``~``; tiles are still
    classified in closed form.

    ::

        aligned(causal(), 0), Lq=2, Lk=5      causal() (offset Lk - Lq = 3)
        keys  0 1 2 3 4                         keys  0 1 2 3 4
        q0    1 0 0 0 0                         q0    1 1 1 1 0
        q1    1 1 0 0 0                         q1    1 1 1 1 1

    Example:
        >>> aligned(causal(), 0).to_dense(2, 5)[0, 0].int()
        tensor([[1, 0, 0, 0, 0],
                [1, 1, 0, 0, 0]], dtype=torch.int32)
        >>> aligned(sliding_window(2), 1).to_dense(2, 4)[0, 0].int()
        tensor([[1, 1, 0, 0],
                [0, 1, 1, 0]], dtype=torch.int32)
    """
    if not isinstance(mask, Mask) or not _position_leaves_only(mask):
        raise TypeError(
            f"masks.aligned(): mask must be built from masks.causal() and masks.sliding_window() (with &, |, ~), "
            f"got {mask!r}; per-batch masks (padding, document, dense) have no query alignment to change"
        )
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise TypeError(f"masks.aligned(): offset must be an int (the key position of query 0), got {offset!r}")
    return _Aligned(mask, offset)


class _KeyMask(Mask):
    def __init__(self, allowed: Tensor):
        self.allowed = allowed  # (B, Lk) bool: True = a real key

    def _check(self, Lk: int) -> None:
        if self.allowed.shape[1] != Lk:
            raise ValueError(
                f"masks.key_mask(): the mask covers {self.allowed.shape[1]} keys but the inputs have Lk={Lk}; "
                "pass one value per key position"
            )

    def evaluate(self, q_idx, k_idx, Lq, Lk):
        self._check(Lk)
        allowed = self.allowed.to(k_idx.device)[:, k_idx[0]]  # (B, tk): the same for every query
        return allowed[:, None, None, :]  # (B, 1, 1, tk)

    def classify_tiles(self, Lq, Lk, block_q, block_k, *, device=None):
        self._check(Lk)
        allowed = self.allowed.to(self._device(device))
        B, nq, nk = allowed.shape[0], math.ceil(Lq / block_q), math.ceil(Lk / block_k)
        pad = nk * block_k - Lk
        any_ = torch.nn.functional.pad(allowed, (0, pad), value=False).view(B, nk, block_k).any(dim=2)  # (B, nk)
        all_ = torch.nn.functional.pad(allowed, (0, pad), value=True).view(B, nk, block_k).all(dim=2)  # (B, nk)
        return _status(all_, ~any_)[:, None, None, :].expand(-1, 1, nq, -1)  # (B, 1, nq, nk)

    def batch_size(self):
        return self.allowed.shape[0]

    def _device(self, device):
        return self.allowed.device if device is None else device

    def __repr__(self):
        return f"key_mask(shape={tuple(self.allowed.shape)})"


def key_mask(allowed: Tensor) -> Mask:
    """Per-key padding of any pattern: batch row ``b`` may attend to key ``j`` iff ``allowed[b, j]``.

    ``allowed`` is a bool tensor ``(B, Lk)``, ``True`` on real tokens (attnkit's one polarity;
    ``nn.MultiheadAttention``'s ``key_padding_mask`` is the opposite). Unlike :func:`padding`,
    the real tokens may sit anywhere: left padding (as Hugging Face generation pads a batch),
    holes, a static cache's unused slots. Tiles are classified per key block, in closed form.

    Example:
        >>> key_mask(torch.tensor([[False, True, True], [True, True, True]])).to_dense(1, 3)[:, 0].int()
        tensor([[[0, 1, 1]],
        <BLANKLINE>
                [[1, 1, 1]]], dtype=torch.int32)
    """
    if not isinstance(allowed, Tensor) or allowed.dtype != torch.bool or allowed.dim() != 2:
        got = f"dtype {allowed.dtype}, shape {tuple(allowed.shape)}" if isinstance(allowed, Tensor) else allowed
        raise TypeError(f"masks.key_mask(): allowed must be a bool tensor (B, Lk), True = real token; got {got!r}")
    return _KeyMask(allowed)
