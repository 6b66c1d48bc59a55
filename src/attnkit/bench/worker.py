"""One benchmark measurement in a fresh process: JSON request on stdin, JSON result on stdout.

``python -m attnkit.bench.worker`` reads one request and prints one result, so
each case gets its own address space and its peak memory is real. Requests:

* ``{"mode": "case", "case": {...}}`` — a :class:`~attnkit.bench.cases.Case`;
* ``{"mode": "matmul", "shapes": [...], "threads": 2}`` — this machine's best
  float32 matmul rate over those GEMM shapes (:func:`matmul_shapes`), the
  ceiling for "% of matmul" (:func:`measure_matmul` says why the best run);
* ``{"mode": "batch", "requests": [...]}`` — several requests in this one
  process, in order, each result printed as a line as soon as it is known,
  then ``{"status": "ok", "done": N}`` (``attnkit bench --quick``: one torch
  import instead of one per case; see :func:`attnkit.bench.runner.iter_batch`);
* ``{"mode": "overhead", "threads": 2, "quick": false}`` — the dispatch
  overhead suite (:mod:`attnkit.bench.overhead`);
* ``{"mode": "models", "threads": 2, "quick": false}`` — published models vs
  ``transformers`` (:mod:`attnkit.bench.models`).

What a case measures, in order:

0. run a tiny copy of the case (not for compiled implementations), so that
   library code, thread pools and autograd are already resident;
1. switch the allocator to exact mode (:func:`~attnkit.bench.measure.exact_allocator`)
   and allocate the inputs (``q, k, v`` or ``x``; ``dout`` for forward + backward);
2. **baseline** = RSS now, with the peak mark reset to it;
3. build the implementation (masks, module, ``torch.compile`` wrapper): ``setup_s``;
4. first call: ``first_s`` (for FlexAttention it includes compilation;
   ``compile_s = first_s - median``);
5. ``state_mib`` = RSS now minus baseline: what stays allocated (masks,
   weights, gradients, compiled code); reset the peak mark;
6. one more call: ``peak_mib`` = peak RSS during it minus the baseline, i.e.
   what the implementation holds plus what one call allocates at its worst,
   beyond its inputs. One-off transients of setup and compilation are excluded;
7. switch the allocator to its fast steady state, warm up once more if calls
   are short, and time (:func:`~attnkit.bench.measure.time_runs`): ``median_ms``.

With ``case.once`` (``attnkit bench --once``, for long L where one call takes
seconds to minutes) steps 4-7 shrink to one call that is both timed and
memory-measured, right after the build (a compiled implementation first gets
one compiling call, reported as ``compile_s``); ``runs`` is then 1. The
allocator stays in exact mode for it: every large tensor is a fresh ``mmap``
whose page faults cost about 0.25 ms per MiB. A first call also pays for what
is done once per shape (kernel primitives, the first page faults), measured at
up to ~0.2 s; so when that call took under ``ONCE_MIN_S`` it becomes the first
call of the usual procedure (steps 5-7) instead.

Anything a library prints goes to stderr; stdout carries only the result.
A failure inside the case becomes ``{"status": "error", "error": "..."}``.

Example:
    >>> import json, subprocess, sys
    >>> req = {"mode": "case", "case": Case("sdpa", "none", 16, "fwd", H=1, D=8, repeats=3).to_json()}
    >>> out = subprocess.run([sys.executable, "-m", "attnkit.bench.worker"], input=json.dumps(req),
    ...                      capture_output=True, text=True, check=True).stdout
    >>> json.loads(out)["status"]
    'ok'
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import sys
import time
import traceback

import torch

from .cases import Case
from .impls import Inputs, implementations
from .measure import (
    exact_allocator,
    fast_allocator,
    median,
    peak_rss_bytes,
    reset_peak,
    rss_bytes,
    time_runs,
    trim,
)

__all__ = ["run_request", "run_case", "measure_matmul", "matmul_shapes", "main"]

MiB = 1 << 20
ONCE_MIN_S = 3.0  #: with ``case.once``, a call shorter than this (seconds) is measured the usual way


def make_inputs(case: Case, kind: str) -> Inputs:
    """Random float32 inputs for the case; they require grad for forward + backward."""
    torch.manual_seed(case.seed)
    grad = case.pass_ == "fwdbwd"
    if kind == "module":
        x_shape = (case.B, case.L, case.H * case.D)  # (B, L, d_model)
        x = torch.randn(x_shape, requires_grad=grad)
        return Inputs(x=x, dout=torch.randn(x_shape) if grad else None)
    qkv_shape = (case.B, case.H, case.L, case.D)  # (B, H, L, D)
    q, k, v = (torch.randn(qkv_shape, requires_grad=grad) for _ in range(3))
    return Inputs(q=q, k=k, v=v, dout=torch.randn(qkv_shape) if grad else None)


def _step(fn, inputs: Inputs, pass_: str):
    """One timed unit: a forward without autograd, or a forward and a backward."""
    if pass_ == "fwd":

        def forward():
            with torch.no_grad():
                return fn()

        return forward

    def forward_backward():  # gradients accumulate in place after the first call: no reallocation
        out = fn()
        out.backward(inputs.dout)
        return out

    return forward_backward


def _warm_runtime(case: Case, impl) -> None:
    """Run a tiny copy of the case first, so that code pages, thread pools and autograd
    are resident before the baseline and do not count as the case's memory."""
    tiny = dataclasses.replace(case, L=min(case.L, 64), B=1 if case.mask != "padding" else case.B)
    inputs = make_inputs(tiny, impl.kind)
    step = _step(impl.build(tiny, inputs), inputs, tiny.pass_)
    step(), step()
    del inputs, step


