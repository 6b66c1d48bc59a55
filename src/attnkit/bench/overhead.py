"""The ``overhead`` suite: what ``attention(backend="auto")`` costs over calling torch SDPA directly.

Both sides compute the same thing on the same tensors (no mask, or causal via
``is_causal``), so any difference is attnkit's validation and dispatch. Two
sizes (project issue 2, point 10):

* ``B=1, H=8, L=4096, D=64`` — a real workload; target ratio <= 1.05;
* ``B=1, H=1, L=16, D=16`` — a few microseconds of math, where Python-level
  overhead shows; target ratio <= 2.

Microseconds matter here, so this suite runs in one process: calls are timed
in batches (enough calls per batch to last ~5 ms), batches of attnkit and of
SDPA alternate so drift hits both alike, and the median per-call time of the
batches is reported.

Example:
    >>> rows = measure_overhead(threads=1, quick=True, sizes=[("tiny", 1, 1, 16, 16, 2.0)], masks=("none",))
    >>> sorted(rows[0])[:3], rows[0]["ratio"] > 0
    (['attnkit_us', 'calls', 'mask'], True)
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .. import masks as _masks
from ..functional import attention
from .measure import median

__all__ = ["SIZES", "measure_overhead"]

SIZES: list[tuple[str, int, int, int, int, float]] = [
    ("large", 1, 8, 4096, 64, 1.05),  # (name, B, H, L, D, target ratio)
    ("tiny", 1, 1, 16, 16, 2.0),
]
BATCH_SECONDS = 0.005  #: target duration of one timed batch of calls


def _calls_per_batch(fn) -> int:
    """Enough calls that one batch lasts about BATCH_SECONDS (at least 1); warms ``fn`` up first."""
    fn()  # the first call pays one-off costs (lazy init, caches)
    n, per_call = 1, 0.0
    while n <= 64:  # time 1, 2, 4, ... calls until the sample takes ~1 ms
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        per_call = (time.perf_counter() - t0) / n
        if per_call * n > 1e-3:
            break
        n *= 2
    return max(1, int(BATCH_SECONDS / max(per_call, 1e-9)))


def _batch_time(fn, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def _compare(name: str, B: int, H: int, L: int, D: int, target: float, mask: str, quick: bool) -> dict:
    q, k, v = (torch.randn(B, H, L, D) for _ in range(3))  # (B, H, L, D)
    is_causal = mask == "causal"
    m = _masks.causal() if is_causal else None
    ours = lambda: attention(q, k, v, m)  # noqa: E731
    theirs = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)  # noqa: E731
    _calls_per_batch(ours)  # warm-up of the attnkit path
    calls = _calls_per_batch(theirs)
    batches = (3 if quick else 7) if calls == 1 else (10 if quick else 30)
    a, b = [], []
    for _ in range(batches):
        a.append(_batch_time(ours, calls))
        b.append(_batch_time(theirs, calls))
    ours_s, theirs_s = median(a), median(b)
    ratio = ours_s / theirs_s
    return {
        "size": f"B={B} H={H} L={L} D={D}",
        "name": name,
        "mask": mask,
        "attnkit_us": ours_s * 1e6,
        "sdpa_us": theirs_s * 1e6,
        "overhead_us": (ours_s - theirs_s) * 1e6,
        "ratio": ratio,
        "target": target,
        "ok": ratio <= target,
        "calls": calls * batches,
    }


def measure_overhead(
    threads: int = 2,
    quick: bool = False,
    sizes: list[tuple[str, int, int, int, int, float]] | None = None,
    masks: tuple[str, ...] = ("none", "causal"),
) -> list[dict]:
    """One row per (size, mask): per-call microseconds of attnkit and SDPA, their ratio and the target."""
    torch.set_num_threads(threads)
    rows = []
    with torch.no_grad():
        for size in SIZES if sizes is None else sizes:
            for mask in masks:
                rows.append(_compare(*size, mask=mask, quick=quick))
    return rows
