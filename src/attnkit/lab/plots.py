"""Pictures of the lab's results (matplotlib, Agg backend, PNG files).

Example:
    >>> summary = {"sweeps": {"heads": {"points": [
    ...     {"label": "h=1", "valid_bleu": {"mean": 10.0, "min": 9.0, "max": 11.0},
    ...      "train_seconds": {"mean": 5.0}, "key": "a"}], "paper_bleu": {"h=1": 24.9}}},
    ...     "frontier": [], "recommended": None, "config": {"corpus": "gettext", "pair": "en-fr", "steps": 10}}
    >>> import tempfile
    >>> plot_sweeps(summary, tempfile.mkdtemp() + "/heads.png").suffix
    '.png'
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_sweeps", "plot_pruning"]

_TITLES = {"heads": "(A) num_heads, d_k = d_model/h", "head-dim": "(B) d_k at fixed heads",
           "shape": "(C) d_model and layers N"}  # fmt: skip


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sweeps(summary: dict, path: str | Path) -> Path:
    """One panel per sweep (validation BLEU, mean and seed range, beside the paper's table 3) and the frontier."""
    plt = _pyplot()
    sweeps = summary["sweeps"]
    fig, axes = plt.subplots(1, len(sweeps) + 1, figsize=(4.2 * (len(sweeps) + 1), 3.8), squeeze=False)
    for ax, (name, sweep) in zip(axes[0], sweeps.items(), strict=False):
        points = sweep["points"]
        x = range(len(points))
        means = [p["valid_bleu"]["mean"] for p in points]
        low = [m - p["valid_bleu"]["min"] for m, p in zip(means, points, strict=True)]
        high = [p["valid_bleu"]["max"] - m for m, p in zip(means, points, strict=True)]
        ax.errorbar(x, means, yerr=[low, high], fmt="o-", capsize=4, color="tab:blue", label="attnkit (seed range)")
        ax.set_xticks(list(x), [p["label"] for p in points], rotation=30, fontsize=8)
        ax.set_ylabel("validation BLEU (this corpus)", color="tab:blue")
        ax.set_title(_TITLES.get(name, name), fontsize=10)
        paper = [(i, sweep["paper_bleu"].get(p["label"])) for i, p in enumerate(points)]
        paper = [(i, b) for i, b in paper if b is not None]
        if paper:
            twin = ax.twinx()
            twin.plot([i for i, _ in paper], [b for _, b in paper], "s--", color="tab:orange",
                      label="paper table 3 (newstest2013)")  # fmt: skip
            twin.set_ylabel("paper BLEU", color="tab:orange")
    _plot_frontier(axes[0][-1], summary)
    c = summary["config"]
    fig.suptitle(f"{c.get('corpus')} {c.get('pair') or ''}: {c.get('steps')} updates per run, same batches",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_frontier(ax, summary: dict) -> None:
    seen: dict[str, dict] = {}
    for sweep in summary["sweeps"].values():
        for p in sweep["points"]:
            seen.setdefault(p["key"], p)
    xs = [p["train_seconds"]["mean"] for p in seen.values()]
    ys = [p["valid_bleu"]["mean"] for p in seen.values()]
    ax.scatter(xs, ys, color="tab:gray", s=18)
    for p in seen.values():
        ax.annotate(p["key"], (p["train_seconds"]["mean"], p["valid_bleu"]["mean"]), fontsize=6)
    front = summary.get("frontier") or []
    if front:
        ax.plot([f["train_seconds"] for f in front], [f["bleu"] for f in front], "-", color="tab:green",
                label="frontier")  # fmt: skip
    rec = summary.get("recommended")
    if rec:
        ax.scatter([rec["train_seconds"]], [rec["bleu"]], marker="*", s=160, color="tab:red", label="recommended")
    ax.set_xlabel("training seconds per run (this machine)")
    ax.set_ylabel("validation BLEU")
    ax.set_title("quality vs cost", fontsize=10)
    if front or rec:
        ax.legend(fontsize=7)


def plot_pruning(curves: dict[str, list[tuple[float, float]]], path: str | Path, *, title: str = "") -> Path:
    """Validation BLEU vs the fraction of heads pruned, one line per curve name."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, points in curves.items():
        ax.plot([100 * f for f, _ in points], [b for _, b in points], "o-", label=name)
    ax.set_xlabel("heads pruned (%)")
    ax.set_ylabel("validation BLEU")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