def run_case(case: Case) -> dict:
    """Measure one case in this process (see the module docstring for what each number means)."""
    torch.set_num_threads(case.threads)
    impl = implementations()[case.impl]
    if not impl.compiled:
        _warm_runtime(case, impl)
    exact = exact_allocator()
    inputs = make_inputs(case, impl.kind)
    base, hwm_reset = _settle()

    t0 = time.perf_counter()
    step = _step(impl.build(case, inputs), inputs, case.pass_)
    setup_s = time.perf_counter() - t0
    measure = _measure_once if case.once else _measure_repeated
    times, first_s, finite, state, peak = measure(step, case, impl, base)
    med = median(times)
    result = {
        "status": "ok",
        "median_ms": med * 1e3,
        "runs": len(times),
        "min_ms": min(times) * 1e3,
        "max_ms": max(times) * 1e3,
        "setup_s": setup_s,
        "first_s": first_s,
        "compile_s": max(0.0, first_s - med) if impl.compiled else None,
        "peak_mib": max(0, peak) / MiB,
        "state_mib": state / MiB,
        "baseline_mib": base / MiB,
        "hwm_reset": hwm_reset,
        "exact_allocator": exact,
        "output_finite": finite,
        "torch_threads": torch.get_num_threads(),
    }
    if case.impl == "attnkit-auto":
        result["runs_on"] = _auto_backend(case, inputs)
    return result


def _timed_call(step) -> tuple[float, bool]:
    """Seconds one call took, and whether its output was finite."""
    t0 = time.perf_counter()
    out = step()
    seconds = time.perf_counter() - t0
    return seconds, bool(torch.isfinite(out.detach()).all())


def _measure_repeated(step, case: Case, impl, base: int):
    """Steps 4-7 of the module docstring: first call, memory-measured call, timed runs."""
    first_s, finite = _timed_call(step)
    return _measure_after_first(step, case, base, first_s, finite)


def _measure_after_first(step, case: Case, base: int, first_s: float, finite: bool):
    """Steps 5-7: what stays allocated, the memory-measured call, then the timed runs."""
    state = _settle()[0] - base
    step()  # the memory-measured call (and the second warm-up)
    peak = peak_rss_bytes() - base
    fast_allocator()
    if first_s < 1.0:
        step()
    return time_runs(step, repeats=case.repeats, min_time=case.min_time), first_s, finite, state, peak


