"""What a sweep says: per-point statistics over seeds, findings beyond the seed spread, the frontier.

Rules, so that a difference is not read into noise:

* a point's quality is the mean validation BLEU over its seeds, shown with the
  range (min to max) of the seeds;
* a difference between two points is a **finding** only when their seed ranges do
  not overlap (every seed of one is better than every seed of the other); each point
  is compared with its sweep's best (by mean BLEU) on BLEU, chrF and loss;
* the **frontier** holds the points no other point beats on both quality (mean BLEU)
  and cost (training seconds per run); the **recommendation** is the cheapest point
  whose seed ranges of BLEU, chrF and loss all overlap the best point's (as good as
  the best within the noise, by every measure: one wide range alone does not qualify).

Example:
    >>> runs = [{"key": f"d64-h{h}-k{64 // h}-N2", "sweep": "heads", "label": f"h={h}", "seed": s,
    ...          "valid_bleu": b, "valid_chrf": b, "valid_loss": 1.0, "params": 10, "train_seconds": t,
    ...          "train_tokens_per_s": 1.0, "decode_tokens_per_s": 1.0,
    ...          "shape": {"d_model": 64, "num_heads": h, "d_head": 64 // h, "layers": 2}}
    ...         for h, t, bleus in ((1, 1, (10, 11)), (8, 2, (20, 21))) for s, b in enumerate(bleus)]
    >>> summary = summarize({"config": {"sweeps": ["heads"]}, "runs": runs})
    >>> summary["recommended"]["label"], summary["sweeps"]["heads"]["findings"][0]["finding"]
    ('h=8', True)
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

__all__ = ["summarize", "point_stats", "pareto_frontier", "paper_counterpart", "PAPER_TABLE3", "write_report_files",
           "markdown_tables"]

#: "Attention Is All You Need", table 3: newstest2013 dev BLEU (base model: h=8, d_k=64, d_model=512, N=6: 25.8)
PAPER_TABLE3 = {
    "heads": {"h=1": 24.9, "h=4": 25.5, "h=8": 25.8, "h=16": 25.8, "h=32": 25.4},
    "head-dim": {"d_k=64": 25.8, "d_k=32": 25.4, "d_k=16": 25.1},
    "shape": {"N=2": 23.7, "N=4": 25.3, "N=6": 25.8, "N=8": 25.5, "d_model=256": 24.5, "d_model=512": 25.8,
              "d_model=1024": 26.0},
}  # fmt: skip
_METRICS = ("valid_bleu", "valid_chrf", "valid_loss", "params", "train_seconds", "train_tokens_per_s",
            "decode_tokens_per_s")  # fmt: skip


def point_stats(runs: list[dict]) -> dict:
    """Mean, min, max and standard deviation (over seeds) of each metric of one point's runs."""
    out: dict = {"label": runs[0]["label"], "key": runs[0]["key"], "seeds": len(runs)}
    for name in _METRICS:
        values = [float(r[name]) for r in runs]
        out[name] = {"mean": round(statistics.fmean(values), 3), "min": min(values), "max": max(values),
                     "std": round(statistics.stdev(values), 3) if len(values) > 1 else 0.0}  # fmt: skip
    out["shape"] = runs[0].get("shape")
    return out


def _overlap(a: dict, b: dict, metric: str = "valid_bleu") -> bool:
    return a[metric]["max"] >= b[metric]["min"] and b[metric]["max"] >= a[metric]["min"]


def pareto_frontier(points: list[dict]) -> list[dict]:
    """Points not beaten on both mean BLEU (higher) and training seconds (lower), cheapest first."""
    frontier, best = [], float("-inf")
    for p in sorted(points, key=lambda p: (p["train_seconds"]["mean"], -p["valid_bleu"]["mean"])):
        if p["valid_bleu"]["mean"] > best:
            frontier.append(p)
            best = p["valid_bleu"]["mean"]
    return frontier


