"""Results file, tables and plots of ``attnkit lab noise``.

``results.json`` is ``{"configs": {...}, "rows": [...]}``: one row per synthetic model
(``"part": "synthetic"``) and one per translation model, perturbation and noise draw
(``"part": "translation"``). :func:`write_report` turns whatever is there into
``report.md`` (machine, date, command, tables), ``synthetic.png`` and ``translation.png``.

Example:
    >>> rows = [{"part": "synthetic", "model": "lstm-1L", "seed": s, "fraction": 0.0, "accuracy": a}
    ...         for s, a in ((0, 0.5), (1, 0.7))]
    >>> synthetic_table(rows)[0]
    {'model': 'lstm-1L', 'fraction': 0.0, 'accuracy': 0.6, 'low': 0.5, 'high': 0.7, 'seeds': 2}
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["load_results", "save_results", "synthetic_table", "translation_table", "write_report"]


def load_results(path: Path) -> dict:
    """The results document at ``path`` (an empty one if there is none)."""
    if not path.is_file():
        return {"rows": []}
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise ValueError(f"--resume: {str(path)!r} is not an `attnkit lab noise` results file (no 'rows' list)")
    return doc


def save_results(path: Path, doc: dict) -> Path:
    """Write ``doc`` to ``path`` atomically."""
    from ..checkpoint import write_atomic

    return write_atomic(path, json.dumps(doc, indent=1) + "\n")


def _spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "low": min(values), "high": max(values)}


def synthetic_table(rows: Iterable[dict]) -> list[dict]:
    """Accuracy per (model, fraction): mean, lowest and highest over seeds."""
    groups: dict[tuple[str, float], list[float]] = {}
    for r in rows:
        if r.get("part") == "synthetic":
            groups.setdefault((r["model"], r["fraction"]), []).append(r["accuracy"])
    out = []
    for (model, fraction), values in sorted(groups.items()):
        s = _spread(values)
        out.append({"model": model, "fraction": fraction, "accuracy": round(s["mean"], 4), "low": s["low"],
                    "high": s["high"], "seeds": len(values)})  # fmt: skip
    return out


def _cross_table(rows: list[dict]) -> list[dict]:
    """Models trained at 0% distractors, scored at each fraction: mean over seeds."""
    groups: dict[tuple[str, float], list[float]] = {}
    for r in rows:
        for f, acc in r.get("accuracy_at", {}).items():
            groups.setdefault((r["model"], float(f)), []).append(acc)
    return [{"model": m, "fraction": f, "accuracy": round(statistics.fmean(v), 4), "seeds": len(v)}
            for (m, f), v in sorted(groups.items())]  # fmt: skip


def _attention_table(rows: list[dict], *, clean_trained: bool = False) -> list[dict]:
    """Per (fraction, layer), the attention measures averaged over seeds.

    ``clean_trained``: the models trained at 0% distractors, measured at each test fraction.
    """
    groups: dict[tuple[float, int], list[dict]] = {}
    for r in (r for r in rows if r.get("part") == "synthetic"):
        at = r.get("attention_at", {}) if clean_trained else {f"{r.get('fraction')}": r.get("attention", [])}
        for fraction, layers in at.items():
            for a in layers:
                groups.setdefault((float(fraction), a["layer"]), []).append(a)
    keys = ("distractor_mass", "uniform_distractor_mass", "answer_mass", "key_mass", "entropy", "uniform_entropy")
    return [{"fraction": f, "layer": layer, **{k: round(statistics.fmean(a[k] for a in v), 4) for k in keys}}
            for (f, layer), v in sorted(groups.items())]  # fmt: skip


def translation_table(rows: Iterable[dict]) -> list[dict]:
    """Per (model, perturbation): clean BLEU, perturbed BLEU, robustness, consistency (mean and sd over draws)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r.get("part") == "translation":
            groups.setdefault((r["model"], r["perturbation"]), []).append(r)
    out = []
    for (model, perturbation), group in groups.items():
        first = group[0]
        row = {"model": model, "corpus": first["corpus"], "train_noise": first["train_noise"], "seed": first["seed"],
               "perturbation": perturbation, "draws": len(group), "bleu_clean": first["bleu_clean"]}  # fmt: skip
        for key in ("bleu_perturbed", "robustness", "consistency", "changed"):
            values = [g[key] for g in group if g[key] is not None]  # robustness: None when the clean BLEU is 0
            row[key] = round(statistics.fmean(values), 4) if values else float("nan")
            row[f"{key}_sd"] = round(statistics.stdev(values), 4) if len(values) > 1 else 0.0
        out.append(row)
    return out


