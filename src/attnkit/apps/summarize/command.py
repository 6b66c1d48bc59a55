"""``attnkit summarize``: summarize a file (or stdin), or score the summarizer (``summarize eval``).

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="attnkit summarize")
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["eval", "--corpus", "docstrings", "--limit", "20"])
    >>> args.target, args.corpus, args.limit
    (['eval'], ['docstrings'], 20)
"""

from __future__ import annotations

import argparse

from .console import print_json, progress_bar, stdout_console
from .core import DEFAULTS
from .corpora import CORPORA

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``attnkit summarize`` options on ``parser``."""
    add = parser.add_argument
    add("target", metavar="FILE|-|eval", nargs="+",
        help="UTF-8 text files (one summary each, the model loaded once), '-' for standard input, or 'eval' to "
             "score against human summaries (a file named eval: write ./eval)")
    add("--sentences", type=int, default=3, metavar="N", help="sentences in the summary (default 3)")
    add("--ratio", type=float, metavar="R", help="instead of --sentences: this fraction of the sentences, e.g. 0.2")
    add("--abstractive", action="store_true",
        help="let SmolLM2-135M-Instruct write the summary (default: extract); eval: also score its summaries")
    add("--diversity", type=float, default=DEFAULTS["diversity"],
        help=f"MMR redundancy penalty in [0, 1] (default {DEFAULTS['diversity']})")
    add("--corpus", choices=sorted(CORPORA), action="append",
        help="eval: manpages (DESCRIPTION -> NAME line) or docstrings (body -> first line); default both")
    add("--limit", type=int, default=50, metavar="N", help="eval: examples per corpus (default 50)")
    add("--seed", type=int, default=0, help="eval: sampling and random-baseline seed (default 0)")
    add("--split", choices=("test", "dev", "all"), default="test", help="eval: test (default), dev or all")
    add("--json", action="store_true", help="print machine-readable JSON")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if args.target[0] == "eval":
        return _run_eval(args)
    return summarize_files(args)


def summarize_files(args: argparse.Namespace) -> int:
    """One summary per file of ``args.target``, the models loaded once; JSON: an object, or a list for several."""
    from .core import summarize
    from .text import read_text

    if "eval" in args.target[1:]:
        raise ValueError("summarize: 'eval' scores the summarizer and takes no files; to summarize a file named "
                         "eval, write ./eval")  # fmt: skip
    texts = {path: read_text(path) for path in args.target}  # every file is checked before the first model runs
    method = "abstractive" if args.abstractive else "extractive"
    results = []
    for path, text in texts.items():
        summary = summarize(text, sentences=args.sentences, ratio=args.ratio, method=method, diversity=args.diversity)
        if args.json:
            results.append(summary.to_dict() | ({"file": path} if len(texts) > 1 else {}))
        else:
            if len(texts) > 1:
                _print_heading(path, first=not results)
            _print_summary(summary)
            results.append(summary)
    if args.json:
        print_json(results if len(texts) > 1 else results[0])
    return 0


def _print_heading(path: str, *, first: bool) -> None:
    from rich.text import Text

    console = stdout_console()
    if not first:
        console.print()
    console.print(Text(f"==> {path} <==", style="bold"))  # as head(1) and tail(1) name several files


def _run_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    reports = []
    for corpus in args.corpus or sorted(CORPORA):
        with progress_bar(f"summarize eval {corpus}") as update:
            split = None if args.split == "all" else args.split
            reports.append(evaluate(corpus, limit=args.limit, seed=args.seed, split=split, progress=update,
                                    abstractive=args.abstractive))  # fmt: skip
    if args.json:
        print_json([r.to_dict() for r in reports])
    else:
        _print_reports(reports)
    return 0


def _print_summary(summary) -> None:
    from rich.table import Table

    console = stdout_console()
    console.print(summary.text)
    if summary.method != "extractive":
        console.print(f"[dim]written by {summary.model} (greedy decoding, no repeated 3-grams) from {summary.source_sentences} sentences[/]")
        return
    table = Table(title=f"picked {len(summary.sentences)} of {summary.source_sentences} sentences "
                        f"({summary.model}: centrality + lead prior + MMR)", title_justify="left")  # fmt: skip
    for name, justify in (("#", "right"), ("score", "right"), ("sentence", "left")):
        table.add_column(name, justify=justify)
    for i, s, text in zip(summary.indices, summary.scores, summary.sentences):
        table.add_row(str(i), f"{s:.3f}", text)
    console.print(table)


def _print_reports(reports) -> None:
    from rich.table import Table

    tables = []
    for r in reports:
        table = Table()
        for name in ("system", "ROUGE-1", "ROUGE-2", "ROUGE-L"):
            table.add_column(name, justify="left" if name == "system" else "right")
        for s in r.systems:
            label = {"oracle": "oracle (ceiling)", "attnkit": "attnkit (MiniLM)",
                     "abstractive": "abstractive (SmolLM2, no repeated 3-grams)"}.get(s.name, s.name)  # fmt: skip
            table.add_row(label, f"{100 * s.rouge1:.1f}", f"{100 * s.rouge2:.1f}", f"{100 * s.rougeL:.1f}")
        title = (f"[bold]{r.corpus}[/]: ROUGE F1 x 100 of one-sentence summaries, N={r.n} "
                 f"({r.split or 'all'} split, seed {r.seed}, Porter stemming)")  # fmt: skip
        tables.append((title, table))
    console = stdout_console(*(t for _, t in tables))
    for title, table in tables:
        console.print(title)
        console.print(table)
