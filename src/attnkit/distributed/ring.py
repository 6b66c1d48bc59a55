r"""Ring attention: exact attention over a sequence sharded across processes.

Ring Attention with Blockwise Transformers (Liu, Zaharia and Abbeel, 2023). Each of
``P`` ranks of a process group holds a shard of the sequence, ``q, k, v`` of shape
``(B, H, L/P, D)``. The K/V blocks travel around the ring (rank ``r`` sends to
``r + 1`` and receives from ``r - 1``); while a block is in flight, each rank attends
its local queries to the block it holds, so communication overlaps compute::

    P = 3        step 0     step 1     step 2       rank r visits the block of rank r - s
    rank 0       K0 V0      K2 V2      K1 V1
    rank 1       K1 V1      K0 V0      K2 V2
    rank 2       K2 V2      K1 V1      K0 V0

**Forward.** For each visiting block ``i``, ``out_i, lse_i = attention(q, K_i, V_i)`` with
the mask evaluated at *global* positions, merged exactly by the log-sum-exp rule
(:func:`merge_partial`)::

    lse = logsumexp_i(lse_i);    out = sum_i exp(lse_i - lse) * out_i

Blocks the mask leaves entirely empty (e.g. future blocks under causal) are skipped;
rows that may attend to nothing keep ``out = 0`` and ``lse = -inf`` (no NaN).

**Backward** (FlashAttention-2, Algorithm 2, with the saved *global* ``lse``). The K/V
blocks go around the ring again; for each block ``i``, with ``D = rowsum(dO * O)``::

    P = exp(S_i - lse);  dV_i += P^T dO;  dP = dO V_i^T;  dS = P * (dP - D)
    dQ += dS K_i * scale;  dK_i += dS^T Q * scale

The ``dK_i, dV_i`` accumulators travel with their block and, after the last step, take
one more hop home to the block's owner. Gradients are exact, and only
``(q, k, v, out, lse)`` are saved.

**Layouts.** ``layout="contiguous"`` (rank ``r`` holds positions ``[r L/P, (r+1) L/P)``) or
``"zigzag"`` (chunks ``r`` and ``2P-1-r`` of ``2P``; balances causal work): see
:mod:`attnkit.distributed._ring_plan`. Shard with :func:`shard_sequence` and gather with
:func:`gather_sequence` using the same layout.

Shape legend: B batch, H query heads, Hkv key/value heads (``H % Hkv == 0``), lq/lk local
(per-rank) query/key lengths, Lq = P*lq, Lk = P*lk global lengths, D head dim, Dv value
head dim, N = B*Hkv*lk*(D + Dv) elements of a packed K/V block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from .._tensors import compute_dtype
from ..functional._autograd import OutLseFunction
from ..functional._validate import validate
from ..functional.dispatch import attention
from ..functional.tiled import TiledCall, tiled_backward
from ..masks import Mask, as_mask
from ._ring_plan import LAYOUTS, Layout, Ring, Step, plan_steps

__all__ = ["ring_attention", "shard_sequence", "gather_sequence", "merge_partial", "LAYOUTS"]

_KV_TAG = 17  # p2p tag of the K/V blocks
_GRAD_TAG = 18  # p2p tag of the dK/dV accumulators


@dataclass(frozen=True)
class RingCall:
    """Non-tensor state of one call, shared by the forward and backward passes."""

    ring: Ring  # neighbours in the process group
    steps: tuple[Step, ...]  # one per rank of the ring, in visiting order
    scale: float  # multiplies QK^T

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """:func:`ring_forward` of this call (the kernel :class:`~attnkit.functional._autograd.OutLseFunction` runs)."""
        return ring_forward(q, k, v, self)

    def backward(self, dout, dlse, q, k, v, out, lse) -> tuple[Tensor, Tensor, Tensor]:
        """:func:`ring_backward` of this call."""
        return ring_backward(dout, dlse, q, k, v, out, lse, self)


# ---------------------------------------------------------------------- the merge rule
def merge_partial(out: Tensor, lse: Tensor, out_i: Tensor, lse_i: Tensor) -> tuple[Tensor, Tensor]:
    """Merge two partial attentions over disjoint key sets, exactly.

    ``lse' = logaddexp(lse, lse_i)``; ``out' = exp(lse - lse') out + exp(lse_i - lse') out_i``.
    A row empty on both sides (``lse = lse_i = -inf``) stays ``out' = 0``, ``lse' = -inf``.

    Args:
        out, out_i: ``(B, H, lq, Dv)``; lse, lse_i: ``(B, H, lq)``.

    Example:
        >>> from attnkit.functional import attention
        >>> q, k, v = torch.randn(1, 1, 3, 4), torch.randn(1, 1, 6, 4), torch.randn(1, 1, 6, 4)
        >>> o1, l1 = attention(q, k[:, :, :2], v[:, :, :2], return_lse=True)
        >>> o2, l2 = attention(q, k[:, :, 2:], v[:, :, 2:], return_lse=True)
        >>> out, lse = merge_partial(o1, l1, o2, l2)
        >>> torch.allclose(out, attention(q, k, v), atol=1e-6)
        True
    """
    new = torch.logaddexp(lse, lse_i)  # (B, H, lq); -inf only when both are -inf
    shift = torch.where(torch.isfinite(new), new, torch.zeros_like(new))  # empty rows: exp(-inf - 0) = 0
    w, w_i = torch.exp(lse - shift)[..., None], torch.exp(lse_i - shift)[..., None]  # (B, H, lq, 1)
    return out * w + out_i.to(out.dtype) * w_i, new  # (B, H, lq, Dv), (B, H, lq)


# ---------------------------------------------------------------------- packing K/V for the wire
def _pack(*ts: Tensor) -> Tensor:
    """Tensors flattened into one buffer ``(N,)``, so a block is one message."""
    return torch.cat([t.reshape(-1) for t in ts])  # (N,)


def _unpack(flat: Tensor, *shapes) -> list[Tensor]:
    """Views of ``flat`` with the given shapes (inverse of :func:`_pack`)."""
    sizes = [torch.Size(s).numel() for s in shapes]
    return [part.view(s) for part, s in zip(flat.split(sizes), shapes, strict=True)]


# ---------------------------------------------------------------------- forward
def ring_forward(q: Tensor, k: Tensor, v: Tensor, call: RingCall) -> tuple[Tensor, Tensor]:
    """The forward ring: ``out (B, H, lq, Dv)`` in q's dtype and ``lse (B, H, lq)`` (float32 or wider).

    Pure function (no autograd); :func:`ring_attention` is the public entry.
    """
    ct = compute_dtype(q.dtype)
    B, H, lq, _ = q.shape
    out = torch.zeros(B, H, lq, v.shape[3], dtype=ct, device=q.device)  # (B, H, lq, Dv)
    lse = torch.full((B, H, lq), float("-inf"), dtype=ct, device=q.device)  # (B, H, lq)
    kv = _pack(k, v)  # (N,)
    last = len(call.steps) - 1
    for s, step in enumerate(call.steps):
        incoming = call.ring.shift(kv, _KV_TAG) if s < last else None  # next block in flight during compute
        if step.visit:
            k_i, v_i = _unpack(kv, k.shape, v.shape)  # (B, Hkv, lk, D), (B, Hkv, lk, Dv)
            out_i, lse_i = attention(q, k_i, v_i, step.mask, scale=call.scale, return_lse=True)
            out, lse = merge_partial(out, lse, out_i, lse_i.to(ct))
        if incoming is not None:
            kv = incoming.wait()
    return out.to(q.dtype), lse


# ---------------------------------------------------------------------- backward
def ring_backward(
    dout: Tensor, dlse: Tensor | None, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, call: RingCall
) -> tuple[Tensor, Tensor, Tensor]:
    """The backward ring: ``(dq, dk, dv)`` of this rank's shards, in the input dtypes.

    ``dlse`` is the gradient of the returned ``lse`` (or None). Each step recomputes the
    block's probabilities from the saved global ``lse`` (:func:`_block_grads`); the dK/dV
    accumulator of the block held at step ``s`` arrives from the previous rank while this
    rank computes its own contribution, then moves on.
    """
    ct = compute_dtype(q.dtype)
    q_, out_, dout_ = q.to(ct), out.to(ct), dout.to(ct)
    dq = torch.zeros_like(q_)  # (B, H, lq, D)
    kv = _pack(k.to(ct), v.to(ct))  # (N,)
    acc_in = None  # the accumulator of the block we hold, on its way from the previous rank
    last = len(call.steps) - 1
    for s, step in enumerate(call.steps):
        kv_in = call.ring.shift(kv, _KV_TAG) if s < last else None
        acc = _block_grads(dout_, dlse, q_, kv, out_, lse, step, call, k.shape, v.shape, dq) if step.visit else None
        if acc_in is not None:
            earlier = acc_in.wait()  # (N,) contributions of the ranks that visited this block before
            acc = earlier if acc is None else acc.add_(earlier)
        acc = torch.zeros_like(kv) if acc is None else acc
        acc_in = call.ring.shift(acc, _GRAD_TAG)  # after the last step: the finished block goes home
        if kv_in is not None:
            kv = kv_in.wait()
    if acc_in is None:  # internal invariant: a ring has at least one step
        raise AssertionError("ring_backward(): no ring steps")
    dk, dv = _unpack(acc_in.wait(), k.shape, v.shape)  # this rank's own block, all contributions summed
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


def _block_grads(dout, dlse, q, kv, out, lse, step: Step, call: RingCall, k_shape, v_shape, dq) -> Tensor:
    """One block's ``dK_i, dV_i`` packed ``(N,)``; its ``dQ`` part is added to ``dq`` in place.

    FlashAttention-2's backward (:func:`attnkit.functional.tiled.tiled_backward`) given the
    *global* ``out`` and ``lse``: it recomputes ``P = exp(S_i - lse)``, which is the block's
    share of the global softmax, and ``D = rowsum(dO * O) - dlse``. (``attention()`` has no
    entry for a backward pass with a given ``lse``, so the kernel is called directly.)
    """
    k_i, v_i = _unpack(kv, k_shape, v_shape)  # (B, Hkv, lk, D), (B, Hkv, lk, Dv)
    tiles = TiledCall.build(q, k_i, mask=step.mask, scale=call.scale)
    dq_i, dk_i, dv_i = tiled_backward(dout, q, k_i, v_i, out, lse, tiles, dlse)
    dq.add_(dq_i)  # (B, H, lq, D)
    return _pack(dk_i, dv_i)  # (N,)


# ---------------------------------------------------------------------- public API
def ring_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Mask | Tensor | None = None,
    *,
    scale: float | None = None,
    group=None,
    layout: str = "contiguous",
    return_lse: bool = False,
):
    r"""Exact attention ``softmax(QK^T * scale) V`` over a sequence sharded across the ranks of ``group``.

    Call it on every rank of the group with that rank's shards (see :func:`shard_sequence`).
    The result is this rank's shard of the attention over the *whole* sequence, with
    exact gradients for ``q``, ``k`` and ``v``.

    Args:
        q: local queries ``(B, H, lq, D)``; the global sequence has ``Lq = P * lq`` queries.
        k: local keys ``(B, Hkv, lk, D)``, ``H % Hkv == 0`` (grouped-query attention).
        v: local values ``(B, Hkv, lk, Dv)``.
        mask: the mask of the *global* sequence (``Lq x Lk``; ``True`` = may attend), the same
            object on every rank: an :mod:`attnkit.masks` mask (causal, sliding_window,
            document, padding, prefix_lm, dense and combinations) or a bool tensor. Document
            ids and padding lengths refer to global positions; causal masks are aligned
            bottom-right on the global lengths.
        scale: multiplies ``QK^T``; default ``1 / sqrt(D)``.
        group: the process group (default: the whole world).
        layout: ``"contiguous"`` or ``"zigzag"``, as used to shard the sequence.
        return_lse: also return ``lse (B, H, lq)``, the global log-sum-exp of each local row.

    Returns:
        ``out (B, H, lq, Dv)``, or ``(out, lse)`` with ``return_lse``. Rows that may attend
        to nothing get ``out = 0``, ``lse = -inf`` and zero gradient.

    Every rank must hold shards of the same length (``L`` divisible by ``P``, by ``2P`` for
    zigzag): pad the sequence and mask the padding with ``masks.padding(lengths)``.

    Example (one process; the same code runs on ``P`` processes under torchrun):
        >>> import torch, torch.distributed as dist
        >>> from attnkit import masks
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> x = torch.randn(1, 2, 8, 4)
        >>> q = k = v = shard_sequence(x, 2)
        >>> out = gather_sequence(ring_attention(q, k, v, masks.causal()), 2)
        >>> from attnkit.functional import attention
        >>> torch.allclose(out, attention(x, x, x, masks.causal()), atol=1e-6)
        True
        >>> dist.destroy_process_group()
    """
    group = _check_group("ring_attention", group)
    mask = _check_inputs(q, k, v, mask, scale, layout)
    ring = Ring(group)
    _check_ranks_agree(q, k, v, layout, ring)
    steps = plan_steps(mask, Layout(layout, ring.world), ring.rank, q.shape[2], k.shape[2], q.device)
    call = RingCall(ring, steps, q.shape[3] ** -0.5 if scale is None else float(scale))
    out, lse = OutLseFunction.apply(q, k, v, call)
    return (out, lse) if return_lse else out


def shard_sequence(x: Tensor, dim: int, group=None, *, layout: str = "contiguous") -> Tensor:
    """This rank's shard of the full sequence ``x`` along ``dim`` (a view or a cat; differentiable).

    ``x`` is the same full tensor on every rank, e.g. ``(B, H, L, D)`` with ``dim=2`` or
    ``(B, L, d_model)`` with ``dim=1``. ``L`` must split into ``P`` (contiguous) or ``2P``
    (zigzag) equal chunks.

    Example:
        >>> import torch, torch.distributed as dist
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> shard_sequence(torch.arange(4)[None], 1, layout="zigzag")
        tensor([[0, 1, 2, 3]])
        >>> dist.destroy_process_group()
    """
    group = _check_group("shard_sequence", group)
    lay = Layout(_check_layout("shard_sequence", layout), dist.get_world_size(group))
    n = x.shape[dim]
    if n % lay.n_chunks:
        up = -(-n // lay.n_chunks) * lay.n_chunks
        raise ValueError(
            f"shard_sequence(): x has length {n} along dim {dim}, which does not split into {lay.n_chunks} equal "
            f"chunks ({lay.world} ranks, layout={layout!r}); pad the sequence to a multiple of {lay.n_chunks} "
            f"(e.g. {up}) and mask the padding with masks.padding(lengths)"
        )
    chunks = x.chunk(lay.n_chunks, dim)  # n_chunks x (..., L / n_chunks, ...)
    mine = [chunks[i] for i in lay.chunks(dist.get_rank(group))]
    return mine[0] if len(mine) == 1 else torch.cat(mine, dim)  # (..., L / P, ...)


def gather_sequence(x: Tensor, dim: int, group=None, *, layout: str = "contiguous") -> Tensor:
    """The full sequence from every rank's shard ``x`` along ``dim`` (inverse of :func:`shard_sequence`).

    A collective: call it on every rank. The result has no autograd history (it is meant for
    evaluation and tests; compute losses on the shards).

    Example:
        >>> import torch, torch.distributed as dist
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> gather_sequence(torch.arange(4)[None], 1)
        tensor([[0, 1, 2, 3]])
        >>> dist.destroy_process_group()
    """
    group = _check_group("gather_sequence", group)
    lay = Layout(_check_layout("gather_sequence", layout), dist.get_world_size(group))
    if lay.name == "zigzag" and x.shape[dim] % 2:
        raise ValueError(
            f"gather_sequence(): a zigzag shard holds two equal chunks, so its length along dim {dim} must be "
            f"even, got {x.shape[dim]}"
        )
    parts = [torch.empty_like(x) for _ in range(lay.world)]
    dist.all_gather(parts, x.detach().contiguous(), group=group)  # P x (..., L / P, ...)
    chunks: dict[int, Tensor] = {}  # global chunk index -> its piece
    for rank, part in enumerate(parts):
        for i, piece in zip(lay.chunks(rank), part.chunk(len(lay.chunks(rank)), dim), strict=True):
            chunks[i] = piece
    return torch.cat([chunks[i] for i in range(lay.n_chunks)], dim)  # (..., L, ...)


# ---------------------------------------------------------------------- validation
def _check_group(fn: str, group):
    """The group to use (None = the world), or a RuntimeError/ValueError that says what to do."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            f"{fn}(): torch.distributed is not initialized; call torch.distributed.init_process_group(...) in "
            "every process first (e.g. backend='gloo' on CPU, 'nccl' on GPU; torchrun sets init_method='env://'), "
            "then pass group= a process group to use a subgroup (default: all ranks)"
        )
    if group is not None and dist.get_rank(group) < 0:
        raise ValueError(
            f"{fn}(): this process (global rank {dist.get_rank()}) is not a member of the given group; "
            "call it only on the group's ranks, or pass group=None for all ranks"
        )
    return group


