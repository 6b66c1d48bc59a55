# Ran with /tmp/perf/base/src = commit 055baa9 (before) and this branch at commit 24d6662 (after).
"""Before (commit 055baa9) vs after (this branch) for every mask and pass, backend auto and tiled,
B=1 H=8 D=64 fp32, 1 thread, CPU time of this thread (robust to other jobs), interleaved, median of 5.
Usage: regress1t.py L [L ...]"""
import json, statistics, sys, time, torch
torch.set_num_threads(1)
def load(path):
    for m in [m for m in sys.modules if m.startswith("attnkit")]: del sys.modules[m]
    sys.path.insert(0, path); import attnkit.functional, attnkit.masks, attnkit.bench.cases as cases
    sys.path.pop(0); return attnkit.functional.attention, attnkit.masks, cases
impls = {"before": load("/tmp/perf/base/src"), "after": load("/work/wt/perf/src")}
for L in [int(x) for x in sys.argv[1:]]:
    q, k, v = (torch.randn(1, 8, L, 64, requires_grad=True) for _ in range(3)); do = torch.randn(1, 8, L, 64)
    for mask in ("none", "causal", "sliding", "document", "padding"):
        for pas in ("fwd", "fwdbwd"):
            for backend in ("auto", "tiled"):
                fns = {}
                for tag, (att, M, cases) in impls.items():
                    m = {"none": None, "causal": M.causal(), "sliding": M.sliding_window(256),
                         "document": M.document(cases.document_ids(L)),
                         "padding": M.padding(torch.tensor(cases.padding_lengths(1, L)))}[mask]
                    if pas == "fwd":
                        def f(att=att, m=m):
                            with torch.no_grad(): att(q, k, v, m, backend=backend)
                    else:
                        def f(att=att, m=m): att(q, k, v, m, backend=backend).backward(do)
                    f(); fns[tag] = f
                t = {tag: [] for tag in fns}
                for _ in range(5):
                    for tag, f in fns.items():
                        c = time.thread_time(); f(); t[tag].append((time.thread_time() - c) * 1e3)
                b, a = statistics.median(t["before"]), statistics.median(t["after"])
                print(json.dumps({"L": L, "mask": mask, "pass": pas, "backend": backend, "before_ms": round(b, 2),
                                  "after_ms": round(a, 2), "after_over_before": round(a / b, 3)}), flush=True)