def summarize(doc: dict) -> dict:
    """Statistics per sweep and point, findings against each sweep's best point, frontier and recommendation."""
    by_key: dict[str, list[dict]] = {}
    for run in doc["runs"]:
        by_key.setdefault(run["key"], []).append(run)
    stats = {key: point_stats(runs) for key, runs in by_key.items()}
    sweeps = {}
    for sweep in doc["config"]["sweeps"]:
        points = [{**stats[k], "label": _label_in(sweep, by_key[k], stats[k])} for k in _keys_of(sweep, doc)]
        if points:
            c = doc["config"]
            base = (c.get("d_model", 64), c.get("num_heads", 4), c.get("layers", 2))
            sweeps[sweep] = _sweep_summary(sweep, points, base)
    unique = list(stats.values())
    frontier = pareto_frontier(unique) if unique else []
    recommended = _recommend(unique) if unique else None
    return {"config": doc["config"], "command": doc.get("command"), "runs": len(doc["runs"]), "sweeps": sweeps,
            "frontier": [_brief(p) for p in frontier], "recommended": recommended and _brief(recommended)}  # fmt: skip


def _keys_of(sweep: str, doc: dict) -> list[str]:
    """The keys of ``sweep``'s points in sweep order (a shared base point is listed in each sweep)."""
    from .sweep import sweep_points

    c = doc["config"]
    points = sweep_points(sweep, d_model=c.get("d_model", 64), layers=c.get("layers", 2),
                          num_heads=c.get("num_heads", 4))  # fmt: skip
    done = {r["key"] for r in doc["runs"]}
    return [p.key for p in points if p.key in done]


def _label_in(sweep: str, runs: list[dict], stats: dict) -> str:
    """The point's label in ``sweep`` (the base shape is "h=4" in one sweep and "d_k=16" in another)."""
    from .sweep import SweepPoint

    own = next((r for r in runs if r["sweep"] == sweep), None)
    if own is not None:
        return own["label"]
    shape = {k: v for k, v in runs[0]["shape"].items() if k not in ("sweep", "label")}
    point = SweepPoint(sweep, "", **shape)
    return {"heads": f"h={point.num_heads}", "head-dim": f"d_k={point.d_head}"}.get(sweep, f"d_model={point.d_model}")


def _sweep_summary(sweep: str, points: list[dict], base: tuple[int, int, int]) -> dict:
    best = max(points, key=lambda p: p["valid_bleu"]["mean"])
    findings = []
    for p in points:
        if p is best:
            continue
        gap = round(best["valid_bleu"]["mean"] - p["valid_bleu"]["mean"], 2)
        beyond = [name for metric, name in (("valid_bleu", "BLEU"), ("valid_chrf", "chrF"), ("valid_loss", "loss"))
                  if not _overlap(p, best, metric)]  # fmt: skip
        findings.append({"label": p["label"], "below_best_bleu": gap, "finding": "BLEU" in beyond,
                         "beyond_spread": beyond})  # fmt: skip
    paper = {p["label"]: paper_counterpart(sweep, p["shape"], base) for p in points}
    return {"points": points, "best": best["label"], "findings": findings,
            "paper_bleu": {k: v and v[1] for k, v in paper.items()},
            "paper_label": {k: v and v[0] for k, v in paper.items()}}  # fmt: skip


