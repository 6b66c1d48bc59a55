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
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterable

from .cases import GiB, MASKS, PASSES, Case, useful_flops
from .impls import implementations, skip_reason

__all__ = ["plan", "run_worker", "run_cases", "derive", "case_key", "load_resumable", "merge_results", "BASELINE_IMPL"]

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


def run_cases(
    planned: list[tuple[Case, str | None]],
    *,
    timeout: float | None = None,
    on_start: Callable[[Case], None] | None = None,
    on_result: Callable[[dict], None] | None = None,
    earlier: Iterable[dict] = (),
) -> list[dict]:
    """Run every planned case that is not skipped; one result dict per case (skipped ones included).

    When an implementation raises ``NotImplementedError`` (FlexAttention's backward
    on CPU), its remaining cases of that pass are skipped with that message.

    ``on_start(case)`` is called before and ``on_result(result)`` after each case
    (progress bars, partial files). ``earlier`` results (``--resume``) count as seen.
    """
    results = []
    unsupported: dict[tuple[str, str], str] = {  # (impl, pass) -> "NotImplementedError: ..." seen earlier
        (r["impl"], r["pass"]): r["error"] for r in earlier if r.get("error", "").startswith("NotImplementedError")
    }
    for case, reason in planned:
        if on_start is not None:
            on_start(case)
        if reason is None and (case.impl, case.pass_) in unsupported:
            reason = f"{case.impl} failed earlier on {case.pass_}: {unsupported[case.impl, case.pass_]}"
        if reason is not None:
            result = {"status": "skipped", "reason": reason}
        else:
            result = run_worker({"mode": "case", "case": case.to_json()}, threads=case.threads, timeout=timeout)
            if result.get("error", "").startswith("NotImplementedError"):  # will not work at other sizes either
                unsupported[case.impl, case.pass_] = result["error"]
        result = {**case.to_json(), **result}
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


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
            r["pct_matmul"] = 100.0 * r["gflops"] / matmul_gflops if matmul_gflops else None
            ref = baseline.get((r["mask"], r["L"], r["pass"], r["B"], r["H"], r["D"]))
            r["ratio_sdpa"] = r["median_ms"] / ref if ref else None
        out.append(r)
    return out


_CASE_KEYS = tuple(Case("sdpa", "none", 1, "fwd").to_json())  # the fields of a Case, as in its JSON
