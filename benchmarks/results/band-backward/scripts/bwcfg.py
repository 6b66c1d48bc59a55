# Ran against this branch at commit 740cca9 (backward bands on by default there); needs tiled._work_items(grp, call, plan).
"""Backward pass only, sliding window 256, B=1 H=8 D=64 fp32: 64x64 bands (this branch), 128x128 block by
block (before), 128x128 bands; interleaved, wall time; usage: bwcfg.py THREADS L [L ...]"""
import json, statistics, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from attnkit import masks
import attnkit.functional.tiled as T
orig = T._work_items
NO_BANDS = [False]
def patched(grp, call, plan=None):
    return list(grp.blocks) if NO_BANDS[0] else orig(grp, call, plan)
T._work_items = patched
for L in [int(x) for x in sys.argv[2:]]:
    q, k, v = (torch.randn(1, 8, L, 64) for _ in range(3)); do = torch.randn(1, 8, L, 64)
    m = masks.sliding_window(256)
    cfgs = {"64 bands": (T.TiledCall.build(q, k, m), False), "128 blocks": (T.TiledCall.build(q, k, m, block_q=128, block_k=128), True),
            "128 bands": (T.TiledCall.build(q, k, m, block_q=128, block_k=128), False)}
    outs = {c: T.tiled_forward(q, k, v, call) for c, (call, _) in cfgs.items()}
    times = {c: [] for c in cfgs}
    for _ in range(5 if L > 4096 else 9):
        for c, (call, nob) in cfgs.items():
            NO_BANDS[0] = nob
            t0 = time.perf_counter(); T.tiled_backward(do, q, k, v, *outs[c], call); times[c].append((time.perf_counter() - t0) * 1e3)
            NO_BANDS[0] = False
    print(json.dumps({"L": L, **{c: round(statistics.median(t), 1) for c, t in times.items()}}), flush=True)
