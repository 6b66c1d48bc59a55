"""Time and peak memory of attention vs sequence length, with fitted log-log slopes (a measurement script).

    python benchmarks/attention_scaling.py [--out benchmarks/results/cost] [--rounds 2] [--resume]
    python benchmarks/attention_scaling.py --report-only      # rewrite report.md and plot.png from results.json

Four implementations, forward pass, B=1, H=8, D=64, float32, one thread, through
``attnkit bench``'s worker (each case in a fresh process, so its peak memory is its own):

* ``naive`` — softmax(QK^T/sqrt(d))V with the L x L matrix materialized;
* ``sdpa`` — torch's scaled_dot_product_attention (fused kernel on CPU);
* ``attnkit-tiled`` — attnkit's tiled FlashAttention-2 backend;
* ``attnkit-tiled`` with the ``sliding`` mask (window 256): restricted self-attention.

Cases run interleaved (round by round, each length in turn, the implementations in a
rotating order), so that the load of a shared machine falls on all of them alike;
``results.json`` is rewritten atomically after each case and ``--resume`` skips cases
already measured. Each case runs ``attnkit.bench.worker.run_case`` in a child process
whose timing loop also records the process's **CPU time** per call: on a machine shared
by other jobs (load average 4-12 on 2 cores while this was written) wall time grows with
the load, CPU time of a one-thread process much less, so slopes are fitted on CPU time
(wall time is kept beside it). Slopes are least-squares fits of log(CPU time) and
log(peak memory) on log(L) over L >= 1024, beside "Attention Is All You Need", table 1:
self-attention O(n^2 d) per layer, restricted self-attention O(r n d). A peak of O(L) memory
also holds a constant (the allocator, torch's buffers), which flattens its slope at short L;
``memory_increment_slope`` fits what each doubling of L adds instead, ``peak(L) - peak(L/2)``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from attnkit.bench.cases import Case
from attnkit.bench.report import machine_info
from attnkit.checkpoint import write_atomic

SERIES = {  # label -> (impl, mask, lengths)
    "naive (L x L materialized)": ("naive", "none", [256, 512, 1024, 2048, 4096]),
    "torch SDPA": ("sdpa", "none", [256, 512, 1024, 2048, 4096, 8192]),
    "attnkit tiled": ("attnkit-tiled", "none", [256, 512, 1024, 2048, 4096, 8192]),
    "tiled, sliding window 256": ("attnkit-tiled", "sliding", [256, 512, 1024, 2048, 4096, 8192, 16384, 32768]),
}
FIT_FROM = 1024  #: slopes are fitted over L >= this
TABLE1 = {"naive (L x L materialized)": 2, "torch SDPA": 2, "attnkit tiled": 2, "tiled, sliding window 256": 1}


def planned(rounds: int) -> list[tuple[int, str, int]]:
    """(round, series, L) in interleaved order: per round, per length, the series in a rotating order."""
    labels = list(SERIES)
    lengths = sorted({L for _, _, ls in SERIES.values() for L in ls})
    out = []
    for r in range(rounds):
        for i, L in enumerate(lengths):
            turn = labels[(r + i) % len(labels):] + labels[:(r + i) % len(labels)]
            out += [(r, label, L) for label in turn if L in SERIES[label][2]]
    return out


CHILD = r"""
import json, statistics, sys, time
import attnkit.bench.worker as worker
from attnkit.bench.cases import Case

cpu = []
wall_runs = worker.time_runs


def time_runs(fn, **kwargs):  # the worker's timing loop, each call's CPU time recorded too
    def timed():
        c0 = time.process_time()
        out = fn()
        cpu.append(time.process_time() - c0)
        return out
    return wall_runs(timed, **kwargs)