def _check_layout(fn: str, layout) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"{fn}(): layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


def _check_inputs(q, k, v, mask, scale, layout) -> Mask | None:
    """Local checks (the dispatcher's, renamed) and the mask; returns the mask as a Mask or None."""
    validate("ring_attention", q, k, v, scale=scale)
    _check_layout("ring_attention", layout)
    if layout == "zigzag" and (q.shape[2] % 2 or k.shape[2] % 2):
        raise ValueError(
            f"ring_attention(): layout='zigzag' needs an even local length (two equal chunks per rank), got "
            f"q length {q.shape[2]} and k length {k.shape[2]}; pad the sequence to a multiple of 2P"
        )
    mask = as_mask(mask, "ring_attention(): mask")
    B, H = q.shape[:2]
    if mask is not None and mask.batch_size() not in (None, 1, B):
        raise ValueError(f"ring_attention(): mask {mask!r} is built for batch size {mask.batch_size()} but q has B={B}")
    if mask is not None and mask.num_heads() not in (None, 1, H):
        raise ValueError(f"ring_attention(): mask {mask!r} is built for {mask.num_heads()} heads but q has H={H}")
    return mask


def _check_ranks_agree(q: Tensor, k: Tensor, v: Tensor, layout: str, ring: Ring) -> None:
    """Every rank must hold shards of the same shapes (else the ring would hang); one small all_gather."""
    if ring.world == 1:
        return
    mine = torch.tensor([*q.shape, *k.shape, v.shape[3], LAYOUTS.index(layout)], device=q.device)  # (10,)
    every = [torch.empty_like(mine) for _ in range(ring.world)]
    dist.all_gather(every, mine, group=ring.group)
    if all(torch.equal(t, mine) for t in every):
        return
    desc = "; ".join(
        f"rank {r}: q {tuple(t[:4].tolist())}, k {tuple(t[4:8].tolist())}, layout={LAYOUTS[int(t[9])]!r}"
        for r, t in enumerate(every)
    )
    raise ValueError(
        f"ring_attention(): every rank must hold shards of the same shape with the same layout, got {desc}; "
        "shard with shard_sequence() — pad the sequence to a multiple of P (2P for zigzag) and mask the "
        "padding with masks.padding(lengths)"
    )