def _measure_once(step, case: Case, impl, base: int):
    """``case.once``: one call is timed and memory-measured (after a compiling call if compiled).

    A call shorter than ``ONCE_MIN_S`` is then measured the usual way: there, what a
    first call pays once (kernel primitives for new shapes, first page faults) would show.
    """
    compiling_s = _timed_call(step)[0] if impl.compiled else None
    _settle()  # the peak mark now starts from what the build (and compilation) left allocated
    seconds, finite = _timed_call(step)
    first_s = seconds if compiling_s is None else compiling_s
    if seconds < ONCE_MIN_S:
        return _measure_after_first(step, case, base, first_s, finite)
    peak = peak_rss_bytes() - base
    state = _settle()[0] - base
    return [seconds], first_s, finite, state, peak


def _settle() -> tuple[int, bool]:
    """Free what can be freed, reset the peak mark; return (RSS in bytes, whether the reset worked)."""
    gc.collect()
    trim()
    ok = reset_peak()
    return (rss_bytes() if ok else peak_rss_bytes()), ok


def _auto_backend(case: Case, inputs: Inputs) -> str:
    from ..functional import explain
    from .cases import MASKS

    return explain(*inputs.qkv(), MASKS[case.mask].build(case.B, case.L)).backend


def matmul_shapes(H: int = 8, D: int = 64, lengths=(1024,), max_bytes: int = 1 << 30) -> list[dict]:
    """The GEMMs the matmul rate is measured on: a square ``2048 x 2048`` ``mm`` and, per length L,
    the two batched GEMMs of attention itself — ``Q K^T`` ``(H, L, D) @ (H, D, L)`` and ``P V``
    ``(H, L, L) @ (H, L, D)`` — skipping those whose ``(H, L, L)`` float32 scores exceed ``max_bytes``.

    Example:
        >>> [s["name"] for s in matmul_shapes(H=2, D=8, lengths=(16,))]
        ['mm 2048', 'QK^T H=2 L=16 D=8', 'PV H=2 L=16 D=8']
    """
    shapes = [{"name": "mm 2048", "batch": 1, "m": 2048, "k": 2048, "n": 2048}]
    for L in sorted(set(lengths)):
        if H * L * L * 4 > max_bytes:
            continue
        shapes.append({"name": f"QK^T H={H} L={L} D={D}", "batch": H, "m": L, "k": D, "n": L})
        shapes.append({"name": f"PV H={H} L={L} D={D}", "batch": H, "m": L, "k": L, "n": D})
    return shapes


def measure_matmul(shapes: list[dict] | None = None, threads: int = 2, min_time: float = 1.0, n: int = 2048) -> dict:
    """This machine's float32 matmul rate in GFLOP/s: the **best** run over all ``shapes``.

    ``% mm`` must be a ceiling for attention: its useful FLOPs are exactly those of
    its two GEMMs, so no implementation can beat the GEMMs themselves run alone.
    A median of one brief square ``mm`` is not such a ceiling: on a shared machine
    it lands in a busy moment while a case lands in a quiet one (``--quick`` once
    showed 127 %), and a square GEMM is not the shape attention multiplies. So each
    shape (see :func:`matmul_shapes`; default: the square ``n x n`` only) is timed
    adaptively after a warm-up, the fastest run counts (the machine's best moment),
    and the rate is the maximum over shapes. The runner measures it before and after
    the cases and keeps the maximum of both.
    """
    torch.set_num_threads(threads)
    shapes = shapes or [{"name": f"mm {n}", "batch": 1, "m": n, "k": n, "n": n}]
    rows = []
    for s in shapes:
        a, b = torch.randn(s["batch"], s["m"], s["k"]), torch.randn(s["batch"], s["k"], s["n"])
        c = torch.empty(s["batch"], s["m"], s["n"])

        def step(a=a, b=b, c=c):
            return torch.bmm(a, b, out=c)  # (batch, m, k) @ (batch, k, n) -> (batch, m, n)

        step(), step()  # warm-up
        times = time_runs(step, min_time=min_time)
        flops = 2 * s["batch"] * s["m"] * s["k"] * s["n"]
        rows.append({**s, "runs": len(times), "best_ms": min(times) * 1e3, "median_ms": median(times) * 1e3,
                     "gflops": flops / min(times) / 1e9, "median_gflops": flops / median(times) / 1e9})  # fmt: skip
    best = max(rows, key=lambda r: r["gflops"])
    return {"status": "ok", "threads": threads, "gflops": best["gflops"], "best_shape": best["name"], "shapes": rows}


