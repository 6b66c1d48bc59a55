# Ran against an uncommitted state of this branch that had tiled.STACKED (one band stacked over every head); removed after this measurement.
"""Per-block loop (before) vs one stacked band (STACKED) for 8 packed documents, B=1 H=8 D=64 fp32,
attention(backend='auto') forward, interleaved in one process, wall time; usage: stacked.py THREADS L [L ...]"""
import json, statistics, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from attnkit import masks
from attnkit.bench.cases import document_ids
from attnkit.functional import attention
import attnkit.functional.tiled as T
for L in [int(x) for x in sys.argv[2:]]:
    q, k, v = (torch.randn(1, 8, L, 64) for _ in range(3))
    m = masks.document(document_ids(L))
    times = {False: [], True: []}
    for _ in range(21):
        for flag in times:
            T.STACKED = flag
            t0 = time.perf_counter(); attention(q, k, v, m); times[flag].append((time.perf_counter() - t0) * 1e3)
    T.STACKED = True
    row = {"L": L, "threads": torch.get_num_threads(), **{("stacked" if f else "per-block"): {"median_ms": statistics.median(t), "min_ms": min(t)} for f, t in times.items()}}
    print(json.dumps(row), flush=True)
