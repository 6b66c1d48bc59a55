"""Plan a grid of cases, run each in its own worker process, derive the report's numbers.

:func:`plan` turns filters into cases and decides up front which cannot run
(the implementation refuses, or the memory estimate exceeds the budget).
:func:`run_worker` starts ``python -m attnkit.bench.worker`` for one request;
a crash, a kill by the out-of-memory killer or a timeout becomes a result with
a reason, never an exception. :func:`derive` adds useful GFLOP/s, the fraction
of the machine's matmul rate and the ratio to torch SDPA.

Example:
    >>> cases = plan(["sdpa"], ["causal"], [65536], ["fwd"], max_bytes=16 * GiB)
    >>> [(c.impl, c.L, reason) for c, reason in cases]
    [('sdpa', 65536, None)]
    >>> plan(["naive"], ["none"], [65536], ["fwd"], max_bytes=16 * GiB)[0][1][:11]
    'would need '
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import IO

from .cases import MASKS, PASSES, Case, GiB, useful_flops  # noqa: F401  (GiB: the docstring example uses it)
from .impls import implementations, skip_reason

__all__ = ["plan", "run_worker", "iter_batch", "run_cases", "matmul_ceiling", "derive", "case_key", "load_resumable",
           "merge_results", "BASELINE_IMPL"]  # fmt: skip

BASELINE_IMPL = "sdpa"  #: ratios are to torch SDPA on the same mask, length and pass


def plan(
    impls: Iterable[str],
    masks: Iterable[str],
    lengths: Iterable[int],
    passes: Iterable[str],
    *,
    max_bytes: int,
    **case_fields,
) -> list[tuple[Case, str | None]]:
    """Every (case, skip reason or None), shortest lengths first so early results come fast."""
    registry = implementations()
    impls, masks, passes = list(impls), list(masks), list(passes)
    out = []
    for L in sorted(set(lengths)):
        for pass_ in [p for p in PASSES if p in passes]:
            for mask in [m for m in MASKS if m in masks]:
                for name in impls:
                    case = Case(impl=name, mask=mask, L=L, pass_=pass_, **case_fields)
                    out.append((case, skip_reason(case, registry[name], max_bytes)))
    return out


def case_key(result: dict) -> tuple:
    """What makes two results the same measurement: implementation, mask, shape, pass, threads."""
    return tuple(result[k] for k in ("impl", "mask", "L", "pass", "B", "H", "D", "threads"))


def load_resumable(path: Path, config: dict) -> tuple[list[dict], list[str]]:
    """Grid results of an earlier run, and the commands that made them.

    Skipped rows are returned too (the report keeps their reasons), but only the
    others count as done: a case skipped before is planned again.
    Raises ``ValueError`` when ``path`` is not a results.json of ``attnkit bench`` or was
    measured with another B, H, D or thread count.
    """
    if not path.exists():
        return [], []
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not JSON ({e}); expected the results.json an earlier --out wrote") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("grid", []), list):
        raise ValueError(f"{path} has no grid results list; expected the results.json an earlier --out wrote")
    earlier = doc.get("config") or {}
    for name in ("B", "H", "D", "threads"):
        theirs = earlier.get(name, (doc.get("machine") or {}).get(name))
        if theirs is not None and theirs != config[name]:
            raise ValueError(f"{path} was measured with {name}={theirs}, this run has {name}={config[name]}; "
                             "use another --out DIR")  # fmt: skip
    commands = list(earlier.get("earlier", [])) + ([earlier["command"]] if earlier.get("command") else [])
    return list(doc.get("grid", [])), commands


def merge_results(kept: list[dict], new: list[dict]) -> list[dict]:
    """Earlier and new results in grid order (L, pass, mask, implementation); a new result wins a tie."""
    by_key = {case_key(r): r for r in kept}
    by_key.update({case_key(r): r for r in new})
    impl_order = {name: i for i, name in enumerate(implementations())}
    mask_order = {name: i for i, name in enumerate(MASKS)}

    def order(r: dict) -> tuple:
        return (r["L"], PASSES.index(r["pass"]), mask_order.get(r["mask"], 99), impl_order.get(r["impl"], 99))

    return sorted(by_key.values(), key=order)


def run_worker(request: dict, *, threads: int = 2, timeout: float | None = None) -> dict:
    """Run one worker request in a fresh Python process; always returns a dict with a ``status``."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "attnkit.bench.worker"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "error": f"no result after {timeout:g} s (--timeout); the worker was killed"}
    if proc.returncode != 0:
        return {"status": "error", "error": _describe_exit(proc.returncode, proc.stderr)}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {"status": "error", "error": f"worker printed no JSON result; stderr ends: {_tail(proc.stderr)}"}


