"""Ring attention plumbing: where each rank's tokens sit, which ring steps to skip, the ring itself.

Used by :mod:`attnkit.distributed.ring`; nothing here does attention math.

**Layouts.** ``P`` ranks share a sequence of global length ``L``; each holds ``n = L / P``
positions. ``"contiguous"`` gives rank ``r`` the positions ``[r*n, (r+1)*n)``.
``"zigzag"`` cuts the sequence into ``2P`` chunks of ``c = n / 2`` and gives rank ``r``
chunks ``r`` and ``2P-1-r`` (the load balancing of Llama 3's context parallelism,
Dubey et al., 2024)::

    L = 8, P = 2      position  0 1 2 3 4 5 6 7
    contiguous        rank      0 0 0 0 1 1 1 1
    zigzag            rank      0 0 1 1 1 1 0 0

Under a causal mask, contiguous rank ``r`` has ``r + 1`` non-empty blocks out of ``P``
(the last rank does ``P`` times the work of the first); with zigzag every rank does
the same work, half of every off-diagonal block.

**Step plans.** At ring step ``s`` rank ``r`` visits the K/V block of rank ``(r - s) mod P``.
The mask is classified once, on the global grid of layout chunks
(:meth:`~attnkit.masks.Mask.classify_tiles`, closed form for the structured masks): a
step whose chunks are all EMPTY is skipped (no matmul), one whose chunks are all FULL
runs with no mask, and the rest get a :class:`GlobalView` of the mask, which maps the
local indices of the block to global positions.

Shape legend: B batch, H heads, Lq/Lk global lengths, lq/lk local (per-rank) lengths,
nc number of layout chunks (P or 2P).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from .._tensors import as_4d
from ..masks import EMPTY, FULL, Mask

__all__ = ["LAYOUTS", "Layout", "GlobalView", "Step", "plan_steps", "Ring", "Pending"]

LAYOUTS = ("contiguous", "zigzag")  #: accepted values of layout=


@dataclass(frozen=True)
class Layout:
    """How a sequence is split over ``world`` ranks (see the module docstring)."""

    name: str  # "contiguous" or "zigzag"
    world: int  # number of ranks P

    @property
    def n_chunks(self) -> int:
        """Equal chunks the global sequence is cut into: P (contiguous) or 2P (zigzag)."""
        return self.world * (2 if self.name == "zigzag" else 1)

    def chunks(self, rank: int) -> tuple[int, ...]:
        """The chunks rank ``rank`` holds, in the order they are stored locally."""
        return (rank,) if self.name == "contiguous" else (rank, 2 * self.world - 1 - rank)

    def positions(self, rank: int, n_local: int, device=None) -> Tensor:
        """Global positions ``(n_local,)`` of the local tokens of ``rank``."""
        c = n_local // len(self.chunks(rank))
        return torch.cat([torch.arange(i * c, (i + 1) * c, device=device) for i in self.chunks(rank)])  # (n_local,)


class GlobalView(Mask):
    """``mask`` seen by one (query shard, key shard) pair: local indices become global positions.

    ``q_pos (lq,)`` and ``k_pos (lk,)`` are the global positions of the local queries and
    keys; ``Lq``/``Lk`` the global lengths, so bottom-right alignment, document ids and
    padding lengths all refer to the whole sequence.

    Example:
        >>> from attnkit import masks
        >>> view = GlobalView(masks.causal(), torch.arange(2, 4), torch.arange(0, 2), 4, 4)
        >>> view.to_dense(2, 2)[0, 0].int()  # queries 2, 3 see keys 0, 1
        tensor([[1, 1],
                [1, 1]], dtype=torch.int32)
    """

    def __init__(self, mask: Mask, q_pos: Tensor, k_pos: Tensor, Lq: int, Lk: int):
        self.mask, self.q_pos, self.k_pos, self.Lq, self.Lk = mask, q_pos, k_pos, Lq, Lk

    def evaluate(self, q_idx, k_idx, Lq, Lk):
        return self.mask.evaluate(self.q_pos[q_idx], self.k_pos[k_idx], self.Lq, self.Lk)  # (tq, 1), (1, tk)

    def batch_size(self):
        return self.mask.batch_size()

    def num_heads(self):
        return self.mask.num_heads()

    def _device(self, device):
        return self.q_pos.device if device is None else device

    def __repr__(self):
        return f"GlobalView({self.mask!r}, Lq={self.Lq}, Lk={self.Lk})"


@dataclass(frozen=True)
class Step:
    """One ring step of one rank."""

    src: int  # rank whose K/V block is visited
    visit: bool  # False: the mask leaves the whole block EMPTY, nothing is computed
    mask: Mask | None  # mask for the block in local indices; None when every pair may attend


def plan_steps(mask: Mask | None, layout: Layout, rank: int, lq: int, lk: int, device=None) -> tuple[Step, ...]:
    """The ``P`` steps of ``rank``, with EMPTY blocks skipped and FULL blocks unmasked.

    Raises ValueError (from the mask, with a hint) when the mask does not describe the
    global sequence of ``Lq = P * lq`` queries and ``Lk = P * lk`` keys.
    """
    P = layout.world
    Lq, Lk = P * lq, P * lk
    sources = [(rank - s) % P for s in range(P)]  # step s visits the block of rank - s
    if mask is None:
        return tuple(Step(src, True, None) for src in sources)
    codes = _chunk_codes(mask, layout, Lq, Lk, device)  # (Bm, Hm, nc, nc)
    q_pos = layout.positions(rank, lq, device)  # (lq,)
    steps = []
    for src in sources:
        tile = codes[:, :, list(layout.chunks(rank))][:, :, :, list(layout.chunks(src))]  # (Bm, Hm, 1|2, 1|2)
        if bool((tile == EMPTY).all()):
            steps.append(Step(src, False, None))
        elif bool((tile == FULL).all()):
            steps.append(Step(src, True, None))
        else:
            steps.append(Step(src, True, GlobalView(mask, q_pos, layout.positions(src, lk, device), Lq, Lk)))
    return tuple(steps)


def _chunk_codes(mask: Mask, layout: Layout, Lq: int, Lk: int, device) -> Tensor:
    """EMPTY/PARTIAL/FULL of every (query chunk, key chunk) pair of the global grid: ``(Bm, Hm, nc, nc)``."""
    nc = layout.n_chunks
    try:
        codes = mask.classify_tiles(Lq, Lk, Lq // nc, Lk // nc, device=device)
    except ValueError as e:
        raise ValueError(
            f"ring_attention(): the mask must describe the whole sequence (Lq={Lq} queries, Lk={Lk} keys over "
            f"{layout.world} ranks), not one rank's shard; every rank passes the same global mask. The mask said: {e}"
        ) from None
    return as_4d(codes).cpu()  # -> (Bm, Hm, nc, nc)


# ---------------------------------------------------------------------- the ring
@dataclass
class Pending:
    """A tensor on its way from the previous rank; :meth:`wait` returns it."""

    works: list  # the isend/irecv requests (empty on a ring of one)
    sent: Tensor  # kept alive until the send completes
    received: Tensor  # filled when the requests complete

    def wait(self) -> Tensor:
        for w in self.works:
            w.wait()
        return self.received


class Ring:
    """The ranks of a process group in a ring: send to ``rank + 1``, receive from ``rank - 1``."""

    def __init__(self, group=None):
        self.group = group
        self.rank = dist.get_rank(group)  # rank within the group
        self.world = dist.get_world_size(group)
        self.next = self._global((self.rank + 1) % self.world)
        self.prev = self._global((self.rank - 1) % self.world)

    def _global(self, group_rank: int) -> int:
        return group_rank if self.group is None else dist.get_global_rank(self.group, group_rank)

    def shift(self, t: Tensor, tag: int) -> Pending:
        """Start sending ``t`` to the next rank and receiving the previous rank's tensor (same shape).

        Every rank must call :meth:`shift` in the same order with the same tags. On a ring of
        one the "received" tensor is ``t`` itself.
        """
        if self.world == 1:
            return Pending([], t, t)
        t = t.contiguous()
        received = torch.empty_like(t)
        works = [
            dist.isend(t, self.next, group=self.group, tag=tag),
            dist.irecv(received, self.prev, group=self.group, tag=tag),
        ]
        return Pending(works, t, received)
