"""Tables of the lab's results on the terminal (rich), for ``attnkit lab``.

Example:
    >>> print_summary({"sweeps": {}, "frontier": [], "recommended": None, "runs": 0}, [])
    no finished runs yet
"""

from __future__ import annotations

from pathlib import Path

from ..console import literal, stdout_console

__all__ = ["print_summary", "print_pruning"]


def print_summary(summary: dict, files: list[Path]) -> None:
    """One table per sweep (BLEU mean and seed range, loss, params, speeds), the frontier and the recommendation."""
    from rich.table import Table

    if not summary["sweeps"]:
        print("no finished runs yet")
        return
    tables = []
    for name, sweep in summary["sweeps"].items():
        table = Table(title=f"sweep {name} (best: {sweep['best']})", title_justify="left")
        for column in ("point", "seeds", "BLEU", "range", "chrF", "loss", "params", "train tok/s", "decode tok/s",
                       "vs best", "beyond spread", "paper"):  # fmt: skip
            table.add_column(column, justify="left" if column == "point" else "right")
        gaps = {f["label"]: f for f in sweep["findings"]}
        for p in sweep["points"]:
            gap = gaps.get(p["label"])
            verdict = "best" if gap is None else f"{-gap['below_best_bleu']:+.1f}" + (" *" if gap["finding"] else "")
            beyond = "" if gap is None else " ".join(gap["beyond_spread"])
            paper, paper_label = sweep["paper_bleu"].get(p["label"]), sweep.get("paper_label", {}).get(p["label"])
            table.add_row(literal(p["label"]), str(p["seeds"]), f"{p['valid_bleu']['mean']:.1f}",
                          f"{p['valid_bleu']['min']:.1f}-{p['valid_bleu']['max']:.1f}",
                          f"{p['valid_chrf']['mean']:.1f}", f"{p['valid_loss']['mean']:.3f}",
                          f"{int(p['params']['mean']):,}", f"{p['train_tokens_per_s']['mean']:,.0f}",
                          f"{p['decode_tokens_per_s']['mean']:,.0f}", verdict, beyond,
                          "" if paper is None else f"{paper:.1f} ({paper_label})")  # fmt: skip
        tables.append(table)
    out = stdout_console(*tables)
    for table in tables:
        out.print(table)
    out.print("vs best: BLEU difference to the sweep's best point; * = a finding (the seed ranges do not overlap); "
              "beyond spread: the metrics whose seed ranges do not overlap with the best's")
    front = ", ".join(f"{f['key']} ({f['bleu']:.1f} BLEU, {f['train_seconds']:.0f} s)" for f in summary["frontier"])
    out.print(literal(f"quality-vs-cost frontier: {front}"))
    rec = summary["recommended"]
    if rec:
        out.print(literal(f"recommended: d_model={rec['d_model']} num_heads={rec['num_heads']} "
                          f"head_dim={rec['d_head']} layers={rec['layers']} — {rec['bleu']:.1f} BLEU "
                          f"(seeds {rec['bleu_range'][0]:.1f}-{rec['bleu_range'][1]:.1f}), the cheapest "
                          "configuration within the seed spread of the best in BLEU, chrF and loss"))  # fmt: skip
    for f in files:
        out.print(literal(f"wrote {f}"))


def print_pruning(doc: dict, picture: Path) -> None:
    """One table per pruning curve: fraction pruned, BLEU, loss; the really pruned model's BLEU and speed."""
    from rich.table import Table

    tables = []
    for name, points in doc["curves"].items():
        table = Table(title=f"{name} ({points[0]['heads_in_scope']} heads)", title_justify="left")
        physical = "pruned" in points[0]
        columns = ["pruned", "heads", "BLEU", "chrF", "loss", "decode tok/s"]
        columns += ["removed: BLEU", "params", "decode tok/s", "same output"] if physical else []
        for column in columns:
            table.add_column(column, justify="right")
        for p in points:
            row = [f"{100 * p['fraction']:.0f}%", str(p["heads_pruned"]), f"{p['bleu']:.1f}", f"{p['chrf']:.1f}",
                   f"{p['loss']:.3f}", f"{p['decode_tokens_per_s']:,.0f}"]  # fmt: skip
            if physical:
                q = p["pruned"]
                same = "yes" if q["hypotheses_sha"] == p["hypotheses_sha"] else "no"
                row += [f"{q['bleu']:.1f}", f"{q['params']:,}", f"{q['decode_tokens_per_s']:,.0f}", same]
            table.add_row(*row)
        tables.append(table)
    speed = doc.get("forward_speed") or []
    if speed:
        table = Table(title="forward pass (teacher forced, validation batches), heads removed in importance order",
                      title_justify="left")  # fmt: skip
        for column in ("pruned", "heads", "seconds", "unpruned seconds", "speed-up"):
            table.add_column(column, justify="right")
        for r in speed:
            table.add_row(f"{100 * r['fraction']:.0f}%", str(r["heads_removed"]), f"{r['seconds']:.3f}",
                          f"{r['unpruned_seconds']:.3f}", f"{r['speedup']:.2f}x")  # fmt: skip
        tables.append(table)
    out = stdout_console(*tables)
    for table in tables:
        out.print(table)
    out.print(literal(f"wrote {picture}"))