def _describe_exit(code: int, stderr: str) -> str:
    if code == -signal.SIGKILL:
        return "worker was killed (SIGKILL), most likely by the out-of-memory killer; lower --max-memory"
    if code < 0:
        return f"worker died of signal {signal.Signals(-code).name}; stderr ends: {_tail(stderr)}"
    return f"worker exited with code {code}; stderr ends: {_tail(stderr)}"


def _tail(text: str, n: int = 300) -> str:
    text = " ".join(text.strip().split())
    return text[-n:] if text else "(empty)"


def iter_batch(
    requests: list[dict], *, threads: int = 2, timeout: float | None = None
) -> Generator[dict, None, None]:
    """Run ``requests`` in ONE worker process; yield each result as soon as the worker prints it.

    Saves a process start (and torch import, ~3 s) per request. ``timeout`` is per
    request; a worker that dies or overruns yields an error result for each request
    it did not finish, so exactly ``len(requests)`` results come out.
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.Popen([sys.executable, "-m", "attnkit.bench.worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None  # all three are pipes
    lines: queue.Queue[str | None] = queue.Queue()
    err_tail: list[str] = []

    def pump(stream: IO[str], put: Callable[[str], object], end: bool) -> None:
        for line in stream:
            put(line)
        if end:
            lines.put(None)

    threading.Thread(target=pump, args=(proc.stdout, lines.put, True), daemon=True).start()
    threading.Thread(target=pump, args=(proc.stderr, err_tail.append, False), daemon=True).start()
    proc.stdin.write(json.dumps({"mode": "batch", "requests": requests}))
    proc.stdin.close()
    done = 0
    failure: dict[str, str] = {}
    try:
        while done < len(requests):
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                proc.kill()
                failure = {"status": "timeout",
                           "error": f"no result after {timeout:g} s (--timeout); the worker was killed"}  # fmt: skip
                break
            if line is None:  # the worker ended early
                code = proc.wait()
                failure = {"status": "error", "error": _describe_exit(code, "".join(err_tail[-50:]))}
                break
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue  # not a result line
            done += 1
            yield result
        for _ in range(len(requests) - done):
            yield dict(failure)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def run_cases(
    planned: list[tuple[Case, str | None]],
    *,
    timeout: float | None = None,
    on_start: Callable[[Case], None] | None = None,
    on_result: Callable[[dict], None] | None = None,
    earlier: Iterable[dict] = (),
    shared: bool = False,
    matmul: dict | None = None,
    on_matmul: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run every planned case that is not skipped; one result dict per case (skipped ones included).

    When an implementation raises ``NotImplementedError`` (FlexAttention's backward
    on CPU), its remaining cases of that pass are skipped with that message.

    ``on_start(case)`` is called before and ``on_result(result)`` after each case
    (progress bars, partial files). ``earlier`` results (``--resume``) count as seen.

    ``shared=False``: each case in its own worker process (peak memory is the case's
    alone). ``shared=True`` (``--quick``): all cases in one worker process, in order
    (see :func:`iter_batch`); rows say ``"process": "shared"``.

    ``matmul``: a matmul request measured before AND after the cases (in the shared
    process too), each result passed to ``on_matmul``; the caller keeps the maximum.
    """
    results = []
    unsupported: dict[tuple[str, str], str] = {  # (impl, pass) -> "NotImplementedError: ..." seen earlier
        (r["impl"], r["pass"]): r["error"] for r in earlier if r.get("error", "").startswith("NotImplementedError")
    }
    planned = [(c, reason if reason is not None or (c.impl, c.pass_) not in unsupported
                else f"{c.impl} failed earlier on {c.pass_}: {unsupported[c.impl, c.pass_]}")
               for c, reason in planned]  # fmt: skip
    threads = next((c.threads for c, _ in planned), 2)
    brackets = [matmul] if matmul else []
    requests = [{"mode": "case", "case": c.to_json()} for c, reason in planned if reason is None] if shared else []
    stream = iter_batch(brackets + requests + brackets, threads=threads, timeout=timeout) if shared else None

    def measure(request: dict) -> dict:
        return next(stream) if stream is not None else run_worker(request, threads=threads, timeout=timeout)

    def mm() -> None:
        result = measure(brackets[0])
        if on_matmul is not None:
            on_matmul(result)

    if brackets:
        mm()
    for case, reason in planned:
        if on_start is not None:
            on_start(case)
        if reason is None and (case.impl, case.pass_) in unsupported:
            reason = f"{case.impl} failed earlier on {case.pass_}: {unsupported[case.impl, case.pass_]}"
            if stream is not None:
                next(stream)  # the worker skipped it too (same rule); drop its line
        if reason is not None:
            result = {"status": "skipped", "reason": reason}
        else:
            result = measure({"mode": "case", "case": case.to_json()})
            if result.get("error", "").startswith("NotImplementedError"):  # will not work at other sizes either
                unsupported[case.impl, case.pass_] = result["error"]
        result = {**case.to_json(), **result}
        results.append(result)
        if on_result is not None:
            on_result(result)
    if brackets:
        mm()
    if stream is not None:
        stream.close()
    return results


