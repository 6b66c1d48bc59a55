"""Pictures of the lab's results (matplotlib, Agg backend, PNG files).

Example:
    >>> stats = {"mean": 10.0, "min": 9.0, "max": 11.0}
    >>> summary = {"sweeps": {"heads": {"points": [
    ...     {"label": "h=1", "valid_bleu": stats, "valid_loss": stats, "valid_chrf": stats,
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
           "shape": "(C) d_model (at base N), layers N (at base d_model)"}  # fmt: skip


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig, path: str | Path, dpi: int) -> Path:
    """Write ``fig`` as PNG atomically (:func:`attnkit.viz._save_atomically`) and close it."""
    from ..viz import _save_atomically

    plt = _pyplot()
    saved = _save_atomically(fig, Path(path), dpi)
    plt.close(fig)
    return saved


def plot_sweeps(summary: dict, path: str | Path) -> Path:
    """Per sweep: validation BLEU (mean and seed range) beside the paper's table 3, and the validation loss;
    last column: the quality-vs-cost frontier and the chrF of every point."""
    plt = _pyplot()
    sweeps = summary["sweeps"]
    fig, axes = plt.subplots(2, len(sweeps) + 1, figsize=(4.2 * (len(sweeps) + 1), 7.2), squeeze=False)
    for column, (name, sweep) in enumerate(sweeps.items()):
        _metric_panel(axes[0][column], sweep, "valid_bleu", "validation BLEU", paper=True)
        axes[0][column].set_title(_TITLES.get(name, name), fontsize=10)
        _metric_panel(axes[1][column], sweep, "valid_loss", "validation loss (nats/token)", paper=False)
    _plot_frontier(axes[0][-1], summary, "valid_bleu", "validation BLEU")
    _plot_frontier(axes[1][-1], summary, "valid_chrf", "validation chrF")
    c = summary["config"]
    fig.suptitle(f"{c.get('corpus')} {c.get('pair') or ''}: {c.get('steps')} updates per run, same batches; "
                 "bars: range over seeds", fontsize=10)  # fmt: skip
    fig.tight_layout()
    return _save_png(fig, path, 100)


def _metric_panel(ax, sweep: dict, metric: str, ylabel: str, *, paper: bool) -> None:
    """Mean and seed range per point; a line joins points of the same kind (``d_model=`` apart from ``N=``)."""
    points = sweep["points"]
    means = [p[metric]["mean"] for p in points]
    low = [max(0.0, m - p[metric].get("min", m)) for m, p in zip(means, points, strict=True)]  # the mean is rounded
    high = [max(0.0, p[metric].get("max", m) - m) for m, p in zip(means, points, strict=True)]
    known = [sweep["paper_bleu"].get(p["label"]) if paper else None for p in points]
    twin = ax.twinx() if any(b is not None for b in known) else None
    for group in _groups([p["label"] for p in points]):
        ax.errorbar(group, [means[i] for i in group], yerr=[[low[i] for i in group], [high[i] for i in group]],
                    fmt="o-", capsize=4, color="tab:blue")  # fmt: skip
        if twin is not None:
            there = [i for i in group if known[i] is not None]
            twin.plot(there, [known[i] for i in there], "s--", color="tab:orange")
    ax.set_xticks(range(len(points)), [p["label"] for p in points], rotation=30, fontsize=8)
    ax.set_ylabel(ylabel, color="tab:blue", fontsize=9)
    if twin is not None:
        twin.set_ylabel("paper table 3 BLEU (newstest2013)", color="tab:orange", fontsize=8)


def _groups(labels: list[str]) -> list[list[int]]:
    """Runs of consecutive indices whose labels share the part before ``=``."""
    groups: list[list[int]] = []
    for i, label in enumerate(labels):
        if groups and labels[groups[-1][-1]].split("=")[0] == label.split("=")[0]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _plot_frontier(ax, summary: dict, metric: str, ylabel: str) -> None:
    seen: dict[str, dict] = {}
    for sweep in summary["sweeps"].values():
        for p in sweep["points"]:
            seen.setdefault(p["key"], p)
    for p in seen.values():
        ax.scatter([p["train_seconds"]["mean"]], [p[metric]["mean"]], color="tab:gray", s=18)
        ax.annotate(p["key"], (p["train_seconds"]["mean"], p[metric]["mean"]), fontsize=6)
    front = summary.get("frontier") or []
    rec = summary.get("recommended")
    if metric == "valid_bleu" and front:
        ax.plot([f["train_seconds"] for f in front], [f["bleu"] for f in front], "-", color="tab:green",
                label="frontier (mean BLEU)")  # fmt: skip
    if metric == "valid_bleu" and rec:
        ax.scatter([rec["train_seconds"]], [rec["bleu"]], marker="*", s=160, color="tab:red", label="recommended")
    ax.set_xlabel("training seconds per run (this machine)", fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title("quality vs cost", fontsize=10)
    if metric == "valid_bleu" and (front or rec):
        ax.legend(fontsize=7)


def plot_pruning(curves: dict[str, list[dict]], path: str | Path, *, title: str = "") -> Path:
    """Validation BLEU and loss vs the fraction of heads pruned, one line per curve (points: fraction, bleu, loss)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, points in curves.items():
        fractions = [100 * p["fraction"] for p in points]
        axes[0].plot(fractions, [p["bleu"] for p in points], "o-", label=name)
        axes[1].plot(fractions, [p["loss"] for p in points], "o-", label=name)
    for ax, label in zip(axes, ("validation BLEU (greedy)", "validation loss (nats/token)"), strict=True):
        ax.set_xlabel("heads pruned (% of the curve's heads)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save_png(fig, path, 100)