# ---------------------------------------------------------------------- plots
def _plot_synthetic(rows: list[dict], path: Path, chance: float | None) -> Path | None:
    table = synthetic_table(rows)
    if not table:
        return None
    from .plots import _pyplot, _save_png

    plt = _pyplot()

    fig, (acc_ax, mass_ax, ent_ax) = plt.subplots(1, 3, figsize=(15, 4.4))
    for i, model in enumerate(sorted({t["model"] for t in table})):
        points = [t for t in table if t["model"] == model]
        xs = [100 * t["fraction"] for t in points]
        color = f"C{i}"
        acc_ax.plot(xs, [100 * t["accuracy"] for t in points], "o-", color=color, label=f"{model}, trained at x")
        acc_ax.fill_between(xs, [100 * t["low"] for t in points], [100 * t["high"] for t in points], color=color,
                            alpha=0.2)  # fmt: skip
        cross = [c for c in _cross_table(rows) if c["model"] == model]
        if cross:
            acc_ax.plot([100 * c["fraction"] for c in cross], [100 * c["accuracy"] for c in cross], "s--",
                        color=color, alpha=0.7, label=f"{model}, trained at 0%")  # fmt: skip
    if chance is not None:
        acc_ax.axhline(100 * chance, color="grey", ls=":", label="chance")
    acc_ax.set(xlabel="distractor tokens (% of the sequence)", ylabel="recall accuracy (%)", ylim=(-2, 102),
               title="accuracy (band: lowest-highest seed)")  # fmt: skip
    acc_ax.legend(fontsize=8)
    attention = _attention_table(rows)
    for layer in sorted({a["layer"] for a in attention}):
        pts = [a for a in attention if a["layer"] == layer]
        xs = [100 * a["fraction"] for a in pts]
        mass_ax.plot(xs, [a["distractor_mass"] for a in pts], "o-", color=f"C{layer + 2}",
                     label=f"layer {layer + 1}: on distractors")  # fmt: skip
        mass_ax.plot(xs, [a["answer_mass"] for a in pts], "^--", color=f"C{layer + 2}",
                     label=f"layer {layer + 1}: on the answer")  # fmt: skip
        ent_ax.plot(xs, [a["entropy"] for a in pts], "o-", color=f"C{layer + 2}", label=f"layer {layer + 1}")
    clean = _attention_table(rows, clean_trained=True)
    if clean:
        last = max(a["layer"] for a in clean)
        pts = [a for a in clean if a["layer"] == last]
        xs = [100 * a["fraction"] for a in pts]
        mass_ax.plot(xs, [a["distractor_mass"] for a in pts], "s-", color="C1", alpha=0.6,
                     label=f"trained at 0%, layer {last + 1}: on distractors")  # fmt: skip
        mass_ax.plot(xs, [a["answer_mass"] for a in pts], "s--", color="C1", alpha=0.6,
                     label=f"trained at 0%, layer {last + 1}: on the answer")  # fmt: skip
        ent_ax.plot(xs, [a["entropy"] for a in pts], "s-", color="C1", alpha=0.6,
                    label=f"trained at 0%, layer {last + 1}")  # fmt: skip
    if attention:
        first = [a for a in attention if a["layer"] == 0]
        xs = [100 * a["fraction"] for a in first]
        mass_ax.plot(xs, [a["uniform_distractor_mass"] for a in first], ":", color="grey",
                     label="uniform attention: on distractors")  # fmt: skip
        ent_ax.plot(xs, [a["uniform_entropy"] for a in first], ":", color="grey", label="uniform attention")
    mass_ax.set(xlabel="distractor tokens (%)", ylabel="attention weight of the query (mean)", ylim=(0, 1),
                title="transformer-2L: where the query's attention goes")  # fmt: skip
    ent_ax.set(xlabel="distractor tokens (%)", ylabel="entropy of the query's attention (nats)",
               title="transformer-2L: attention entropy")  # fmt: skip
    mass_ax.legend(fontsize=8)
    ent_ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_png(fig, path, 110)