def run_request(request: dict) -> dict:
    """Dispatch a request by its ``mode``; errors become ``{"status": "error", ...}``."""
    try:
        mode = request.get("mode")
        if mode == "case":
            return run_case(Case.from_json(request["case"]))
        if mode == "matmul":
            return measure_matmul(request.get("shapes"), request.get("threads", 2), request.get("min_time", 1.0),
                                  request.get("n", 2048))  # fmt: skip
        if mode == "batch":  # several requests in this one process, one result line each (run_batch)
            return _run_batch(request["requests"])
        if mode == "overhead":
            from .overhead import measure_overhead

            return {"status": "ok", "rows": measure_overhead(request.get("threads", 2), request.get("quick", False))}
        if mode == "models":
            from .models import measure_models

            return {"status": "ok", "rows": measure_models(request.get("threads", 2), request.get("quick", False))}
        raise ValueError(f"worker: mode must be 'case', 'matmul', 'overhead' or 'models', got {mode!r}")
    except Exception as e:  # a failing case is a result, not a crash
        return {"status": "error", "error": _one_line(e), "traceback": traceback.format_exc()[-4000:]}


_RESULT_FD: int | None = None  # the real stdout, where batch mode streams its result lines


def _run_batch(requests: list[dict]) -> dict:
    """Run ``requests`` in order in this process, writing each result as a line as soon as it is known.

    An implementation that raises ``NotImplementedError`` gets its later cases of that pass
    skipped, as :func:`~attnkit.bench.runner.run_cases` does across processes.
    """
    unsupported: dict[tuple[str, str], str] = {}
    for request in requests:
        case = request.get("case") or {}
        key = (str(case.get("impl")), str(case.get("pass")))
        if request.get("mode") == "case" and key in unsupported:
            result = {"status": "skipped", "reason": f"{key[0]} failed earlier on {key[1]}: {unsupported[key]}"}
        else:
            result = run_request(request)
            if result.get("error", "").startswith("NotImplementedError"):
                unsupported[key] = result["error"]
            if request.get("mode") == "case" and result.get("status") == "ok":
                result["process"] = "shared"  # memory figures: see benchmarks/README.md (--quick)
        _write_line(_finite(result))
        gc.collect()
    return {"status": "ok", "done": len(requests)}


def _write_line(result: dict) -> None:
    line = (json.dumps(result, allow_nan=False) + "\n").encode()
    os.write(1 if _RESULT_FD is None else _RESULT_FD, line)


def _one_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    return f"{type(e).__name__}: {text}"[:500]


def _finite(obj):
    """Replace NaN/inf by None so the output is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def main() -> int:
    global _RESULT_FD
    result_fd = _RESULT_FD = os.dup(1)
    os.dup2(2, 1)  # library prints (Python or C) go to stderr; fd result_fd keeps the real stdout
    sys.stdout = sys.stderr
    try:
        request = json.loads(sys.stdin.read())
    except json.JSONDecodeError as e:
        request = {"mode": f"<unreadable request: {e}>"}
    result = _finite(run_request(request))
    _RESULT_FD = None
    with os.fdopen(result_fd, "w") as out:
        out.write(json.dumps(result, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
