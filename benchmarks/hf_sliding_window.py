"""Prefill of a Mistral-style sliding-window model inside transformers: attnkit vs sdpa vs eager.

    python benchmarks/hf_sliding_window.py --out benchmarks/results/hf [--resume] [--lengths 4096,8192,16384]

A tiny-width MistralModel (random weights, seeded; 2 layers, hidden 128, 4 query heads and
2 key/value heads of dim 32, sliding window 1024) runs one forward pass over L tokens
(batch 1, no cache, float32, no grad) with ``attn_implementation`` = ``attnkit``
(:mod:`attnkit.integrations.transformers`, backend ``auto``), ``sdpa`` and ``eager``. Each
(implementation, L) runs in a fresh process with one torch thread: one warm-up at L=256,
then ``--repeats`` timed passes (best wall time and its CPU time). Peak memory is the
process's high-water RSS during the timed passes above its RSS before them
(``/proc/self/clear_refs`` resets the mark). Eager keeps ``(B, H, L, L)`` float32 weights
plus transformers' float mask; cases whose estimate exceeds ``--eager-max-gib`` are not
run and say so. Results are appended to ``results.json`` (written atomically) after every
case; ``--resume`` skips the cases already there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MODEL = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "sliding_window": 1024, "vocab_size": 1000}  # fmt: skip

CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
from transformers import MistralConfig, MistralModel
from transformers import masking_utils as hf
from attnkit.integrations.transformers import register
from attnkit.functional import explain
register()
impl, L, repeats, model_kw = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
torch.manual_seed(0)
model = MistralModel(MistralConfig(**model_kw)).eval()
model.set_attn_implementation(impl)
ids = torch.randint(1, model_kw["vocab_size"], (1, L), generator=torch.Generator().manual_seed(1))

def rss_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])

with torch.no_grad():
    model(ids[:, :256])  # warm-up
    open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark (VmHWM)
    before = rss_kib("VmRSS:")
    best = None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        out = model(ids).last_hidden_state
        t = (time.perf_counter() - wall, time.process_time() - cpu)
        best = t if best is None or t[0] < best[0] else best
    peak = rss_kib("VmHWM:") - before
choice = None
if impl == "attnkit":  # what attnkit's dispatcher does with the mask the model hands it
    config = model.config
    mask = hf.create_sliding_window_causal_mask(config=config, inputs_embeds=torch.zeros(1, L, 1),
                                                attention_mask=None, cache=None).mask
    head_dim = model_kw["hidden_size"] // model_kw["num_attention_heads"]
    q = torch.zeros(1, model_kw["num_attention_heads"], L, head_dim)
    k = torch.zeros(1, model_kw["num_key_value_heads"], L, head_dim)
    e = explain(q, k, k, mask)
    choice = {"mask": repr(mask), "backend": e.backend, "why_not_sdpa": e.reasons.get("sdpa")}
print(json.dumps({"impl": impl, "L": L, "wall_s": best[0], "cpu_s": best[1], "peak_mib": peak / 1024,
                  "out_abs_mean": float(out.abs().mean()), "dispatch": choice}))
"""


def eager_gib(L: int) -> float:
    """Eager's large tensors at once: scores and softmax (1, H, L, L) float32 and the float mask (1, 1, L, L)."""
    H = MODEL["num_attention_heads"]
    return (2 * H + 1) * L * L * 4 / 2**30


def write_atomic(path: Path, data) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def report(out: Path) -> None:
    """``report.md`` (a table) and ``plot.png`` (CPU time and peak memory against L) from ``results.json``."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = json.loads((out / "results.json").read_text())["rows"]
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for impl in impls:
        ran = sorted((r for r in rows if r["impl"] == impl and "skipped" not in r), key=lambda r: r["L"])
        for ax, key in zip(axes, ("cpu_s", "peak_mib"), strict=True):
            ax.plot([r["L"] for r in ran], [r[key] for r in ran], marker="o", label=impl)
    for ax, title in zip(axes, ("prefill CPU time (s, 1 thread)", "peak memory above the model (MiB)"), strict=True):
        ax.set(xscale="log", yscale="log", xlabel="L (tokens)", title=title)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())  # no "4x10^3" under the tick labels
        ax.set_xticks(sorted({r["L"] for r in rows}), [str(L) for L in sorted({r["L"] for r in rows})])
        ax.legend()
    fig.suptitle("MistralModel, 2 layers, hidden 128, 4/2 heads, sliding window 1024, inside transformers")
    fig.tight_layout()
    fig.savefig(out / "plot.png", dpi=100)
    lines = ["| L | impl | CPU s | wall s | peak MiB | vs sdpa (CPU) | attnkit ran on |",
             "|---|---|---|---|---|---|---|"]
    for L in sorted({r["L"] for r in rows}):
        base = next((r for r in rows if r["L"] == L and r["impl"] == "sdpa" and "skipped" not in r), None)
        for r in (r for r in rows if r["L"] == L):
            if "skipped" in r:
                lines.append(f"| {L} | {r['impl']} | – | – | – | {r['skipped']} | |")
                continue
            ratio = f"{r['cpu_s'] / base['cpu_s']:.2f}x" if base else "–"
            ran_on = r["dispatch"]["backend"] if r.get("dispatch") else ""
            lines.append(f"| {L} | {r['impl']} | {r['cpu_s']:.2f} | {r['wall_s']:.2f} | {r['peak_mib']:.0f} | {ratio} "
                         f"| {ran_on} |")  # fmt: skip
    (out / "table.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/hf-bench"))
    parser.add_argument("--lengths", default="4096,8192,16384")
    parser.add_argument("--impls", default="attnkit,sdpa,eager")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--eager-max-gib", type=float, default=4.0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--report-only", action="store_true", help="write table.md and plot.png from results.json")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        report(args.out)
        return
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if args.resume and path.exists() else {"model": MODEL, "rows": []}
    done = {(r["impl"], r["L"]) for r in results["rows"]}
    for L in map(int, args.lengths.split(",")):
        for impl in args.impls.split(","):
            if (impl, L) in done:
                continue
            if impl == "eager" and eager_gib(L) > args.eager_max_gib:
                why = (f"not run: eager would hold ~{eager_gib(L):.1f} GiB of (1, H, L, L) scores, weights "
                       f"and mask (limit --eager-max-gib {args.eager_max_gib})")  # fmt: skip
                row = {"impl": impl, "L": L, "skipped": why}
            else:
                run = subprocess.run([sys.executable, "-c", CHILD, impl, str(L), str(args.repeats), json.dumps(MODEL)],
                                     capture_output=True, text=True)  # fmt: skip
                if run.returncode != 0:
                    row = {"impl": impl, "L": L, "skipped": f"failed: {run.stderr.strip().splitlines()[-1:]}"}
                else:
                    row = json.loads(run.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            results["rows"].append(row)
            write_atomic(path, results)
    report(args.out)


if __name__ == "__main__":
    main()
