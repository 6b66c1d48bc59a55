r"""Short sliding windows through torch's fused CPU kernel: the tiled forward pass where bands do not pay.

A sliding window is shift-invariant: query block ``i`` of ``tq`` rows sees the keys of one
window of ``w`` positions starting ``tq`` further than block ``i - 1``'s, under the same
``tq x w`` mask. Where the sequence is too short for the tiled loop's bands (:mod:`._bands`:
fewer blocks than twice the (batch row, head) pairs), the tiled loop runs block by block,
a dozen eager ops per 128 rows. Here instead K and V are padded with ``W - 1`` zero rows
on each side (the padded keys are masked), so the windows of every block are one strided
view ``(B*H, m, w, D)``, and one call of torch's fused CPU FlashAttention kernel
(``aten._scaled_dot_product_flash_attention_for_cpu``, the kernel behind SDPA on CPU)
computes all blocks as ``m`` "heads" of ``tq`` queries, with the mask ``(m, tq, w)`` of
``0 / -inf`` (the window's tile plus the padding columns of the edge blocks). It returns
the output and the log-sum-exp; the backward pass stays the tiled one.

Every row sees its own key (``Lq == Lk``), so no row is fully masked. Blocks of 32 rows
(``TQ``) waste ``(32 - 1) / 256`` of a window of 256 on its ragged edge. Measured
(B=1, H=8, D=64, window 256, float32, 2 threads, medians of 30 calls in one process;
compiled FlexAttention in the same process): L=512 2.44 ms against 2.64 block by block
(Flex 1.69), L=1024 3.99 against 5.33 (Flex 3.82); at 2048 the bands already tie with
Flex (8.40, this path 8.19, Flex 8.30) and at 8192 they are faster (33 vs 45 ms), so
this path runs only where the bands do not.

Example:
    >>> import torch
    >>> from attnkit import masks
    >>> plan = plan_windows(masks.sliding_window(256), B=1, H=8, Hkv=8, Lq=1024, Lk=1024, D=64, Dv=64,
    ...                     dtype=torch.float32, device=torch.device("cpu"))
    >>> plan.tq, plan.w, plan.before, plan.after  # windows of 287 keys: 255 before a block of 32
    (32, 287, 255, 0)

Shape legend: B batch, H heads, L = Lq = Lk, D head dim, m blocks of ``tq`` queries,
w keys of a window, N = B * H.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import masks as _masks
from ..masks import Mask
from ._segments import fused_kernel

__all__ = ["Windows", "plan_windows", "windows_forward", "TQ", "MAX_LENGTH"]

TQ = 32  # queries per block: 1.05x faster than 64 at L=1024 (3.99 vs 4.18 ms), equal at 512
MAX_LENGTH = 16384  # the (m, tq, w) mask is L x w scores; longer sequences always take the bands
_DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class Windows:
    """A sliding window of ``W`` keys planned as ``m`` blocks of ``tq`` queries over windows of ``w`` keys."""

    W: int  # window of the mask
    causal: bool  # keys i - W < j <= i (else |i - j| < W)
    tq: int  # queries per block
    w: int  # keys per block's window
    before: int  # padded keys before position 0 (the first window starts there)
    after: int  # padded keys after the last position

    def penalty(self, L: int, m: int, dtype: torch.dtype, device) -> Tensor:
        """``(1, m, tq, w)``: ``0`` where block ``i``'s row ``r`` may see key ``j`` of its window, else ``-inf``."""
        r = torch.arange(self.tq, device=device)[:, None]  # (tq, 1) row in the block
        j = torch.arange(self.w, device=device)[None, :]  # (1, w) key in the window
        offset = j - self.before - r  # (tq, w) key position minus query position
        allowed = (offset <= 0) & (offset > -self.W) if self.causal else offset.abs() < self.W  # (tq, w)
        key = torch.arange(m, device=device)[:, None] * self.tq + j - self.before  # (m, w) key position
        real = (key >= 0) & (key < L)  # (m, w) not a padded key
        keep = allowed[None] & real[:, None, :]  # (m, tq, w)
        return torch.zeros(keep.shape, dtype=dtype, device=device).masked_fill_(~keep, float("-inf"))[None]


def plan_windows(mask: Mask | None, *, B: int, H: int, Hkv: int, Lq: int, Lk: int, D: int, Dv: int,
                 dtype: torch.dtype, device: torch.device) -> Windows | None:  # fmt: skip
    """The forward pass of a sliding window as one fused call, or None where it does not apply.

    Applies to ``masks.sliding_window`` (causal or not, narrower than the sequence) on CPU,
    float32/float64, ``Lq == Lk <= MAX_LENGTH``, as many key heads as query heads, ``Dv == D``,
    outside ``torch.compile``.
    Whether the bands would pay instead is the caller's choice (:class:`.tiled.TiledCall`).
    """
    if type(mask) is not _masks._SlidingWindow or device.type != "cpu" or dtype not in _DTYPES:
        return None
    if Lq != Lk or Lk == 0 or Lk > MAX_LENGTH or H != Hkv or D != Dv:
        return None
    if torch.compiler.is_compiling() or fused_kernel() is None:
        return None
    W, causal = int(mask.window), bool(mask.is_causal)
    if W >= Lk:
        return None  # every key is in every window: nothing for windows to skip
    before, after = W - 1, (0 if causal else W - 1)
    return Windows(W, causal, TQ, TQ + before + after, before, after)


def windows_forward(q: Tensor, k: Tensor, v: Tensor, plan: Windows, scale: float) -> tuple[Tensor, Tensor]:
    """``(out (B, H, L, Dv), lse (B, H, L))`` of the sliding window planned as ``plan``, in one fused call."""
    B, H, L, D = q.shape
    m = math.ceil(L / plan.tq)
    rows = m * plan.tq  # queries padded to whole blocks (the extra rows are dropped)
    N = B * H
    qp = _padded(q.reshape(N, L, D), 0, rows - L)  # (N, m*tq, D)
    keys = plan.before + rows + plan.after  # padded keys: every block's window lies inside
    kp = _padded(k.reshape(N, L, D), plan.before, keys - plan.before - L)  # (N, keys, D)
    vp = _padded(v.reshape(N, L, v.shape[3]), plan.before, keys - plan.before - L)  # (N, keys, Dv)
    windows_k = kp.unfold(1, plan.w, plan.tq).transpose(2, 3)  # (N, m, w, D), overlapping views
    windows_v = vp.unfold(1, plan.w, plan.tq).transpose(2, 3)  # (N, m, w, Dv)
    queries = qp.view(N, m, plan.tq, D)  # (N, m*tq, D) -> (N, m, tq, D)
    penalty = plan.penalty(L, m, q.dtype, q.device)  # (1, m, tq, w)
    o, lse = fused_kernel()(queries, windows_k, windows_v, 0.0, False, attn_mask=penalty, scale=scale)
    out = o.reshape(B, H, rows, -1)[:, :, :L]  # (N, m, tq, Dv) -> (B, H, m*tq, Dv) -> (B, H, L, Dv)
    return out.contiguous(), lse.reshape(B, H, rows)[:, :, :L].contiguous()  # (N, m, tq) -> (B, H, L)


def _padded(t: Tensor, front: int, back: int) -> Tensor:
    """``t (N, L, X)`` with ``front`` and ``back`` zero rows added along L (a copy, one pass)."""
    if front == 0 and back == 0:
        return t
    out = t.new_zeros(t.shape[0], front + t.shape[1] + back, t.shape[2])  # (N, front + L + back, X)
    out[:, front : front + t.shape[1]] = t
    return out
