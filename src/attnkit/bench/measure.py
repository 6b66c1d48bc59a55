"""Clocks and memory gauges used inside a worker process.

Memory (Linux): ``ru_maxrss`` from :func:`resource.getrusage` is the process's
peak resident set size (the high-water mark). Writing ``5`` to
``/proc/self/clear_refs`` resets that mark to the current RSS (Linux >= 4.0),
which lets a worker measure the peak of one phase rather than the peak since
``import torch``. :func:`reset_peak` says whether the reset worked; when it
did not, peaks include everything earlier in the process and are upper bounds.

The allocator: glibc's ``malloc`` keeps freed blocks below its (dynamic, up
to 32 MiB) mmap threshold for reuse, so RSS overstates what code needs at
small sizes. :func:`exact_allocator` fixes the threshold at 128 KiB (every
tensor gets its own mapping and is returned to the system when freed) for
the memory measurement; :func:`fast_allocator` then sets it to 32 MiB, the
steady state glibc reaches by itself, for timing. Both are no-ops off glibc.

Time: :func:`time_runs` is adaptive — at least ``min_runs`` calls and until
``min_time`` seconds have passed (capped at ``max_runs``) — or exactly
``repeats`` calls when given. Report the median: it ignores the odd slow run
caused by another process on a 2-core machine.

Example:
    >>> times = time_runs(lambda: sum(range(100)), repeats=5)
    >>> len(times)
    5
"""

from __future__ import annotations

import ctypes
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable

__all__ = [
    "rss_bytes",
    "peak_rss_bytes",
    "reset_peak",
    "exact_allocator",
    "fast_allocator",
    "trim",
    "time_runs",
    "median",
]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc malloc.h)


def _glibc():
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  # only glibc has it: AttributeError elsewhere
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _glibc()


def rss_bytes() -> int:
    """Current resident set size of this process, in bytes (the peak if /proc is unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """``ru_maxrss`` of this process in bytes (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def reset_peak() -> bool:
    """Reset the peak-RSS mark to the current RSS; True if the kernel allowed it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def exact_allocator() -> bool:
    """Make RSS follow live tensors (mmap threshold 128 KiB); True on glibc."""
    if _LIBC is None:
        return False
    ok = _LIBC.mallopt(_M_MMAP_THRESHOLD, 128 << 10) == 1
    trim()
    return ok


def fast_allocator() -> None:
    """Let glibc reuse freed blocks up to 32 MiB (its own steady state), for timing."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, 64 << 20)


def trim() -> None:
    """Return freed heap memory to the system (``malloc_trim(0)``), where possible."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def time_runs(
    fn: Callable[[], object],
    *,
    repeats: int | None = None,
    min_runs: int = 3,
    min_time: float = 1.0,
    max_runs: int = 100,
) -> list[float]:
    """Seconds taken by each call of ``fn``: exactly ``repeats`` calls, or adaptive (see module doc)."""
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if repeats is not None:
            if len(times) >= repeats:
                return times
        elif len(times) >= max_runs or (len(times) >= min_runs and time.perf_counter() - start >= min_time):
            return times


def median(values: list[float]) -> float:
    """The median (``statistics.median``), named here so callers read plainly."""
    return statistics.median(values)