def _plot_translation(rows: list[dict], path: Path) -> Path | None:
    table = translation_table(rows)
    if not table:
        return None
    from .plots import _pyplot, _save_png

    plt = _pyplot()

    corpora = sorted({t["corpus"] for t in table})
    perturbations = list(dict.fromkeys(t["perturbation"] for t in table))
    fig, axes = plt.subplots(2, len(corpora), figsize=(6.5 * len(corpora), 7.5), squeeze=False)
    for col, corpus in enumerate(corpora):
        models = sorted({(t["train_noise"], t["seed"]) for t in table if t["corpus"] == corpus})
        width = 0.8 / max(1, len(models))
        for i, (noise, seed) in enumerate(models):
            cells = [next((t for t in table if t["corpus"] == corpus and (t["train_noise"], t["seed"]) == (noise, seed)
                           and t["perturbation"] == p), None) for p in perturbations]  # fmt: skip
            label = f"trained {'clean' if not noise else f'--noise {noise:g}'}, seed {seed}"
            xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(perturbations))]
            clean = next(c["bleu_clean"] for c in cells if c)
            bleu = [clean] + [c["bleu_perturbed"] if c else 0 for c in cells]
            look = {"color": "C1" if noise else "C0", "alpha": 1.0 if seed == 0 else 0.55}  # noise: orange; seed: shade
            axes[0][col].bar([xs[0] - 1] + xs, bleu, width, label=label, **look)
            axes[1][col].bar(xs, [c["robustness"] if c else 0 for c in cells], width, label=label,
                             yerr=[c["robustness_sd"] if c else 0 for c in cells], capsize=2, **look)  # fmt: skip
        top = max(t["bleu_clean"] for t in table if t["corpus"] == corpus)
        axes[0][col].set_ylim(0, 1.35 * top)  # room for the legend above the bars
        axes[0][col].set_xticks(range(-1, len(perturbations)), ["clean input", *perturbations], rotation=20)
        axes[0][col].set(ylabel="BLEU vs reference", title=f"{corpus}: BLEU on clean and perturbed input")
        axes[1][col].set_xticks(range(len(perturbations)), perturbations, rotation=20)
        axes[1][col].axhline(1.0, color="grey", ls=":")
        axes[1][col].set(ylabel="robustness = BLEU(perturbed) / BLEU(clean)", ylim=(0, 1.1),
                         title=f"{corpus}: robustness (Niu et al. 2020); bars: sd over noise draws")  # fmt: skip
        axes[0][col].legend(fontsize=8, ncol=2, loc="upper center")
    fig.tight_layout()
    return _save_png(fig, path, 110)


# ---------------------------------------------------------------------- report.md
def _machine() -> str:
    import os

    import torch

    from ..info import collect_info

    info = collect_info()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{info['cpu']}, {os.cpu_count()} cores (load average {load:.1f}), torch {info['torch']}, "
            f"{torch.get_num_threads()} thread(s), attnkit {info['attnkit']}")  # fmt: skip


