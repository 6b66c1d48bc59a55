"""The figure of ``attnkit lab long-range``: recall vs distance, ListOps, pretrained attention distances.

Three panels: (a) recall accuracy vs key -> query distance per model (mean over seeds,
bars from the lowest to the highest seed), chance lines and the maximum path lengths of
"Attention Is All You Need", table 1; (b) ListOps accuracy per model beside chance (10%)
and LRA's vanilla Transformer (36.37%), and induction accuracy at one distance; (c) mean
attention distance per layer of MiniLM and SmolLM2 over a text corpus, beside uniform
attention's distance.

Example:
    >>> import tempfile, pathlib
    >>> cells = [{"task": "recall", "model": "lstm-1L", "d": d, "seed": 0, "accuracy": a}
    ...          for d, a in ((4, 0.5), (16, 0.1))]
    >>> cfg = {"models": ["lstm-1L"], "distances": [4, 16], "num_pairs": 2, "vocab_size": 32,
    ...        "listops_lengths": [16, 64], "induction_distance": 16}
    >>> results = {"config": cfg, "cells": cells}
    >>> path = plot_long_range(results, None, pathlib.Path(tempfile.mkdtemp()) / "lr.png")
    >>> path.suffix
    '.png'
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_long_range"]

_STYLE = {  # model -> (colour, marker, line style)
    "transformer-1L": ("tab:orange", "s", "--"),
    "transformer-2L": ("tab:red", "o", "-"),
    "transformer-2L-w4": ("tab:purple", "^", "-."),
    "lstm-1L": ("tab:cyan", "v", ":"),
    "lstm-2L": ("tab:blue", "D", "-"),
}


def plot_long_range(results: dict, pretrained: dict | None, path: Path) -> Path:
    """Draw the figure to ``path`` (PNG, written atomically); return the path."""
    from ..viz import _figure, _save_atomically

    panels = 3 if pretrained else 2
    fig = _figure((5.2 * panels, 5.6))
    axes = fig.subplots(1, panels, gridspec_kw={"width_ratios": [1.6, 1, 1.2][:panels]})
    _recall(axes[0], results)
    _listops(axes[1], results)
    if pretrained:
        _pretrained(axes[2], pretrained)
    return _save_atomically(fig, Path(path), 120)


def _recall(ax, results: dict) -> None:
    from .distance import summarize

    cfg = results["config"]
    s = summarize(results["cells"])
    for m in cfg["models"]:
        pts = [(d, s[f"recall/{m}/d{d}"]) for d in cfg["distances"] if f"recall/{m}/d{d}" in s]
        if not pts:
            continue
        xs = [d for d, _ in pts]
        mean = [100 * st["mean"] for _, st in pts]
        low = [100 * (st["mean"] - st["min"]) for _, st in pts]
        high = [100 * (st["max"] - st["mean"]) for _, st in pts]
        colour, marker, style = _STYLE.get(m, ("gray", "o", "-"))
        ax.errorbar(xs, mean, yerr=[low, high], color=colour, marker=marker, linestyle=style, capsize=3, label=m)
    values = cfg["vocab_size"] - cfg["vocab_size"] // 2
    ax.axhline(100 / values, color="gray", lw=0.8, ls=":", label=f"chance: 1/{values} values")
    ax.axhline(100 / cfg["num_pairs"], color="gray", lw=0.8, ls="--",
               label=f"guess among the {cfg['num_pairs']} values present")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xticks(cfg["distances"], [str(d) for d in cfg["distances"]])
    ax.set_ylim(-3, 105)
    ax.set_xlabel("key -> query distance d (tokens)")
    ax.set_ylabel("recall accuracy (%)")
    ax.set_title("(a) associative recall vs distance (bars: seed range)")
    ax.text(0.5, 0.18, "max path length (AIAYN table 1):\nself-attention O(1), recurrent O(n),\n"
            "restricted (window r) O(n/r)", transform=ax.transAxes, fontsize=7, va="bottom",
            bbox={"facecolor": "white", "alpha": 0.8, "lw": 0.3})  # fmt: skip
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)


def _listops(ax, results: dict) -> None:
    from matplotlib.patches import Patch

    from .distance import summarize

    cfg = results["config"]
    s = summarize(results["cells"])
    d = cfg.get("induction_distance")
    models = cfg["models"]
    for i, m in enumerate(models):
        colour = _STYLE.get(m, ("gray",))[0]
        for offset, key, hatch in ((-0.2, f"listops/{m}", None), (0.2, f"induction/{m}/d{d}", "//")):
            if key not in s:
                continue
            ax.bar(i + offset, 100 * s[key]["mean"], width=0.38, color=colour, alpha=0.8, hatch=hatch,
                   edgecolor="white" if hatch else None)  # fmt: skip
            ax.plot([i + offset] * s[key]["n"], [100 * a for a in s[key]["accuracies"]], "k.", ms=4)
    ax.axhline(10, color="gray", ls=":", lw=0.8, label="ListOps chance 10%")
    ax.axhline(36.37, color="black", ls="--", lw=0.8, label="LRA vanilla Transformer on ListOps 36.37%\n"
               "(lengths 500-2000)")  # fmt: skip
    ax.set_xticks(range(len(models)), [m.replace("transformer", "T") for m in models], rotation=30, fontsize=8)
    lo, hi = cfg["listops_lengths"]
    ax.set_title(f"(b) ListOps ({lo}-{hi} tokens), induction")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    handles, _ = ax.get_legend_handles_labels()
    handles += [Patch(color="gray", label="ListOps (plain bars; dots: seeds)"),
                Patch(facecolor="gray", hatch="//", edgecolor="white",
                      label=f"induction at d={d} (hatched; chance {100 / (cfg['vocab_size'] - 2):.1f}%)")]  # fmt: skip
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1)


def _pretrained(ax, pretrained: dict) -> None:
    colours = {"minilm": "tab:green", "smollm2": "tab:brown"}
    names = {"minilm": "MiniLM (bidirectional)", "smollm2": "SmolLM2 (causal)"}
    for model, r in pretrained["models"].items():
        layers = list(range(len(r["mean_distance_per_layer"])))
        c = colours.get(model, "gray")
        ax.plot(layers, r["mean_distance_per_layer"], color=c, marker="o", ms=3, label=f"{names.get(model, model)}: "
                "mean over heads")  # fmt: skip
        ax.plot(layers, r["max_head_distance_per_layer"], color=c, lw=0.8, ls="--", label="farthest head")
        ax.axhline(r["uniform_distance"], color=c, lw=0.8, ls=":", label=f"uniform attention ({r['mean_tokens']:.0f} "
                   "tokens)")  # fmt: skip
    ax.set_xlabel("layer")
    ax.set_ylabel("mean attention distance (tokens)")
    ax.set_title(f"(c) pretrained heads over {pretrained['texts']} texts")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
