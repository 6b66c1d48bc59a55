# Ran against /tmp/perf/base/src = commit 055baa9 (old) and this branch at commit 740cca9 (new: BACKWARD_BANDS on).
"""Old (main at 055baa9: block-by-block backward at 128x128) vs new (banded backward at 64x64) tiled attention,
sliding window 256, B=1 H=8 D=64 fp32, forward+backward, interleaved in one process; wall time (perf_counter),
median and min of N runs each. Also times forward alone and the matmul rate. Usage: bandbw.py THREADS L [L ...]"""
import json, statistics, sys, time, torch
threads = int(sys.argv[1]); Ls = [int(x) for x in sys.argv[2:]]
torch.set_num_threads(threads)
def load(path):
    for m in [m for m in sys.modules if m.startswith("attnkit")]: del sys.modules[m]
    sys.path.insert(0, path); import attnkit.functional, attnkit.masks
    sys.path.pop(0); return attnkit.functional.attention, attnkit.masks.sliding_window
impls = {"old": load("/tmp/perf/base/src"), "new": load("/work/wt/perf/src")}
a = torch.randn(2048, 2048); b = torch.randn(2048, 2048); a @ b
mm = []
for _ in range(5):
    t0 = time.perf_counter(); a @ b; mm.append(2 * 2048**3 / (time.perf_counter() - t0) / 1e9)
rate = max(mm)
out = {"threads": threads, "matmul_gflops": rate, "cases": []}
for L in Ls:
    q, k, v = (torch.randn(1, 8, L, 64, requires_grad=True) for _ in range(3)); do = torch.randn(1, 8, L, 64)
    pairs = sum(min(i + 1, 256) for i in range(L)) * 8
    for pas in ("fwd", "fwdbwd"):
        fns = {}
        for tag, (att, sw) in impls.items():
            m = sw(256)
            if pas == "fwd":
                def f(att=att, m=m):
                    with torch.no_grad(): att(q, k, v, m, backend="tiled")
            else:
                def f(att=att, m=m): att(q, k, v, m, backend="tiled").backward(do)
            f(); fns[tag] = f
        times = {t: [] for t in fns}
        n = 9 if L <= 4096 else 5
        for _ in range(n):
            for t, f in fns.items():
                t0 = time.perf_counter(); f(); times[t].append((time.perf_counter() - t0) * 1e3)
        flops = 4 * pairs * 64 * (3.5 if pas == "fwdbwd" else 1)
        row = {"L": L, "pass": pas}
        for t in fns:
            med = statistics.median(times[t])
            row[t] = {"median_ms": med, "min_ms": min(times[t]), "max_ms": max(times[t]), "runs": n,
                      "gflops": flops / med / 1e6, "pct_mm": 100 * flops / med / 1e6 / rate}
        row["old_over_new"] = row["old"]["median_ms"] / row["new"]["median_ms"]
        out["cases"].append(row)
        print(json.dumps(row), flush=True)
print(json.dumps(out))
