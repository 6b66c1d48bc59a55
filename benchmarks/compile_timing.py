"""Eager cost of the tiled backend's planning, and torch.compile of attention(), for benchmarks/results/compile.

Run it on two source trees to compare them (the report's "before" is the branch point of the compile work):

    PYTHONPATH=/path/to/old/src python benchmarks/compile_timing.py eager --label before --out results.json
    PYTHONPATH=src python benchmarks/compile_timing.py eager --label after --out results.json
    PYTHONPATH=src python benchmarks/compile_timing.py compile --label after --out results.json

Each run appends one record to ``--out`` (written atomically). One torch thread, best of N.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from attnkit import masks
from attnkit.functional import attention
from attnkit.functional.tiled import TiledCall


def best_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def eager() -> list[dict]:
    """Plan time and forward time of the tiled backend (B=2, H=8, D=64, fp32)."""
    cases = [("causal", masks.causal(), 2048), ("sliding(256)", masks.sliding_window(256), 4096),
             ("prefix_lm(64) | sliding(512)", masks.prefix_lm(64) | masks.sliding_window(512), 2048),
             ("padding (tensor)", masks.padding(torch.tensor([2048, 1500])), 2048),
             ("causal", masks.causal(), 64), ("sliding(16)", masks.sliding_window(16), 64)]  # fmt: skip
    rows = []
    for name, mask, L in cases:
        q, k, v = (torch.randn(2, 8, L, 64) for _ in range(3))
        small = L <= 64
        rows.append({
            "mask": name, "L": L,
            "plan_ms": best_ms(lambda: TiledCall.build(q, k, mask), 50 if small else 20),  # noqa: B023
            "forward_ms": best_ms(lambda: attention(q, k, v, mask, backend="tiled"), 50 if small else 5),  # noqa: B023
        })  # fmt: skip
    return rows


def compiled() -> list[dict]:
    """torch.compile(fullgraph=True) of attention() with a sliding window (auto runs tiled here)."""
    import torch._inductor.config
    from torch._dynamo.utils import counters

    rows = []
    for L, window in ((1024, 256),):
        q, k, v = (torch.randn(1, 8, L, 64) for _ in range(3))
        mask = masks.sliding_window(window)
        torch._dynamo.reset()
        counters.clear()
        with torch._inductor.config.patch(compile_threads=1):
            fn = torch.compile(lambda q, k, v: attention(q, k, v, mask), fullgraph=True)  # noqa: B023
            start = time.perf_counter()
            out = fn(q, k, v)
            first = time.perf_counter() - start
        rows.append({
            "mask": f"sliding({window})", "L": L, "backend": "auto (tiled)", "compile_and_first_call_s": first,
            "graph_breaks": sum(counters["graph_break"].values()),
            "max_abs_diff": (out - attention(q, k, v, mask)).abs().max().item(),
            "eager_ms": best_ms(lambda: attention(q, k, v, mask), 5),  # noqa: B023
            "compiled_ms": best_ms(lambda: fn(q, k, v), 5),  # noqa: B023
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["eager", "compile"])
    parser.add_argument("--label", required=True, help="before | after")
    parser.add_argument("--out", type=Path, required=True, help="JSON file the record is appended to")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = eager() if args.what == "eager" else compiled()
    records = json.loads(args.out.read_text()) if args.out.is_file() else []
    records.append({"what": args.what, "label": args.label, "torch": torch.__version__,
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows})  # fmt: skip
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, prefix=f".{args.out.name}.tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(records, f, indent=2)
    os.replace(tmp, args.out)
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
