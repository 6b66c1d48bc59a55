r"""Short sliding windows through torch's fused CPU kernel: the tiled forward pass where bands do not pay.

A sliding window is shift-invariant: query block ``i`` of ``tq`` rows sees the keys of one
window of ``w`` positions starting ``tq`` further than block ``i - 1``'s, under the same
``tq x w`` mask. Where the sequence is too short for the tiled loop's bands (:mod:`._bands`:
fewer blocks than twice the (batch row, head) pairs), the tiled loop runs block by block,
a dozen eager ops per 128 rows. Here instead the windows of the interior blocks are one
strided view ``(B*H, m, w, D)`` of K (and V), and one call of torch's fused CPU
FlashAttention kernel (``aten._scaled_dot_product_flash_attention_for_cpu``, the kernel
behind SDPA on CPU) computes all of them as ``m`` "heads" of ``tq`` queries under that one
``(tq, w)`` mask of ``0 / -inf``. The few edge blocks whose windows reach past either end
of the sequence take one more call per side, on zero-padded keys with a mask per block.
A causal window has no front edge: its first ``W`` rows see every key up to their own, so
they are one call of plain causal attention over the first ``W`` keys (the *ramp*: no
mask, and the kernel skips the keys after each of its blocks), and the blocks start at row
``W``. At L=512, window 256, the ramp took the time from 3.46-4.12 ms to 2.62-2.72
(compiled FlexAttention 1.78-1.80; three rounds of fresh processes, old, new and Flex in
turn, medians of 100 calls); at L=1024 from 5.42-8.09 to 4.88-5.82 (Flex 3.99-4.33). Of
the 2.2 ms left at L=512, the ramp's call takes 0.78 (causal 256 x 256, ~87 GFLOP/s) and
the interior blocks' 1.08 (~139 GFLOP/s; 1.02 without the mask).
The kernel returns the output and the log-sum-exp; the backward pass stays the tiled one
(the fused backward op over overlapping windows measured 1.2-1.5x slower than the tiled
backward pass at L=4096-16384).

Every row sees its own key (``Lq == Lk``), so no row is fully masked. Blocks of 32 rows
(``TQ``) waste ``(32 - 1) / 256`` of a window of 256 on its ragged edge. Measured (B=1,
H=8, D=64, window 256, float32, 2 threads, best of two medians of 40 calls in one process,
compiled FlexAttention in the same process), ms:

=====  =====  ======  ======  ======  ==============
L      Flex   tq=16   tq=32   tq=64   block by block
=====  =====  ======  ======  ======  ==============
512    1.67   2.60    2.43    2.64    2.43
1024   3.85   4.90    4.58    4.95    5.43
1536   6.06   6.33    6.28    6.40    6.42
=====  =====  ======  ======  ======  ==============

From about L=1536 (H=8) the tiled loop's bands run instead (they tie with Flex from 2048
and are faster than this path at 8192: 33 vs 45 ms). One call over all blocks, on padded K
and V with a ``(m, tq, w)`` mask, measured 1.2x slower at L=1024: the larger mask is
read for every score.

Example:
    >>> import torch
    >>> from attnkit import masks
    >>> plan = plan_windows(masks.sliding_window(256), B=1, H=8, Hkv=8, Lq=1024, Lk=1024, D=64, Dv=64,
    ...                     dtype=torch.float32, device=torch.device("cpu"))
    >>> plan.tq, plan.w, plan.before, plan.after  # windows of 287 keys: 255 before a block of 32
    (32, 287, 255, 0)
    >>> q = k = v = torch.randn(1, 8, 1024, 64)
    >>> out, lse = windows_forward(q, k, v, plan, scale=64**-0.5)
    >>> ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, masks.sliding_window(256).to_dense(1024, 1024))
    >>> bool((out - ref).abs().max() < 1e-5)
    True

Shape legend: B batch, H heads, L = Lq = Lk, D head dim, m blocks of ``tq`` queries,
w keys of a window, N = B * H.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import masks as _masks
from ..masks import Mask
from ._bands import as_penalty
from ._segments import fused_kernel

__all__ = ["Windows", "plan_windows", "windows_forward", "TQ", "MAX_LENGTH"]

TQ = 32  # queries per block (see the table above)
MAX_LENGTH = 16384  # longer sequences always have enough blocks for bands
_DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class Windows:
    """A sliding window of ``W`` keys planned as ``m`` blocks of ``tq`` queries over windows of ``w`` keys."""

    W: int  # window of the mask
    causal: bool  # keys i - W < j <= i (else |i - j| < W)
    tq: int  # queries per block
    w: int  # keys per block's window
    before: int  # keys of a block's window before its first query
    after: int  # keys of a block's window after its last query

    def allowed(self, device) -> Tensor:
        """``(tq, w)``: whether row ``r`` of any block may see key ``j`` of its window (shift invariance)."""
        r = torch.arange(self.tq, device=device)[:, None]  # (tq, 1) row in the block
        j = torch.arange(self.w, device=device)[None, :]  # (1, w) key in the window
        offset = j - self.before - r  # (tq, w) key position minus query position
        return (offset <= 0) & (offset > -self.W) if self.causal else offset.abs() < self.W

    def penalty(self, r0: int, m: int, L: int, dtype: torch.dtype, device) -> Tensor:
        """``(m, tq, w)`` of ``0 / -inf`` for the ``m`` blocks from row ``r0``, whose windows may reach
        past either end of the sequence (those keys are padding: ``-inf``)."""
        j = torch.arange(self.w, device=device)[None, :]  # (1, w)
        key = r0 + torch.arange(m, device=device)[:, None] * self.tq + j - self.before  # (m, w) position
        keep = self.allowed(device)[None] & ((key >= 0) & (key < L))[:, None, :]  # (m, tq, w)
        return as_penalty(keep, dtype)


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
    if Lq != Lk or Lk > MAX_LENGTH or H != Hkv or D != Dv or 0 in (B, H, Lk):
        return None
    if torch.compiler.is_compiling() or not _kernel_takes_mask():
        return None
    W, causal = int(mask.window), bool(mask.is_causal)
    if W >= Lk:
        return None  # every key is in every window: nothing for windows to skip
    before, after = W - 1, (0 if causal else W - 1)
    return Windows(W, causal, TQ, TQ + before + after, before, after)


@functools.cache
def _kernel_takes_mask() -> bool:
    """Whether this torch has the fused op and it takes ``attn_mask`` (older versions do not); read once."""
    kernel = fused_kernel()
    return kernel is not None and "attn_mask" in str(kernel._schema)


def windows_forward(q: Tensor, k: Tensor, v: Tensor, plan: Windows, scale: float) -> tuple[Tensor, Tensor]:
    """``(out (B, H, L, Dv), lse (B, H, L))`` of the sliding window planned as ``plan``.

    A causal window's first ``W`` rows see every key up to their own (``i - W < 0 <= j``):
    they are one call of plain causal attention over the first ``W`` keys (the *ramp*), and
    the blocks start after it. The interior blocks (windows inside ``[0, L)``) are one fused
    call on views of K and V under one ``(tq, w)`` mask for all of them; the few edge blocks
    whose windows reach past either end are one more call each side, on a zero-padded copy
    of their keys with a mask per block. (One call for all blocks on padded K and V with a
    ``(m, tq, w)`` mask measured 1.2x slower at L=1024: the large mask is read for every
    score.)
    """
    B, H, L, D = q.shape
    N, tq, Dv = B * H, plan.tq, v.shape[3]
    qf, kf, vf = q.reshape(N, L, D), k.reshape(N, L, D), v.reshape(N, L, Dv)  # views of contiguous inputs
    out, lse = q.new_empty(N, L, Dv), q.new_empty(N, L)
    kernel = fused_kernel()
    origin = _ramp(kernel, qf, kf, vf, out, lse, plan, scale) if plan.causal else 0  # the first row in blocks
    m = math.ceil((L - origin) / tq)  # blocks of tq rows from origin
    i0 = min(m, math.ceil(max(0, plan.before - origin) / tq))  # blocks before i0 see keys before position 0
    i1 = max(i0, min((L - origin - plan.w + plan.before) // tq, (L - origin) // tq - 1) + 1)  # from i1: past L
    if i1 > i0:
        r0, k0 = origin + i0 * tq, origin + i0 * tq - plan.before  # first row and key of block i0
        queries = qf[:, r0 : origin + i1 * tq].unflatten(1, (i1 - i0, tq))  # (N, m', tq, D), a view
        keys = kf[:, k0:].unfold(1, plan.w, tq)[:, : i1 - i0].transpose(2, 3)  # (N, m', w, D), a view
        values = vf[:, k0:].unfold(1, plan.w, tq)[:, : i1 - i0].transpose(2, 3)  # (N, m', w, Dv), a view
        penalty = as_penalty(plan.allowed(q.device), q.dtype)  # (tq, w), the same for every block
        o, row_lse = kernel(queries, keys, values, 0.0, False, attn_mask=penalty, scale=scale)
        out[:, r0 : origin + i1 * tq] = o.flatten(1, 2)  # (N, m', tq, Dv) -> (N, m'*tq, Dv)
        lse[:, r0 : origin + i1 * tq] = row_lse.flatten(1, 2)  # (N, m', tq) -> (N, m'*tq)
    for a, b in ((0, i0), (i1, m)):
        if b > a:
            _edge(kernel, qf, kf, vf, out, lse, plan, (origin, a, b), scale)
    return out.view(B, H, L, Dv), lse.view(B, H, L)


def _ramp(kernel, qf, kf, vf, out, lse, plan: Windows, scale: float) -> int:
    """A causal window's first ``W`` rows into ``out (N, L, Dv)``, ``lse (N, L)``: they see every key up to
    their own, so they are plain causal attention over the first ``W`` keys, one call without a mask (the
    kernel skips the keys after each block of rows). Returns ``W``, the first row left to the blocks."""
    R = plan.W  # < L (plan_windows)
    o, row_lse = kernel(*(t[:, None, :R] for t in (qf, kf, vf)), 0.0, True, scale=scale)  # (N, 1, R, X) views
    out[:, :R] = o[:, 0]  # (N, 1, R, Dv) -> (N, R, Dv)
    lse[:, :R] = row_lse[:, 0]  # (N, 1, R) -> (N, R)
    return R


def _edge(kernel, qf, kf, vf, out, lse, plan: Windows, blocks: tuple[int, int, int], scale: float) -> None:
    """Blocks ``a .. b-1`` of the blocks from row ``origin`` (``blocks = (origin, a, b)``) into ``out (N, L,
    Dv)``, ``lse (N, L)``: padded keys, a mask per block."""
    N, L, D = qf.shape
    origin, a, b = blocks
    tq, m = plan.tq, b - a
    r0, r1 = origin + a * tq, min(L, origin + b * tq)  # their query rows
    k0, k1 = r0 - plan.before, origin + (b - 1) * tq - plan.before + plan.w  # the keys their windows span
    queries = _padded(qf[:, r0:r1], 0, m * tq - (r1 - r0)).view(N, m, tq, D)  # (N, m, tq, D)
    lo, hi = max(0, k0), min(L, k1)  # the real keys among them
    keys = _padded(kf[:, lo:hi], lo - k0, k1 - hi).unfold(1, plan.w, tq).transpose(2, 3)  # (N, m, w, D)
    values = _padded(vf[:, lo:hi], lo - k0, k1 - hi).unfold(1, plan.w, tq).transpose(2, 3)  # (N, m, w, Dv)
    penalty = plan.penalty(r0, m, L, qf.dtype, qf.device)[None]  # (1, m, tq, w)
    o, row_lse = kernel(queries, keys, values, 0.0, False, attn_mask=penalty, scale=scale)
    out[:, r0:r1] = o.flatten(1, 2)[:, : r1 - r0]  # (N, m, tq, Dv) -> (N, m*tq, Dv) -> the real rows
    lse[:, r0:r1] = row_lse.flatten(1, 2)[:, : r1 - r0]  # (N, m, tq) -> (N, m*tq) -> the real rows


def _padded(t: Tensor, front: int, back: int) -> Tensor:
    """``t (N, n, X)`` with ``front`` and ``back`` zero rows added along n."""
    return t if front == back == 0 else torch.nn.functional.pad(t, (0, 0, front, back))  # (N, front + n + back, X)