def paper_counterpart(sweep: str, shape: dict, base: tuple[int, int, int]) -> tuple[str, float] | None:
    """The row of table 3 at the same place relative to the base model: ``(paper label, BLEU)`` or None.

    ``base`` is ``(d_model, num_heads, layers)`` of this sweep's base model. (A) matches
    the number of heads; (B) d_k relative to the base's (the paper's base has 64);
    (C) d_model relative to the base (the paper's 512), and depth: fewer layers than
    the base -> the paper's N=4, more -> N=8 (its base has N=6).

    Example:
        >>> paper_counterpart("head-dim", {"d_model": 64, "num_heads": 4, "d_head": 8, "layers": 2}, (64, 4, 2))
        ('d_k=32', 25.4)
        >>> paper_counterpart("shape", {"d_model": 64, "num_heads": 4, "d_head": 16, "layers": 4}, (64, 4, 2))
        ('N=8', 25.5)
    """
    d_model, heads, layers = base
    if sweep == "heads":
        label = f"h={shape['num_heads']}"
    elif sweep == "head-dim":
        label = f"d_k={64 * shape['d_head'] * heads // d_model}"
    elif shape["layers"] != layers:
        label = "N=4" if shape["layers"] < layers else "N=8"
    else:
        label = f"d_model={512 * shape['d_model'] // d_model}"
    bleu = PAPER_TABLE3.get(sweep, {}).get(label)
    return None if bleu is None else (label, bleu)


def _recommend(points: list[dict]) -> dict:
    best = max(points, key=lambda p: p["valid_bleu"]["mean"])
    tied = [p for p in points if all(_overlap(p, best, m) for m in ("valid_bleu", "valid_chrf", "valid_loss"))]
    return min(tied, key=lambda p: p["train_seconds"]["mean"])


def _brief(p: dict) -> dict:
    shape = p.get("shape") or {}
    return {"key": p["key"], "label": p["label"], "bleu": p["valid_bleu"]["mean"],
            "bleu_range": [p["valid_bleu"]["min"], p["valid_bleu"]["max"]], "train_seconds": p["train_seconds"]["mean"],
            "params": int(p["params"]["mean"]), **{k: shape.get(k) for k in ("d_model", "num_heads", "d_head",
                                                                              "layers")}}  # fmt: skip


def write_report_files(doc: dict, summary: dict, out_dir: str | Path) -> list[Path]:
    """``summary.json`` and ``heads.png`` (BLEU per point beside the paper's, and the frontier) in ``out_dir``."""
    from ..checkpoint import write_atomic

    out = Path(out_dir)
    path = out / "summary.json"
    write_atomic(path, json.dumps(summary, indent=1) + "\n")
    files = [path]
    if summary["sweeps"]:
        from .plots import plot_sweeps

        files.append(plot_sweeps(summary, out / "heads.png"))
    return files


def markdown_tables(summary: dict) -> str:
    """The per-sweep tables of :func:`summarize` as Markdown (for report.md).

    Example:
        >>> markdown_tables({"sweeps": {}})
        ''
    """
    parts = []
    for name, sweep in summary["sweeps"].items():
        gaps = {f["label"]: f for f in sweep["findings"]}
        rows = [f"**{name}** (best by mean BLEU: {sweep['best']})", "",
                "| point | seeds | BLEU mean | BLEU range | chrF | loss | params | train tok/s | decode tok/s | "
                "beyond seed spread vs best | paper (table 3) |", "|" + "---|" * 11]  # fmt: skip
        for p in sweep["points"]:
            gap = gaps.get(p["label"])
            beyond = "(best)" if gap is None else (", ".join(gap["beyond_spread"]) or "none")
            paper = sweep["paper_bleu"].get(p["label"])
            paper_text = "" if paper is None else f"{paper} ({sweep.get('paper_label', {}).get(p['label'])})"
            rows.append(f"| {p['label']} | {p['seeds']} | {p['valid_bleu']['mean']:.2f} | "
                        f"{p['valid_bleu']['min']:.2f}-{p['valid_bleu']['max']:.2f} | {p['valid_chrf']['mean']:.1f} "
                        f"(±{p['valid_chrf']['std']:.1f}) | {p['valid_loss']['mean']:.3f} "
                        f"(±{p['valid_loss']['std']:.3f}) | "
                        f"{int(p['params']['mean']):,} | {p['train_tokens_per_s']['mean']:,.0f} | "
                        f"{p['decode_tokens_per_s']['mean']:,.0f} | {beyond} | {paper_text} |")  # fmt: skip
        parts.append("\n".join(rows))
    return "\n\n".join(parts)
