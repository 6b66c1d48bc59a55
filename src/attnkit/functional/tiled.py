r"""Exact tiled attention: FlashAttention-2 on CPU tiles, ``O(L)`` memory, custom backward.

Forward (FlashAttention-2, Algorithm 1) for one block of queries, over chunks
``c`` of keys, with running row maximum ``m`` and running sum ``l``::

    S   = Q K_c^T * scale + bias_c         (masked entries -inf; EMPTY tiles never computed)
    m'  = max(m, rowmax(S));  P = exp(S - m')
    l   = l * exp(m - m') + rowsum(P);  O = O * exp(m - m') + P V_c;  m = m'
    O   = O / l;  lse = m + log(l)

Backward (Algorithm 2) recomputes ``P = exp(S - lse)`` tile by tile, with
``D = rowsum(dO * O)``::

    dV_c += P^T dO;  dP = dO V_c^T;  dS = P * (dP - D);  dQ += dS K_c * scale;  dK_c += dS^T Q * scale

Only ``(q, k, v, out, lse)`` are saved; no ``Lq x Lk`` tensor is ever built, for
any mask or bias. Tiles are planned from the mask (:mod:`._tiles`): EMPTY tiles
are skipped, FULL tiles get no masking op, PARTIAL tiles get ``mask.evaluate``
on their indices. Where consecutive query blocks attend equally placed key
chunks under a shift-invariant mask (a sliding window), the forward pass runs
them as one *band* (:mod:`._bands`): batched matmuls over overlapping key windows,
one mask tile added to all of them, and a plain softmax (one chunk per block); the
backward pass can too (BACKWARD_BANDS, off: measured no faster). Some calls leave the
tile loop to torch's fused CPU FlashAttention kernel, on views of q, k, v, where it measured
faster: packed documents and key padding as pieces of plain attention (:mod:`._segments`,
both passes) and sliding windows too short for bands (:mod:`._windows`, forward). Batch
and key heads are flattened for ``bmm``; the ``G`` query heads of a key head
are folded into the query axis, so K/V are never copied per head (grouped-query
attention). bf16/fp16 inputs are computed in
float32 (these CPUs have no fast half matmul) and returned in their dtype.

Dropout keeps entry ``(b, h, i, j)`` according to a hash of ``(seed, b, h, i, j)``
(:func:`dropout_keep_mask`), so the backward pass regenerates the same mask.

Measurements behind the defaults (AMD EPYC, 2 cores shared with other jobs,
torch 2.13, fp32, B=1, H=8, D=64, causal L=4096; 1 thread, CPU time, best of 3,
ratios to torch SDPA ``is_causal=True`` in the same process):

* ``exp2`` costs 0.36 ns/element whatever the input; ``exp`` costs 0.9 ns, 1.6 ns
  when a third of the entries are ``-inf``, and ~50 ns when results underflow
  (denormals). So ``exp(S - m)`` is computed as ``exp2((S - m) * log2(e))``; the
  factor comes after the shift, so exact large logits keep exact ties.
* A fresh 32 MiB tensor costs ~34 ms in page faults (vs 0.9 ms to refill one), so
  queries are scaled per block and ``out``, ``lse``, ``dq`` are written in place.
* block_q x block_k (score budget): fwd / fwd+bwd ratio to SDPA —
  64x128 (2M) 1.32 / 1.19, 128x128 (1M) 1.18 / 1.09, 128x128 (4M) 1.32 / 1.18,
  256x128 (2M) 1.13 / 1.06, 256x256 (2M) 1.16 / 1.08, 512x128 (1M) 1.33 / 1.18;
  budgets 256K-2M differ by < 5%. The run is matmul-bound (bmm ~77% of forward).
  128 x 128 wins or ties and keeps masking/skipping fine-grained.
* Per chunk, the Python-level ops cost ~170 us forward (the planner's overhead term).
* Bands (sliding windows, L=16384, window 256, 2 threads): a forward made of one
  batched matmul per (batch row, key head) over up to a 1M-score band of blocks
  (overlapping key windows are views of K) runs in 102-140 ms (102 ms in the committed
  ``benchmarks/results/sparse-16k`` run) against ~200 ms block by block; 64 x 64
  tiles beat 128 x 128 there (~130 vs ~155 ms in the same session) because the
  window's ragged edges waste (64 + 256) / 256 instead of (128 + 256) / 256 of the work.
* Not done, measured slower (``benchmarks/results/flex-short``): one band over the blocks
  of every (batch row, key head) at once, K/V copied into a padded buffer so all windows
  are one view (sliding 256, L=1024, 1 thread: 16.3 ms vs 11.1 ms block by block), or,
  for documents one block long, as plain views (L=1024, 2 threads: 3.96 vs 2.94 ms).

Shape legend: B batch, H query heads, Hkv key/value heads, G = H // Hkv,
N = B * Hkv, Lq/Lk lengths, D head dim, Dv value head dim, R = tq * G score rows
of a query block, w keys of a chunk.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .._tensors import as_4d, compute_dtype
from ..masks import Mask
from ._autograd import OutLseFunction
from ._bands import LOG2E, backward_band, forward_band
from ._segments import Segments, grouped, plan_segments, segments_backward, segments_forward
from ._tile_runs import position_key
from ._tiles import (
    Band,
    TilePlan,
    bands,
    bias_rows,
    bias_tile,
    block_rows,
    dropout_keep_tile,
    flat_kv,
    indices_of,
    make_plan,
    mask_tile,
    store_rows,
    zero_uncovered,
)
from ._validate import validate
from ._windows import Windows, plan_windows, windows_forward
from .bias import Bias
from .reference import nan_in_nan_out

__all__ = [
    "tiled_attention",
    "attention_weights",
    "tiled_forward",
    "tiled_backward",
    "TiledCall",
    "dropout_keep_mask",
    "DEFAULT_BLOCK_Q",
    "DEFAULT_BLOCK_K",
]

DEFAULT_BLOCK_Q = 128  # query positions per block
DEFAULT_BLOCK_K = 128  # key positions per block (the unit of skipping and of masking)
BANDED_BLOCK = 64  # block_q = block_k when the forward pass is mostly bands (see TiledCall.build)
# The backward pass in bands (._bands.backward_band: five bmm per (batch row, key head) over a band's
# windows) is exact (tests/functional/test_tiled.py) but measured no faster than 128 x 128 block by block,
# so it is off. Sliding window 256, B=1, H=8, D=64, 2 threads, quiet machine, medians of interleaved calls
# (benchmarks/results/band-backward): backward alone 58.6 vs 56.0 ms at L=4096, 231.8 vs 225.4 ms at 16384
# (128 x 128 bands: 60.2, 254.8); forward+backward 76.1 vs 70.9 ms at 4096, 276.3 vs 301.5 ms at 16384.
# The pass is matmul-bound: 64 x 64 windows compute 320 keys a row against 384, but as smaller matmuls.
BACKWARD_BANDS = False
SCORE_BUDGET = 1 << 20  # most score elements one chunk may hold (4 MiB in float32); longer spans are chunked


@dataclass(frozen=True)
class TiledCall:
    """Non-tensor state of one call, shared by the forward and backward passes."""

    mask: Mask | None  # what may attend (True = may attend)
    bias: Bias | None  # additive bias on the scores
    scale: float  # multiplies QK^T
    dropout_p: float  # dropout probability on the weights
    seed: int  # dropout stream (unused when dropout_p == 0)
    Hkv: int  # key/value heads
    G: int  # query heads per key/value head
    Lq: int  # queries
    Lk: int  # keys
    plan: TilePlan | None  # which tiles to compute and which to mask (forward); None when segments run it
    plan_backward: Callable[[], TilePlan]  # makes the backward pass's plan (any tiling gives the same gradients)
    segments: Segments | None = None  # packed documents, key padding: fused calls without a mask (._segments)
    windows: Windows | None = None  # a short sliding window: the forward pass as one fused call (._windows)

    @property
    def backward_plan(self) -> TilePlan:
        """The backward pass's tiles, planned on first use (a call without autograd never needs them).

        Kept in the instance's ``__dict__`` by hand: ``functools.cached_property`` takes a lock on
        Python < 3.12, which ``torch.compile`` cannot trace. A traced call plans it once into its graph.
        """
        if torch.compiler.is_compiling():
            return self.plan_backward()
        plan = self.__dict__.get("_backward_plan")
        if plan is None:
            plan = self.plan_backward()
            object.__setattr__(self, "_backward_plan", plan)  # a frozen dataclass: bypass its __setattr__
        return plan

    @classmethod
    def build(cls, q: Tensor, k: Tensor, mask=None, bias=None, scale=None, dropout_p=0.0, seed=0,
              block_q=None, block_k=None, Dv=None) -> TiledCall:  # fmt: skip
        """Plan a call on validated inputs ``q (B, H, Lq, D)``, ``k (B, Hkv, Lk, D)``.

        Tile sizes given as None are chosen: 128 x 128, and for a forward pass made mostly
        of bands (sliding windows) 64 x 64, whose narrower chunks waste less work on the
        window's ragged edges (measured at L=16384, window 256: ~130 ms vs ~155 ms). Whether
        the pass is mostly bands is judged on the 64 x 64 plan itself: a band needs more
        blocks than there are (batch row, key head) pairs, which 128 x 128 tiles reach
        only at twice the length (window 256, H=8, L=2048: 15.2 ms vs 19.6 ms at 128).
        The backward pass keeps 128 x 128 block by block, which measured as fast as
        running the same 64 x 64 bands (see BACKWARD_BANDS); that plan is made only when a
        backward pass runs. Without bands both passes run at 128 x 128: a short window
        (256 at L = 512-1024) at 64 x 64 computes ~16% fewer scores and was 1.12x faster on
        1 thread, but not on 2 (L=512: 3.03 vs 2.91 ms, L=1024: 6.34 vs 5.93 ms, medians of
        15 interleaved calls). Plans of position masks are cached (:func:`_plan_key`).

        With ``Dv`` (the values' head dim) given and no tile sizes, bias or dropout, a packed
        document or key padding mask plans its passes as pieces (:func:`._segments.plan_segments`)
        and a sliding window without bands as fused windows (:func:`._windows.plan_windows`).
        """
        B, H, Lq, D = (int(n) for n in q.shape)  # int(): a traced dynamic shape is fixed here (the plan's loops)
        Hkv, Lk = int(k.shape[1]), int(k.shape[2])
        scale = D**-0.5 if scale is None else float(scale)
        device = q.device  # not q itself: cached plans must not keep the tensor alive

        def plan(bq: int, bk: int) -> TilePlan:
            return make_plan(mask, B=B, H=H, Lq=Lq, Lk=Lk, block_q=bq, block_k=bk, budget=SCORE_BUDGET,
                             device=device)  # fmt: skip

        fields = (mask, bias, scale, float(dropout_p), int(seed), Hkv, H // Hkv, Lq, Lk)
        if Dv is not None and block_q is None and block_k is None:
            segments = plan_segments(mask, bias, dropout_p, B=B, H=H, Hkv=Hkv, Lq=Lq, Lk=Lk, D=D, Dv=int(Dv),
                                     dtype=q.dtype, device=device)  # fmt: skip
            if segments is not None:  # the forward pass needs no tiles; the backward pass plans its own
                return cls(*fields, None, functools.cache(functools.partial(plan, DEFAULT_BLOCK_Q, DEFAULT_BLOCK_K)),
                           segments)  # fmt: skip
        may_band = block_q is None and block_k is None and _bandable(mask, bias, dropout_p)
        key = _plan_key(mask, may_band, device, B, H, Hkv, Lq, Lk, block_q, block_k)
        plans = _PLANS.get(key) if key is not None else None
        if plans is None:
            plans = _choose_plans(cls, fields, plan, block_q or DEFAULT_BLOCK_Q, block_k or DEFAULT_BLOCK_K, may_band)
            _remember(key, plans)
        windows = None
        if may_band and Dv is not None and plans[0].block_q != BANDED_BLOCK:  # too short for bands: one fused call
            windows = plan_windows(mask, B=B, H=H, Hkv=Hkv, Lq=Lq, Lk=Lk, D=D, Dv=int(Dv), dtype=q.dtype,
                                   device=device)  # fmt: skip
        return cls(*fields, *plans, None, windows)

    @property
    def forward_plan(self) -> TilePlan:
        """The forward pass's tiles (a call whose forward pass runs as segments has none)."""
        if self.plan is None:
            raise RuntimeError("this call's forward pass runs as segments (._segments): it has no tile plan")
        return self.plan

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """:func:`tiled_forward` of this call (the kernel :class:`._autograd.OutLseFunction` runs)."""
        return tiled_forward(q, k, v, self)

    def backward(self, dout, dlse, q, k, v, out, lse) -> tuple[Tensor, Tensor, Tensor]:
        """:func:`tiled_backward` of this call."""
        return tiled_backward(dout, q, k, v, out, lse, self, dlse)


def route(call: TiledCall) -> str:
    """How the tiled backend runs ``call``, in one line (what :func:`attnkit.functional.explain` prints as ``how``).

    Example:
        >>> import torch
        >>> from attnkit import masks
        >>> q = k = torch.zeros(1, 8, 4096, 64)
        >>> print(route(TiledCall.build(q, k, masks.sliding_window(256), Dv=64)).replace("; ", ";\\n"))
        forward: 51 of 64 query blocks in bands of 64x64 (batched matmuls over overlapping key windows);
        backward: blocks of 128 queries, 9% of the scores computed
    """
    if call.segments is not None:  # no tile plan is made for these (the backward plan only if lse gets a gradient)
        seg = call.segments
        calls, inside = len(seg.pieces), (" (causal inside each)" if seg.causal else "")
        if seg.what == "documents":
            docs = sum(p.count for p in seg.pieces if p.b0 == 0)
            what = f"{docs} packed documents{inside}"
        else:
            what = f"only the real keys of each batch row{inside}"
        short = sum(grouped(p, call.G > 1) for p in seg.pieces)
        ways = [f"{n} {one if n == 1 else many}" for n, one, many in
                ((short, "grouped bmm-softmax-bmm pass", "grouped bmm-softmax-bmm passes"),
                 (calls - short, "call of torch's fused CPU flash kernel", "calls of torch's fused CPU flash kernel"))
                if n]  # fmt: skip
        return (f"forward: {what} as {' and '.join(ways)}, no mask; backward: torch's fused kernel (tiles if lse "
                "gets a gradient)")  # fmt: skip
    if call.windows is not None:
        w = call.windows
        ramp = f"the first {w.W} rows as causal attention, then " if w.causal else ""
        return (f"forward: {ramp}blocks of {w.tq} queries over windows of {w.w} keys in torch's fused CPU flash "
                f"kernel (too short for bands); backward: {_tiles_line(call.backward_plan, call)}")  # fmt: skip
    plan = call.forward_plan
    banded, blocks = _banded_blocks(call)
    if banded:
        back = _tiles_line(call.backward_plan, call)
        return (f"forward: {banded} of {blocks} query blocks in bands of {plan.block_q}x{plan.block_q} (batched "
                f"matmuls over overlapping key windows); backward: {back}")  # fmt: skip
    return f"forward and backward: {_tiles_line(plan, call)}"


def _tiles_line(plan: TilePlan, call: TiledCall) -> str:
    """``'blocks of 128 queries, 41% of the scores computed'``: the share of the ``Lq x Lk`` scores computed."""
    B = max((grp.b1 for grp in plan.groups), default=1)
    total = B * call.Hkv * call.G * call.Lq * call.Lk
    share = plan.score_elements(call.Hkv * call.G) / total if total else 0.0
    return f"blocks of {plan.block_q} queries, {share:.0%} of the scores computed"


# ---------------------------------------------------------------------- one score tile
def _scores(qb: Tensor, kf: Tensor, grp, blk, ch, call: TiledCall, buf: Tensor) -> Tensor:
    """``S = Q K^T * scale + bias`` for one chunk (``qb`` carries the scale), ``-inf`` where the mask forbids."""
    n, R, w = qb.shape[0], qb.shape[1], ch.k1 - ch.k0
    k_t = kf[:, ch.k0 : ch.k1].transpose(1, 2)  # (n, D, w)
    if torch.compiler.is_compiling():  # no out= in a traced graph: an exported out= op refuses inputs needing grad
        s = torch.bmm(qb, k_t)  # (n, R, D) @ (n, D, w) -> (n, R, w)
    else:
        s = torch.bmm(qb, k_t, out=buf[: n * R * w].view(n, R, w))  # into the reused tile: no page faults
    s5 = s.view(grp.b1 - grp.b0, call.Hkv, blk.q1 - blk.q0, call.G, w)  # (n, R, w) -> (nb, Hkv, tq, G, w)
    where = (blk.q0, blk.q1, ch.k0, ch.k1, call.Lq, call.Lk, grp.b0, grp.b1, call.Hkv, call.G, s.device)
    if call.bias is not None:
        s5.add_(bias_tile(call.bias, *where))  # (nb, Hkv, tq, G, w) + (nb|1, Hkv|1, tq|1, G|1, w|1)
    if call.mask is None:  # every tile is FULL: nothing to mask
        return s
    for a, b in ch.runs:  # only tiles that are not FULL
        allowed = mask_tile(call.mask, blk.q0, blk.q1, a, b, *where[4:])  # (nb|1, Hkv|1, tq|1, G|1, b-a)
        s5[..., a - ch.k0 : b - ch.k0].masked_fill_(~allowed, float("-inf"))
    return s


def _exp_shifted(s: Tensor, shift: Tensor) -> Tensor:
    """``exp(s - shift)`` in place, computed as ``exp2((s - shift) * log2(e))``.

    ``exp2`` is 2.5x faster than ``exp`` here and has no slow path for results that
    underflow; log2(e) multiplies after the shift, so large logits keep their exact ties.
    """
    return s.sub_(shift).mul_(LOG2E).exp2_()


def _keep(call: TiledCall, grp, blk, ch, like: Tensor) -> Tensor:
    """Dropout keep mask of one chunk, already scaled by ``1 / (1 - p)``: ``(n, R, w)`` like ``like``."""
    keep = dropout_keep_tile(call.seed, call.dropout_p, blk.q0, blk.q1, ch.k0, ch.k1, grp.b0, grp.b1,
                             call.Hkv, call.G, like.device)  # fmt: skip
    keep = keep.flatten(0, 1).flatten(1, 2).to(like.dtype)  # (nb, Hkv, tq, G, w) -> (n, R, w)
    return keep.mul_(1.0 / (1.0 - call.dropout_p))


# ---------------------------------------------------------------------- Algorithm 1
def tiled_forward(q: Tensor, k: Tensor, v: Tensor, call: TiledCall) -> tuple[Tensor, Tensor]:
    """FlashAttention-2 forward: ``out (B, H, Lq, Dv)`` in q's dtype and ``lse (B, H, Lq)`` in float32+.

    Pure function (no autograd); :func:`tiled_attention` is the public entry.

    Example:
        >>> q = k = v = torch.randn(1, 2, 100, 8)
        >>> call = TiledCall.build(q, k, block_q=32, block_k=32)
        >>> out, lse = tiled_forward(q, k, v, call)
        >>> torch.allclose(out, torch.nn.functional.scaled_dot_product_attention(q, k, v), atol=1e-6)
        True
    """
    if call.Lk == 0 or q.shape[0] == 0:  # no keys: every row is empty (output 0, lse -inf); or no batch rows
        lse = q.new_full(q.shape[:3], float("-inf"), dtype=compute_dtype(q.dtype))  # (B, H, Lq)
        return q.new_zeros(*q.shape[:3], v.shape[3]), lse
    if call.segments is not None:  # packed documents, key padding: fused calls, no tiles
        return segments_forward(q, k, v, call.segments, call.scale)
    if call.windows is not None:  # a sliding window too short for bands: one fused call
        return windows_forward(q, k, v, call.windows, call.scale)
    plan = call.forward_plan
    kf, vf = flat_kv(k, call.Lk), flat_kv(v, call.Lk)  # (N, Lk, D), (N, Lk, Dv)
    out = q.new_empty(*q.shape[:3], v.shape[3])  # (B, H, Lq, Dv), written block by block
    lse = torch.full(q.shape[:3], float("-inf"), dtype=kf.dtype, device=q.device)  # (B, H, Lq)
    buf = torch.empty(plan.max_tile, dtype=kf.dtype, device=q.device)  # one score tile, reused
    for grp in plan.groups:
        n = slice(grp.b0 * call.Hkv, grp.b1 * call.Hkv)
        zero_uncovered(out, grp, call.Lq)
        for item in _work_items(grp, call):
            if isinstance(item, Band):
                forward_band(q, kf, vf, out, lse, grp, item, call)
                continue
            qb = block_rows(q, grp, item, call.Hkv) * call.scale  # (n, R, D), a copy: never scale q in place
            o_b, lse_b = _forward_block(qb, kf[n], vf[n], grp, item, call, buf)
            store_rows(out, o_b, grp, item, call.Hkv)
            store_rows(lse.unsqueeze(-1), lse_b, grp, item, call.Hkv)
    return out, lse


def _work_items(grp, call: TiledCall, plan: TilePlan | None = None) -> list:
    """The group's blocks of ``plan`` (default: the forward plan), with equally laid-out runs of
    them grouped into bands where that pays.

    Bands need one mask tile for all their blocks (no mask, or a shift-invariant one, and
    no bias or dropout, which depend on absolute positions). A band is computed per
    (batch row, key head), so it pays when it holds more blocks than there are of those.
    """
    tq = (plan or call.forward_plan).block_q
    if not _bandable(call.mask, call.bias, call.dropout_p) or not grp.blocks or tq is None:
        return list(grp.blocks)
    n = (grp.b1 - grp.b0) * call.Hkv
    return bands(grp.blocks, tq, max_rows=SCORE_BUDGET // (call.G * _widest(grp)), min_blocks=2 * n)


Plans = tuple[TilePlan, Callable[[], TilePlan]]  # the forward plan and the maker of the backward plan
_PLANS: dict[tuple, Plans] = {}  # plans of position masks by _plan_key; cleared at PLAN_CACHE_SIZE entries
PLAN_CACHE_SIZE = 64


def _plan_key(mask, bandable: bool, device, *sizes) -> tuple | None:
    """What a position mask's plan follows from (None: not cached, e.g. a tensor-valued mask, or while
    tracing, where the plan goes into the graph once). Measured: building the plan of a sliding window
    costs 0.1-0.3 ms per call at L = 512-16384, 1-3% of a forward pass at L <= 2048 on 2 threads."""
    if torch.compiler.is_compiling():
        return None
    described = position_key(mask)
    return None if described is None else (described, bandable, torch.device(device).type, *sizes)


def _remember(key: tuple | None, plans: Plans) -> None:
    if key is None:
        return
    if len(_PLANS) >= PLAN_CACHE_SIZE:
        _PLANS.clear()
    _PLANS[key] = plans


def _choose_plans(cls, fields, plan, bq: int, bk: int, may_band: bool) -> Plans:
    """``(forward plan, maker of the backward plan)``: 64 x 64 bands where they cover most of the
    forward pass (the backward pass then at ``bq x bk`` unless BACKWARD_BANDS), else ``bq x bk``."""
    if may_band:
        narrow = plan(BANDED_BLOCK, BANDED_BLOCK)
        if _mostly_banded(cls(*fields, narrow, lambda: narrow)):
            if BACKWARD_BANDS:
                return narrow, lambda: narrow
            wide = functools.partial(plan, bq, bk)
            return narrow, (wide if torch.compiler.is_compiling() else functools.cache(wide))  # made once, if ever
    same = plan(bq, bk)
    return same, lambda: same


def _bandable(mask: Mask | None, bias: Bias | None, dropout_p: float) -> bool:
    """One mask tile fits every block of a band: no mask or a shift-invariant one, no bias, no dropout."""
    return bias is None and dropout_p == 0 and (mask is None or mask.shift_invariant)


def _mostly_banded(call: TiledCall) -> bool:
    """True when bands would cover at least half of the forward pass's query blocks."""
    banded, blocks = _banded_blocks(call)
    return banded > 0 and 2 * banded >= blocks


def _banded_blocks(call: TiledCall) -> tuple[int, int]:
    """``(query blocks the forward pass runs in bands, all its query blocks)``."""
    items = [item for grp in call.forward_plan.groups for item in _work_items(grp, call)]
    banded = sum(item.m for item in items if isinstance(item, Band))
    return banded, sum(item.m if isinstance(item, Band) else 1 for item in items)


def _widest(grp) -> int:
    return max(c.k1 - c.k0 for blk in grp.blocks for c in blk.chunks)


def _chunk_terms(qb, kf, vf, grp, blk, ch, call: TiledCall, buf, m: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """One chunk of the online softmax: the running max ``m_new (n, R, 1)`` (``m`` = the max so far,
    None on the first chunk), ``l_c = rowsum(exp(S - m_new)) (n, R, 1)`` and ``P V (n, R, Dv)``."""
    s = _scores(qb, kf, grp, blk, ch, call, buf)  # (n, R, w)
    lowest = torch.finfo(qb.dtype).min  # stands for the max of an empty row: keeps exp() free of NaN
    m_new = s.amax(dim=-1, keepdim=True).clamp_min_(lowest)  # (n, R, 1)
    if m is not None:
        m_new = torch.maximum(m, m_new)
    p = _exp_shifted(s, m_new)  # (n, R, w) exp(S - m); masked entries exp(-inf) = 0
    l_c = p.sum(dim=-1, keepdim=True)  # (n, R, 1), before dropout
    if call.dropout_p > 0:
        p.mul_(_keep(call, grp, blk, ch, p))
    pv = torch.bmm(p, vf[:, ch.k0 : ch.k1])  # (n, R, w) @ (n, w, Dv) -> (n, R, Dv)
    return m_new, l_c, pv


def _forward_block(qb, kf, vf, grp, blk, call: TiledCall, buf) -> tuple[Tensor, Tensor]:
    """Online softmax over the chunks of one query block: ``(o (n, R, Dv), lse (n, R, 1))``."""
    first, *rest = blk.chunks  # a planned block has at least one chunk
    m, l, o = _chunk_terms(qb, kf, vf, grp, blk, first, call, buf, None)
    for ch in rest:
        m_new, l_c, pv = _chunk_terms(qb, kf, vf, grp, blk, ch, call, buf, m)
        alpha = torch.exp(m - m_new)  # (n, R, 1) rescales the earlier chunks
        l, o = l.mul_(alpha).add_(l_c), o.mul_(alpha).add_(pv)
        m = m_new
    lse = m + torch.log(l)  # (n, R, 1); log(0) = -inf on rows with nothing allowed
    return o.div_(l.clamp_min_(1.0)), lse  # l >= 1 on any row with an allowed key; empty rows stay 0


# ---------------------------------------------------------------------- Algorithm 2
def tiled_backward(
    dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, call: TiledCall,
    dlse: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """FlashAttention-2 backward: ``(dq, dk, dv)`` in the input dtype; ``dlse`` is an optional gradient of lse.

    Example:
        >>> q = k = v = torch.randn(1, 1, 50, 8)
        >>> call = TiledCall.build(q, k, block_q=16, block_k=16)
        >>> out, lse = tiled_forward(q, k, v, call)
        >>> dq, dk, dv = tiled_backward(torch.ones_like(out), q, k, v, out, lse, call)
        >>> dv.sum().round().item()  # each query spreads its weight 1 over the values
        400.0
    """
    if call.Lk == 0 or q.shape[0] == 0:  # no keys (nothing depends on q; k, v are empty) or no batch rows
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    if call.segments is not None and dlse is None:  # documents, padding; lse unused: fused backward calls
        return segments_backward(dout, q, k, v, out, lse, call.segments, call.scale)
    kf, vf = flat_kv(k, call.Lk), flat_kv(v, call.Lk)  # (N, Lk, D), (N, Lk, Dv)
    dq = torch.zeros_like(q)  # (B, H, Lq, D)
    dk, dv = torch.zeros_like(kf), torch.zeros_like(vf)  # (N, Lk, D), (N, Lk, Dv) accumulated over blocks
    plan = call.backward_plan
    bufs = torch.empty(2, plan.max_tile, dtype=kf.dtype, device=q.device)  # scores, dP tiles
    for grp in plan.groups:
        n = slice(grp.b0 * call.Hkv, grp.b1 * call.Hkv)
        for blk in _work_items(grp, call, plan) if BACKWARD_BANDS else grp.blocks:
            if isinstance(blk, Band):
                backward_band(dout, q, kf, vf, out, lse, dlse, (dq, dk, dv), grp, blk, call)
                continue
            qb = block_rows(q, grp, blk, call.Hkv) * call.scale  # (n, R, D), a copy: never scale q in place
            dob = block_rows(dout, grp, blk, call.Hkv)  # (n, R, Dv)
            D = (dob * block_rows(out, grp, blk, call.Hkv)).sum(dim=-1, keepdim=True)  # (n, R, 1)  D = rowsum(dO * O)
            if dlse is not None:
                D.sub_(block_rows(dlse.unsqueeze(-1), grp, blk, call.Hkv))  # d lse / d S = P: joins D, opposite sign
            lse_b = block_rows(lse.unsqueeze(-1), grp, blk, call.Hkv).nan_to_num(neginf=float("inf"))  # (n, R, 1)
            # rows with nothing allowed get lse = +inf, so P = exp(S - inf) = 0 there
            dq_b = torch.zeros_like(qb)  # (n, R, D)
            for ch in blk.chunks:
                grads = (dq_b, dk[n, ch.k0 : ch.k1], dv[n, ch.k0 : ch.k1])
                _backward_chunk(qb, kf[n], vf[n], dob, lse_b, D, grp, blk, ch, call, bufs, grads)
            store_rows(dq, dq_b.mul_(call.scale), grp, blk, call.Hkv)
    return dq, dk.view_as(k).to(k.dtype), dv.view_as(v).to(v.dtype)


def _backward_chunk(qb, kf, vf, dob, lse_b, D, grp, blk, ch, call, bufs, grads) -> None:
    """Accumulate one chunk's contribution into ``grads = (dq_b, dk_c, dv_c)``."""
    dq_b, dk_c, dv_c = grads
    k_c, v_c = kf[:, ch.k0 : ch.k1], vf[:, ch.k0 : ch.k1]  # (n, w, D), (n, w, Dv)
    p = _exp_shifted(_scores(qb, kf, grp, blk, ch, call, bufs[0]), lse_b)  # (n, R, w)  P = exp(S - lse)
    n, R, w = p.shape
    dp = torch.bmm(dob, v_c.transpose(1, 2), out=bufs[1][: n * R * w].view(n, R, w))  # (n, R, Dv) @ (n, Dv, w)
    if call.dropout_p > 0:
        keep = _keep(call, grp, blk, ch, p)  # (n, R, w) scaled by 1 / (1 - p)
        dv_c.baddbmm_((p * keep).transpose(1, 2), dob)  # (n, w, R) @ (n, R, Dv) -> (n, w, Dv)
        dp.mul_(keep)
    else:
        dv_c.baddbmm_(p.transpose(1, 2), dob)  # (n, w, R) @ (n, R, Dv) -> (n, w, Dv)
    ds = dp.sub_(D).mul_(p)  # (n, R, w)  dS = P * (dP - D), w.r.t. the scaled scores
    dq_b.baddbmm_(ds, k_c)  # (n, R, w) @ (n, w, D) -> (n, R, D); times scale at the end
    dk_c.baddbmm_(ds.transpose(1, 2), qb)  # (n, w, R) @ (n, R, D) -> (n, w, D); qb carries the scale


# ---------------------------------------------------------------------- public API
def tiled_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Mask | Tensor | None = None,
    *,
    bias: Bias | Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    block_q: int | None = None,
    block_k: int | None = None,
    seed: int | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Exact attention ``softmax(QK^T * scale + bias) V`` in tiles; returns ``(out, lse)``.

    Memory is ``O(L)``: no ``Lq x Lk`` tensor is built in the forward or backward
    pass, for any mask or bias. Tiles the mask classifies EMPTY are skipped, so
    causal, sliding-window and document masks cost only the work they allow.

    Args:
        q, k, v: ``(B, H, Lq, D)``, ``(B, Hkv, Lk, D)``, ``(B, Hkv, Lk, Dv)``; ``H % Hkv == 0``.
        mask: an :mod:`attnkit.masks` object or a bool tensor (``True`` = may attend).
        bias: a float tensor broadcastable to ``(B, H, Lq, Lk)`` or a Bias such as ``Alibi``
            (no gradient flows to the bias).
        scale: multiplies ``QK^T``; default ``1 / sqrt(D)``.
        dropout_p: dropout on the weights; the keep mask is :func:`dropout_keep_mask` of ``seed``.
        block_q, block_k: tile sizes in positions (any positive ints; they need not divide L);
            None = chosen per call (128 x 128; 64 x 64 for sliding-window forward passes).
        seed: dropout stream; ``None`` draws one from torch's global RNG per call.

    Returns:
        ``out (B, H, Lq, Dv)`` in q's dtype and ``lse (B, H, Lq)``, the log-sum-exp of each
        score row (float32 for half inputs; ``-inf`` where the mask allows no key, whose
        output and gradients are 0). ``lse`` is differentiable.

    Example:
        >>> import torch
        >>> from attnkit import masks
        >>> q = k = v = torch.randn(1, 2, 300, 16)
        >>> out, lse = tiled_attention(q, k, v, masks.causal(), block_q=64, block_k=64)
        >>> out.shape, lse.shape
        (torch.Size([1, 2, 300, 16]), torch.Size([1, 2, 300]))
    """
    p = _validated("tiled_attention", q, k, v, mask, bias, scale, dropout_p)
    for name, value in (("block_q", block_q), ("block_k", block_k)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"tiled_attention(): {name} must be a positive int (a tile size in positions), "
                             f"got {value!r}")  # fmt: skip
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"tiled_attention(): seed must be an int or None, got {type(seed).__name__}")
    why = bias_grad_problem(p.bias)
    if why is not None:
        raise ValueError(f"tiled_attention(): {why}; use attnkit.functional.attention(..., backend='reference')")
    out, lse = tiled_attention_unchecked(q, k, v, p.mask, p.bias, p.scale, p.dropout_p,
                                         seed=seed, block_q=block_q, block_k=block_k)  # fmt: skip
    return nan_in_nan_out(q, k, v, out, lse)


def tiled_attention_unchecked(q, k, v, mask, bias, scale, dropout_p, *, seed=None,
                              block_q=None, block_k=None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """:func:`tiled_attention` on inputs already validated (the dispatcher's entry)."""
    if dropout_p > 0 and seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())  # once per call, from torch's global RNG
    call = TiledCall.build(q, k, mask, bias, scale, dropout_p, seed or 0, block_q, block_k, Dv=v.shape[3])
    return OutLseFunction.apply(q, k, v, call)


def bias_grad_problem(bias: Bias | None) -> str | None:
    """Why the tiled backend cannot take this bias (it gives no bias gradient), or None."""
    values = getattr(bias, "values", getattr(bias, "slopes", None))
    if isinstance(values, Tensor) and values.requires_grad and torch.is_grad_enabled():
        return "the bias requires grad, and the tiled backend computes no gradient for a bias"
    return None


def dropout_keep_mask(seed: int, B: int, H: int, Lq: int, Lk: int, dropout_p: float, *, device=None) -> Tensor:
    """The dropout keep mask ``(B, H, Lq, Lk)`` (bool) that :func:`tiled_attention` uses for ``seed``.

    Dense, for tests and inspection; the kernels build it tile by tile.

    Example:
        >>> keep = dropout_keep_mask(0, 1, 2, 64, 64, 0.25)
        >>> keep.shape, abs(keep.float().mean().item() - 0.75) < 0.01
        (torch.Size([1, 2, 64, 64]), True)
    """
    keep = dropout_keep_tile(seed, dropout_p, 0, Lq, 0, Lk, 0, B, H, 1, device)  # (B, H, Lq, 1, Lk)
    return keep[:, :, :, 0]  # (B, H, Lq, Lk)


def attention_weights(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Mask | Tensor | None = None,
    *,
    bias: Bias | Tensor | None = None,
    scale: float | None = None,
    heads=None,
    rows=None,
    lse: Tensor | None = None,
) -> Tensor:
    """Exact attention probabilities for selected heads and query rows: ``(B, len(heads), len(rows), Lk)``.

    ``P = exp(S - lse)`` for the chosen rows only, so a heatmap of one head does not
    cost the ``(B, H, Lq, Lk)`` weights of all heads. Pass the ``lse`` returned by
    :func:`tiled_attention` (or ``attention(..., return_lse=True)``) to reuse it;
    without it, each row's log-sum-exp is computed from the same score row. Rows
    whose mask allows nothing are zeros. Weights are before dropout, in q's dtype.

    Args:
        heads: None (all), an int, or a sequence of query-head indices.
        rows: None (all), an int, a slice, or an index tensor/sequence of query positions.
        lse: ``(B, H, Lq)`` from a forward pass with the same inputs, or None.

    Example:
        >>> import torch
        >>> from attnkit import masks
        >>> q = k = v = torch.randn(1, 4, 50, 8)
        >>> w = attention_weights(q, k, v, masks.causal(), heads=[1], rows=slice(40, 50))
        >>> w.shape, bool(torch.allclose(w.sum(-1), torch.ones(1, 1, 10)))
        (torch.Size([1, 1, 10, 50]), True)
    """
    p = _validated("attention_weights", q, k, v, mask, bias, scale, 0.0)
    B, H, Lq, D = q.shape
    G, Lk = H // k.shape[1], k.shape[2]
    head_idx = indices_of("heads", heads, H)
    row_idx = indices_of("rows", rows, Lq).to(q.device)  # (nr,)
    if lse is not None and tuple(lse.shape) != (B, H, Lq):
        raise ValueError(f"attention_weights(): lse must be (B, H, Lq) = ({B}, {H}, {Lq}), got {tuple(lse.shape)}; "
                         "pass the lse returned by tiled_attention for the same q, k")  # fmt: skip
    ct, scale = compute_dtype(q.dtype), (D**-0.5 if p.scale is None else p.scale)
    k_idx = torch.arange(Lk, device=q.device)[None, :]  # (1, Lk)
    allowed = None if p.mask is None else as_4d(p.mask.evaluate(row_idx[:, None], k_idx, Lq, Lk))  # (Bm, Hm, nr, Lk)
    out = torch.empty(B, len(head_idx), len(row_idx), Lk, dtype=q.dtype, device=q.device)
    for j, h in enumerate(head_idx):
        s = q[:, h, row_idx].to(ct) @ k[:, h // G].to(ct).transpose(1, 2) * scale  # (B, nr, D) @ (B, D, Lk)
        if p.bias is not None:
            s = s + bias_rows(p.bias, h, row_idx, Lq, Lk).to(ct)  # (B, nr, Lk) + (B|1, nr|1, Lk|1)
        if allowed is not None:
            s = s.masked_fill(~allowed[:, min(h, allowed.shape[1] - 1)], float("-inf"))  # (B, nr, Lk)
        row_lse = torch.logsumexp(s, dim=-1) if lse is None else lse[:, h, row_idx].to(ct)  # (B, nr)
        out[:, j] = torch.exp(s - row_lse.nan_to_num(neginf=float("inf"))[..., None])  # empty rows: exp(-inf) = 0
    return out


# ---------------------------------------------------------------------- validation helpers
def _validated(fn: str, q, k, v, mask, bias, scale, dropout_p):
    """The dispatcher's checks, with errors naming ``fn``."""
    return validate(fn, q, k, v, mask, bias, scale, dropout_p)
