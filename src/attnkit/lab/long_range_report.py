"""Report of ``attnkit lab long-range``: pretrained attention distances, the plot, ``report.md``, tables.

The pretrained part runs :func:`attnkit.apps.inspect.inspect` (hooks on the unchanged
MiniLM and SmolLM2) over a text corpus on this machine — by default the module docstrings
of a fixed list of Python standard-library modules, real English prose every Python
install has — and averages :func:`attnkit.viz.head_statistics`' mean attention distance
per layer. Beside it, the distance uniform attention would have over the same texts
(causal: ``(L - 1) / 4``; bidirectional: ``(L^2 - 1) / (3 L)``), so a layer reads as
local (far below) or global (near it).

Example:
    >>> round(uniform_distance(9, causal=True), 3), round(uniform_distance(3, causal=False), 3)
    (2.0, 0.889)
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from ..checkpoint import write_atomic
from .long_range_plot import plot_long_range
from .long_range_text import format_accuracy, report_markdown

__all__ = [
    "command_line", "machine", "uniform_distance", "corpus_texts", "measure_pretrained", "write_report",
    "summary_tables",
]  # fmt: skip

#: stdlib modules whose docstrings make the default corpus (prose, present in every CPython)
CORPUS_MODULES = ("abc", "argparse", "ast", "asyncio", "bisect", "calendar", "cmd", "collections", "configparser",
                  "contextlib", "copy", "csv", "dataclasses", "decimal", "difflib", "doctest", "email", "enum",
                  "fractions", "functools", "getopt", "glob", "heapq", "inspect", "ipaddress", "json", "locale",
                  "logging", "mailbox", "optparse", "os", "pathlib", "pdb", "pickle", "pprint", "queue", "random",
                  "re", "sched", "secrets", "shelve", "shutil", "signal", "smtplib", "socket", "statistics",
                  "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "timeit", "tokenize",
                  "trace", "traceback", "typing", "unittest", "urllib", "uuid", "warnings", "weakref",
                  "zipfile")  # fmt: skip
MAX_TEXTS = 32  # texts measured (SmolLM2: a few seconds each on one CPU thread)
WORDS_PER_TEXT = 70  # cut each text to this many words (~100 tokens: within both models' limits)

def command_line(argv: list[str]) -> str:
    """The command as typed: ``attnkit lab long-range ...``."""
    return "attnkit " + " ".join(shlex.quote(a) for a in argv[1:])


def machine() -> dict:
    """``attnkit info`` as a dictionary."""
    from ..info import collect_info

    return collect_info()


def uniform_distance(length: int, *, causal: bool) -> float:
    """Mean |i - j| under uniform attention over a length-``length`` text (all queries averaged)."""
    if causal:
        return (length - 1) / 4  # query i: mean over j <= i of (i - j) = i / 2; mean over i of i / 2
    return (length * length - 1) / (3 * length)


def corpus_texts(corpus: str | None) -> tuple[list[str], str]:
    """(texts of about WORDS_PER_TEXT words, a description); ``corpus``: a folder of .txt/.md files or None."""
    if corpus is None:
        import importlib

        docs = [(importlib.import_module(m).__doc__ or "") for m in CORPUS_MODULES]
        source = f"module docstrings of {len(CORPUS_MODULES)} Python standard-library modules"
    else:
        files = sorted(p for p in Path(corpus).rglob("*") if p.suffix in (".txt", ".md"))
        if not files:
            raise FileNotFoundError(f"lab long-range: --pretrained-corpus {corpus!r} holds no .txt or .md file")
        docs = [p.read_text(errors="replace") for p in files[:40]]
        source = f"{len(docs)} text files under {corpus}"
    texts = [" ".join(re.sub(r"\s+", " ", d).split(" ")[:WORDS_PER_TEXT]).strip() for d in docs]
    kept = [t for t in texts if len(t.split()) >= 40][:MAX_TEXTS]  # at least 40 words: prose, not a one-liner
    return kept, source + f" (the first {len(kept)} with >= 40 words, cut to {WORDS_PER_TEXT} words each)"


def measure_pretrained(out: str | Path, corpus: str | None = None) -> dict:
    """Mean attention distance per layer of MiniLM and SmolLM2 over the corpus; written to ``out/pretrained.json``."""
    from ..apps.inspect import inspect

    texts, source = corpus_texts(corpus)
    result: dict = {"corpus": source, "texts": len(texts), "models": {}}
    for model in ("minilm", "smollm2"):
        rows: dict[str, list[list[float]]] = {"mean": [], "far": [], "sink": []}  # per text: one value per layer
        lengths, causal = [], False
        for text in texts:
            r = inspect(text, model=model, max_tokens=256)
            rows["mean"].append([float(layer.statistics.mean_distance.mean()) for layer in r.layers])
            rows["far"].append([float(layer.statistics.mean_distance.max()) for layer in r.layers])
            rows["sink"].append([float(layer.weights[:, 1:, 0].mean()) for layer in r.layers])  # (H, L, L) -> share
            lengths.append(len(r.tokens))
            causal = r.causal
        n = len(texts)
        mean = {k: [sum(col) / n for col in zip(*v, strict=True)] for k, v in rows.items()}  # average over texts
        result["models"][model] = {
            "causal": causal, "mean_tokens": sum(lengths) / n,
            "mean_distance_per_layer": mean["mean"],  # mean over heads, then texts
            "max_head_distance_per_layer": mean["far"],  # the farthest-reaching head, mean over texts
            "first_token_weight_per_layer": mean["sink"],  # weight on token 0 (queries 1..), mean over heads
            "uniform_distance": sum(uniform_distance(L, causal=causal) for L in lengths) / n,
        }  # fmt: skip
    write_atomic(Path(out) / "pretrained.json", json.dumps(result, indent=1))
    return result


def _load(out: Path) -> tuple[dict, dict | None]:
    from .distance import load_results

    pre = out / "pretrained.json"
    return load_results(out / "results.json"), (json.loads(pre.read_text()) if pre.exists() else None)


def write_report(out: str | Path) -> list[Path]:
    """``long_range.png`` and ``report.md`` from ``out/results.json`` (and ``pretrained.json`` when present)."""

    out = Path(out)
    results, pretrained = _load(out)
    png = plot_long_range(results, pretrained, out / "long_range.png")
    md = write_atomic(out / "report.md", report_markdown(results, pretrained, png.name))
    return [png, md]


def summary_tables(results: dict) -> list:
    """Rich tables: recall accuracy (mean and seed range) per model and distance; ListOps and induction per model."""
    from rich.table import Table

    from ..console import literal
    from .distance import summarize

    s = summarize(results["cells"])
    cfg = results["config"]
    models, distances = cfg["models"], cfg["distances"]
    recall = Table(title=literal("recall accuracy (%), mean [lowest-highest] over seeds, by key -> query distance d"))
    recall.add_column("model")
    for d in distances:
        recall.add_column(f"d={d}", justify="right")
    for m in models:
        recall.add_row(m, *(literal(format_accuracy(s.get(f"recall/{m}/d{d}"))) for d in distances))
    other = Table(title=literal("ListOps (chance 10; LRA vanilla Transformer 36.37 at lengths 500-2000) and "
                                f"induction at d={cfg.get('induction_distance')}, accuracy (%)"))  # fmt: skip
    for name in ("model", "ListOps", "induction"):
        other.add_column(name, justify="left" if name == "model" else "right")
    for m in models:
        induction = s.get(f"induction/{m}/d{cfg.get('induction_distance')}")
        other.add_row(m, literal(format_accuracy(s.get(f"listops/{m}"))), literal(format_accuracy(induction)))
    return [recall, other]