worker.time_runs = time_runs
result = worker.run_case(Case.from_json(json.loads(sys.argv[1])))
result["cpu_median_ms"] = statistics.median(cpu) * 1e3
print(json.dumps(result))
"""


def run_child(case: Case, threads: int, timeout: float = 900) -> dict:
    """One case in a fresh process (its own peak memory): the worker's result plus ``cpu_median_ms``."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(case.to_json())], capture_output=True,
                              text=True, timeout=timeout, env=env)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "error": f"no result after {timeout:g} s"}
    if proc.returncode != 0:
        return {"status": "error", "error": proc.stderr.strip()[-500:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(out: Path, rounds: int, threads: int, resume: bool) -> dict:
    path = out / "results.json"
    doc = json.loads(path.read_text()) if resume and path.exists() else {}
    doc.setdefault("machine", machine_info(threads))
    doc.setdefault("command", " ".join(["python benchmarks/attention_scaling.py", *sys.argv[1:]]))
    doc.setdefault("started", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    rows = doc.setdefault("rows", [])
    done = {(r["round"], r["series"], r["L"]) for r in rows}
    todo = [p for p in planned(rounds) if p not in done]
    for n, (r, label, L) in enumerate(todo, 1):
        impl, mask, _ = SERIES[label]
        repeats = 2 if L >= 4096 else None  # long calls: two timed runs (after a warm-up and a memory call)
        case = Case(impl, mask, L, "fwd", B=1, H=8, D=64, threads=threads, min_time=0.3, repeats=repeats)
        t0 = time.time()
        result = run_child(case, threads)
        rows.append({"round": r, "series": label, "L": L, "impl": impl, "mask": mask, **result,
                     "load": _loadavg(), "wall_s": time.time() - t0})  # fmt: skip
        nan = float("nan")
        print(f"[{n}/{len(todo)}] round {r} {label} L={L}: {result.get('status')} "
              f"cpu {result.get('cpu_median_ms', nan):.1f} ms, wall {result.get('median_ms', nan):.1f} ms, "
              f"peak {result.get('peak_mib', nan):.1f} MiB, load {rows[-1]['load']}", flush=True)  # fmt: skip
        doc["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        write_atomic(path, json.dumps(doc, indent=1))
    return doc


def _loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def summarize(doc: dict) -> dict:
    """Median over rounds per (series, L); ratios to SDPA per round; log-log slopes over L >= FIT_FROM."""
    ok = [r for r in doc["rows"] if r.get("status") == "ok"]
    table = {}
    for label, (_, _, lengths) in SERIES.items():
        points = []
        for L in lengths:
            mine = [r for r in ok if r["series"] == label and r["L"] == L]
            if not mine:
                continue
            ratios = [r["cpu_median_ms"] / s["cpu_median_ms"] for r in mine for s in ok
                      if s["series"] == "torch SDPA" and s["L"] == L and s["round"] == r["round"]]  # fmt: skip
            cpu = [r["cpu_median_ms"] for r in mine]
            points.append({"L": L, "ms": statistics.median(cpu), "ms_range": [min(cpu), max(cpu)],
                           "wall_ms": statistics.median(r["median_ms"] for r in mine),
                           "peak_mib": statistics.median(r["peak_mib"] for r in mine), "rounds": len(mine),
                           "ratio_sdpa": statistics.median(ratios) if ratios else None})  # fmt: skip
        fit = [p for p in points if p["L"] >= FIT_FROM]
        steps = [(b["L"], b["peak_mib"] - a["peak_mib"]) for a, b in zip(fit[:-1], fit[1:], strict=True)]
        table[label] = {"points": points, "time_slope": _slope([(p["L"], p["ms"]) for p in fit]),
                        "memory_slope": _slope([(p["L"], p["peak_mib"]) for p in fit]),
                        "memory_increment_slope": _slope(steps), "table1_exponent": TABLE1[label]}  # fmt: skip
    return table


def _slope(points: list[tuple[float, float]]) -> float | None:
    pts = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx, my = statistics.fmean(p[0] for p in pts), statistics.fmean(p[1] for p in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5.4))
    for label, s in summary.items():
        L = [p["L"] for p in s["points"]]
        for ax, key, slope in ((axes[0], "ms", "time_slope"), (axes[1], "peak_mib", "memory_slope")):
            fitted = f"{s[slope]:.2f}" if s[slope] is not None else "-"
            if key == "peak_mib" and s["memory_increment_slope"] is not None:
                fitted += f" (increments {s['memory_increment_slope']:.2f})"
            ax.plot(L, [p[key] for p in s["points"]], "o-", label=f"{label}: slope {fitted}")
    labels = ("forward CPU time per call (ms, median of rounds)", "peak memory beyond q, k, v (MiB)")
    for ax, ylabel in zip(axes, labels, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16))  # below: the curves fill the axes
    axes[0].set_title("time: table 1 says n^2 d (slope 2), restricted r n d (slope 1)", fontsize=9)
    axes[1].set_title("memory: L x L kept (slope 2) vs O(L) (slope 1)", fontsize=9)
    fig.suptitle("attention forward, B=1 H=8 D=64 fp32, 1 thread, shared 2-core CPU", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cost"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    if args.report_only:
        doc = json.loads(path.read_text())
    else:
        doc = measure(args.out, args.rounds, args.threads, args.resume)
    doc["summary"] = summarize(doc)
    write_atomic(path, json.dumps(doc, indent=1))
    plot(doc["summary"], args.out / "scaling.png")
    for label, s in doc["summary"].items():
        print(f"{label}: time slope {s['time_slope']:.2f}, memory slope {s['memory_slope']:.2f}, "
              f"increment slope {s['memory_increment_slope']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
