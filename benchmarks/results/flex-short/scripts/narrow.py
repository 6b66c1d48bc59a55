# Ran against commit aeaef61 of this branch (tiled.NARROW_FORWARD); removed in 740cca9 after this measurement.
"""128x128 (before) vs 64x64 (NARROW_FORWARD) forward plans of the tiled backend, sliding window 256,
B=1 H=8 D=64 fp32, interleaved in one process, wall time; usage: narrow.py THREADS L [L ...]"""
import json, statistics, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from attnkit import masks
import attnkit.functional.tiled as T
for L in [int(x) for x in sys.argv[2:]]:
    q, k, v = (torch.randn(1, 8, L, 64) for _ in range(3))
    calls = {}
    for narrow in (False, True):
        T.NARROW_FORWARD = narrow; T._PLANS.clear()
        calls["64x64" if narrow else "128x128"] = T.TiledCall.build(q, k, masks.sliding_window(256))
    T.NARROW_FORWARD = True
    times = {c: [] for c in calls}
    for _ in range(15):
        for c, call in calls.items():
            t0 = time.perf_counter(); T.tiled_forward(q, k, v, call); times[c].append((time.perf_counter() - t0) * 1e3)
    row = {"L": L, "threads": torch.get_num_threads(), **{c: {"median_ms": statistics.median(t), "min_ms": min(t)} for c, t in times.items()},
           "block_q": {c: call.plan.block_q for c, call in calls.items()}}
    print(json.dumps(row), flush=True)
