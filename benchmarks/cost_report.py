"""The cost report's data: `attnkit cost` for paper_base, table 3's parameter counts, measured steps, a plot.

    python benchmarks/cost_report.py [--out benchmarks/results/cost] [--measure | --measured FILE]

Adds to ``OUT/results.json`` (beside the rows of ``attention_scaling.py``):

* ``cost`` — ``attnkit cost --preset paper_base --json`` at L = 128 ... 65536, and its text;
* ``table3`` — the parameter counts of "Attention Is All You Need", table 3, beside the
  calculator's for the same rows (37000 shared vocabulary);
* ``measured`` (``--measure``) — ``attnkit cost --preset paper_base --measure --L 128,256,512
  --threads 1 --json``: a training and a decoding step timed here vs predicted.

and writes ``OUT/cost.png`` (FLOPs per token by term, activation memory per layer vs L).
Prints markdown tables for report.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from attnkit.checkpoint import write_atomic
from attnkit.cost import Architecture, crossover_length, parameter_count
from attnkit.cost.report import estimate, human_bytes, human_flops
from attnkit.nn import TransformerConfig

LENGTHS = [128 << i for i in range(10)]
#: table 3 rows: label, paper's params (millions), config overrides of paper_base
TABLE3 = [
    ("base", 65, {}),
    ("(A) h=1, d_k=d_v=512", 65, dict(num_heads=1)),
    ("(A) h=32, d_k=d_v=16", 65, dict(num_heads=32)),
    ("(C) N=2", 28, dict(num_encoder_layers=2, num_decoder_layers=2)),
    ("(C) N=4", 50, dict(num_encoder_layers=4, num_decoder_layers=4)),
    ("(C) N=8", 80, dict(num_encoder_layers=8, num_decoder_layers=8)),
    ("(C) d_model=256, d_k=d_v=32", 28, dict(d_model=256)),
    ("(C) d_model=1024, d_k=d_v=128", 168, dict(d_model=1024)),
    ("(C) d_ff=1024", 53, dict(d_ff=1024)),
    ("(C) d_ff=4096", 90, dict(d_ff=4096)),
    ("big", 213, "big"),
]


def cli(*argv: str) -> str:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "attnkit", "cost", *argv], capture_output=True, text=True,
                          check=True, env=env).stdout  # fmt: skip


def table3() -> list[dict]:
    rows = []
    for label, paper, overrides in TABLE3:
        arch = Architecture.preset("paper_big") if overrides == "big" else \
            Architecture(TransformerConfig.paper_base(**overrides), name=label)
        ours = parameter_count(arch)
        rows.append({"row": label, "paper_millions": paper, "attnkit": ours,
                     "difference_millions": paper - ours / 1e6, "implied_vocabulary": _implied_vocab(arch, paper)})
    return rows


def _implied_vocab(arch: Architecture, paper_millions: float) -> float:
    """The shared vocabulary that would make the count equal the paper's (embedding rows of width d_model)."""
    c = arch.config
    return c.vocab_size + (paper_millions * 1e6 - parameter_count(arch)) / c.d_model


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["lengths"]
    L = [r["L"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    for key, label in (("projections", "projections (∝ d²)"), ("scores", "scores QKᵀ, PV (∝ L·d)"),
                       ("logits", "output projection (∝ d·V)")):  # fmt: skip
        ax.plot(L, [r["forward_per_token"][key] / 1e9 for r in rows], "o-", label=label)
    ax.axvline(doc["crossover_length"], color="gray", ls="--", lw=1)
    ax.text(doc["crossover_length"] * 1.1, 0.02, f"crossover L={doc['crossover_length']:.0f}", fontsize=8)
    ax.set_ylabel("forward GFLOP per token")
    ax.set_title("paper_base: FLOPs per token by term", fontsize=9)
    ax = axes[1]
    for key, label, style in (("activations_materialized", "activations/layer, L×L kept", "o-"),
                              ("activations_tiled", "activations/layer, tiled", "s--"),
                              ("kv_cache", "KV cache (6 decoder layers: self + cross)", "^:")):
        ax.plot(L, [r["memory"][key] / 2**20 for r in rows], style, label=label)
    ax.axhline(doc["lengths"][0]["memory"]["weights"] / 2**20, color="gray", ls=":", lw=1, label="weights")
    ax.set_ylabel("MiB (float32, batch 1)")
    ax.set_title("paper_base: memory vs L", fontsize=9)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("attnkit cost --preset paper_base (predicted, not measured)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cost"))
    parser.add_argument("--measure", action="store_true", help="run the --measure command (minutes)")
    parser.add_argument("--measured", type=Path, metavar="JSON", help="or take its --json output from this file")
    args = parser.parse_args()
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    doc = estimate(Architecture.preset("paper_base"), LENGTHS)
    results["cost"] = {"command": "attnkit cost --preset paper_base --json", "estimate": doc,
                       "text": cli("--preset", "paper_base")}  # fmt: skip
    results["table3"] = table3()
    argv = ["--preset", "paper_base", "--measure", "--L", "128,256,512", "--threads", "1", "--json"]
    if args.measure or args.measured:
        measured = json.loads(args.measured.read_text()) if args.measured else json.loads(cli(*argv))
        results["measured"] = {"command": "attnkit cost " + " ".join(argv), "result": measured}
    write_atomic(path, json.dumps(results, indent=1))
    plot(doc, args.out / "cost.png")
    print("| row | paper (M) | attnkit | paper - attnkit (M) | vocabulary that would match |\n|---|---|---|---|---|")
    for r in results["table3"]:
        print(f"| {r['row']} | {r['paper_millions']} | {r['attnkit']:,} | {r['difference_millions']:+.1f} | "
              f"{r['implied_vocabulary']:,.0f} |")
    print(f"\ncrossover: {crossover_length(Architecture.preset('paper_base')):.0f}")
    for r in doc["lengths"]:
        f, m = r["forward_per_token"], r["memory"]
        share = f"{100 * f['score_share']:.0f}%"
        print(r["L"], human_flops(f["total"]), share, human_bytes(m["activations_materialized"]),
              human_bytes(m["activations_tiled"]))
    for row in (results.get("measured") or {}).get("result", {}).get("measured", []):
        print(row["L"], row["training"], row["decode"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