def _markdown(rows: Iterable[tuple], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def write_report(out_dir: Path, doc: dict) -> dict[str, Path]:
    """``report.md`` and the plots from ``doc`` (the results so far); returns what was written."""
    from .noise_synthetic import SyntheticNoiseConfig, chance

    rows = doc["rows"]
    commands = "\n".join(doc.get("commands", [])) or "(not recorded)"
    written: dict[str, Path] = {}
    synthetic_config = doc.get("configs", {}).get("synthetic")
    chance_level = chance(SyntheticNoiseConfig(**{**synthetic_config, "fractions": tuple(
        synthetic_config["fractions"])})) if synthetic_config else None  # fmt: skip
    for name, made in (("synthetic_png", _plot_synthetic(rows, out_dir / "synthetic.png", chance_level)),
                       ("translation_png", _plot_translation(rows, out_dir / "translation.png"))):  # fmt: skip
        if made is not None:
            written[name] = made
    parts = [f"# `attnkit lab noise`: is self-attention sensitive to noise?\n\n- machine: {_machine()}\n"
             f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
             f"- commands, in order (each continues the same results.json):\n\n```\n{commands}\n```\n\n"
             f"- configs: `{json.dumps(doc.get('configs', {}))}`\n"]  # fmt: skip
    table = synthetic_table(rows)
    if table:
        parts.append("## Synthetic: associative recall through distractor tokens\n\nAccuracy (%) on 512 test "
                     "sequences at the fraction each model was trained at; mean [lowest, highest] over seeds.\n")
        parts.append(_markdown([(t["model"], _pct(t["fraction"]), f"{_pct(t['accuracy'])} [{_pct(t['low'])}, "
                                 f"{_pct(t['high'])}]", t["seeds"]) for t in table],
                               ["model", "distractors %", "accuracy %", "seeds"]))  # fmt: skip
        parts.append("\n\nTrained at 0% distractors, tested at each fraction (mean over seeds):\n")
        parts.append(_markdown([(c["model"], _pct(c["fraction"]), _pct(c["accuracy"])) for c in _cross_table(rows)],
                               ["model", "distractors % (test)", "accuracy %"]))  # fmt: skip
        parts.append("\n\nTransformer: attention of the query positions (mean over heads, queries and seeds):\n")
        parts.append(_markdown([(_pct(a["fraction"]), a["layer"] + 1, f"{a['distractor_mass']:.3f}",
                                 f"{a['uniform_distractor_mass']:.3f}", f"{a['answer_mass']:.3f}",
                                 f"{a['key_mass']:.3f}", f"{a['entropy']:.2f}", f"{a['uniform_entropy']:.2f}")
                                for a in _attention_table(rows)],
                               ["distractors %", "layer", "mass on distractors", "(uniform)", "mass on answer",
                                "mass on key", "entropy", "(uniform)"]))  # fmt: skip
        parts.append("\n\nThe same measures for the Transformers trained at 0% distractors, tested at each fraction:\n")
        parts.append(_markdown([(_pct(a["fraction"]), a["layer"] + 1, f"{a['distractor_mass']:.3f}",
                                 f"{a['uniform_distractor_mass']:.3f}", f"{a['answer_mass']:.3f}",
                                 f"{a['key_mass']:.3f}", f"{a['entropy']:.2f}", f"{a['uniform_entropy']:.2f}")
                                for a in _attention_table(rows, clean_trained=True)],
                               ["distractors % (test)", "layer", "mass on distractors", "(uniform)", "mass on answer",
                                "mass on key", "entropy", "(uniform)"]))  # fmt: skip
        parts.append("\n\n![synthetic](synthetic.png)\n")
    tr = translation_table(rows)
    if tr:
        parts.append("\n## Translation: misspellings and case changes (Niu et al., ACL 2020)\n\nRobustness = "
                     "BLEU(translation of perturbed input, reference) / BLEU(translation of clean input, reference); "
                     "consistency = harmonic mean of BLEU between the two translations, both ways. Greedy decoding; "
                     "mean ± sd over noise draws.\n")  # fmt: skip
        parts.append(_markdown([(t["corpus"], "clean" if not t["train_noise"] else f"--noise {t['train_noise']:g}",
                                 t["seed"], t["perturbation"], f"{100 * t['changed']:.0f}%", t["bleu_clean"],
                                 f"{t['bleu_perturbed']:.1f} ± {t['bleu_perturbed_sd']:.1f}",
                                 f"{t['robustness']:.3f} ± {t['robustness_sd']:.3f}",
                                 f"{t['consistency']:.1f} ± {t['consistency_sd']:.1f}") for t in tr],
                               ["corpus", "trained", "seed", "test noise", "sources changed", "BLEU clean",
                                "BLEU perturbed", "robustness", "consistency"]))  # fmt: skip
        parts.append("\n\n![translation](translation.png)\n")
    report = out_dir / "report.md"
    from ..checkpoint import write_atomic

    write_atomic(report, "\n".join(parts) + "\n")
    written["report"] = report
    return written