def matmul_ceiling(measurements: Iterable[dict | None]) -> dict:
    """The ``matmul`` entry of a report: the highest rate over several measurements (before and after the cases).

    Each measurement is already the best run over its shapes (``worker.measure_matmul``);
    the maximum over the measurements takes the machine's quietest moment, so that
    ``% mm`` of a case timed in that moment stays <= 100.

    Example:
        >>> matmul_ceiling([{"status": "ok", "gflops": 150.0}, {"status": "ok", "gflops": 180.0}])["gflops"]
        180.0
        >>> matmul_ceiling([{"status": "error", "error": "boom"}])["gflops"] is None
        True
    """
    runs = [m for m in measurements if m]
    ok = [m for m in runs if m.get("status") == "ok" and m.get("gflops")]
    entry: dict = {"gflops": max(m["gflops"] for m in ok) if ok else None, "measurements": runs}
    if ok:
        best = max(ok, key=lambda m: m["gflops"])
        entry["best_shape"] = best.get("best_shape")
    else:
        entry["error"] = next((m.get("error") for m in runs if m.get("error")), "no measurement")
    return entry


def derive(results: list[dict], matmul_gflops: float | None) -> list[dict]:
    """Add ``flops``, ``gflops``, ``pct_matmul`` and ``ratio_sdpa`` to each successful result."""
    baseline = {
        (r["mask"], r["L"], r["pass"], r["B"], r["H"], r["D"]): r["median_ms"]
        for r in results
        if r["impl"] == BASELINE_IMPL and r.get("status") == "ok"
    }
    out = []
    for r in results:
        r = dict(r)
        fields = {k: r[k] for k in _CASE_KEYS if k in r}  # rows of older runs (--resume) lack newer fields
        r["flops"] = useful_flops(Case.from_json(fields))
        if r.get("status") == "ok" and r.get("median_ms"):
            r["gflops"] = r["flops"] / (r["median_ms"] * 1e-3) / 1e9
            if r.get("min_ms") is not None and r.get("max_ms") is not None:
                r["spread_ms"] = [r["min_ms"], r["max_ms"]]  # min-max over the timed runs
            r["pct_matmul"] = 100.0 * r["gflops"] / matmul_gflops if matmul_gflops else None
            ref = baseline.get((r["mask"], r["L"], r["pass"], r["B"], r["H"], r["D"]))
            r["ratio_sdpa"] = r["median_ms"] / ref if ref else None
        out.append(r)
    return out


_CASE_KEYS = tuple(Case("sdpa", "none", 1, "fwd").to_json())  # the fields of a Case, as in its JSON
