"""``attnkit summarize FILE``: summarize a file (or stdin); ``attnkit summarize eval``: score the summarizer.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="attnkit summarize eval")
    >>> add_arguments(parser, "eval")
    >>> args = parser.parse_args(["--corpus", "docstrings", "--limit", "20"])
    >>> args.corpus, args.limit
    (['docstrings'], 20)
"""

from __future__ import annotations

import argparse

from ..._argtypes import open_unit_interval, positive_int, unit_interval
from ...console import literal, print_json, progress_bar, status, stdout_console

__all__ = ["add_arguments", "run", "ACTIONS"]

#: action -> one line of help; without an action, `attnkit summarize FILE` summarizes FILE
ACTIONS = {"eval": "ROUGE of one-sentence summaries against human summaries (man pages, stdlib docstrings)"}
#: the same values as .corpora.CORPORA and .core.DEFAULTS (a test checks), here so that --help needs no torch
CORPUS_NAMES = ("docstrings", "manpages")
DIVERSITY = 0.3
SMOLLM2 = "SmolLM2-135M-Instruct"


def add_arguments(parser: argparse.ArgumentParser, action: str | None = None) -> None:
    """Declare the options of ``attnkit summarize [eval]`` on ``parser``."""
    add = parser.add_argument
    if action == "eval":
        add("--corpus", choices=CORPUS_NAMES, action="append",
            help="manpages (DESCRIPTION -> NAME line) or docstrings (body -> first line); repeatable "
                 "(default: both)")
        add("--limit", type=positive_int, default=50, metavar="N", help="examples per corpus")
        add("--seed", type=int, default=0, metavar="S", help="sampling and random-baseline seed")
        add("--split", choices=("test", "dev", "all"), default="test", help="which split")
        add("--abstractive", action="store_true",
            help=f"also score one-sentence summaries written by {SMOLLM2} (one generation per example)")
    else:
        add("target", metavar="FILE", nargs="+",
            help="UTF-8 text files, one summary each with the model loaded once; '-' for standard input")
        add("--sentences", type=positive_int, default=3, metavar="N", help="sentences in the summary")
        add("--ratio", type=open_unit_interval, metavar="R",
            help="instead of --sentences: this fraction of the sentences, e.g. 0.2")
        add("--abstractive", action="store_true",
            help=f"let {SMOLLM2} write the summary (default: extract sentences with MiniLM)")
        add("--diversity", type=unit_interval, default=DIVERSITY, metavar="D", help="MMR redundancy penalty in [0, 1]")
    add("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    if args.action == "eval":
        return _run_eval(args)
    return summarize_files(args)


def summarize_files(args: argparse.Namespace) -> int:
    """One summary per file of ``args.target``, the models loaded once; JSON: an object, or a list for several."""
    from .core import summarize
    from .text import read_text

    texts = {path: read_text(path) for path in args.target}  # every file is checked before the first model runs
    method = "abstractive" if args.abstractive else "extractive"
    doing = f"writing a summary with {SMOLLM2}" if args.abstractive else "picking sentences with all-MiniLM-L6-v2"
    results: list = []
    for n, (path, text) in enumerate(texts.items(), 1):
        where = f" ({n} of {len(texts)}: {path})" if len(texts) > 1 else ""
        with status(f"summarize: loading the model and {doing}{where}"):
            summary = summarize(text, sentences=args.sentences, ratio=args.ratio, method=method,
                                diversity=args.diversity)  # fmt: skip
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
    console = stdout_console()
    if not first:
        console.print()
    console.print(literal(f"==> {path} <==", "bold"))  # as head(1) and tail(1) name several files


def _run_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    reports = []
    for corpus in args.corpus or CORPUS_NAMES:
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
    console.print(literal(summary.text))
    if summary.method != "extractive":
        console.print(literal(f"written by {summary.model} (greedy decoding, no repeated 3-grams) from "
                              f"{summary.source_sentences} sentences", "dim"))  # fmt: skip
        return
    table = Table(title=literal(f"picked {len(summary.sentences)} of {summary.source_sentences} sentences "
                                f"({summary.model}: centrality + lead prior + MMR)"), title_justify="left")  # fmt: skip
    table.add_column("sentence no.", justify="right")  # 1-based, as a reader counts (JSON keeps 0-based indices)
    table.add_column("score", justify="right")
    table.add_column("sentence", justify="left")
    for i, s, text in zip(summary.indices, summary.scores, summary.sentences, strict=True):
        table.add_row(str(i + 1), f"{s:.3f}", literal(text))
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
                     "abstractive": f"abstractive ({SMOLLM2}, no repeated 3-grams)"}.get(s.name, s.name)  # fmt: skip
            table.add_row(label, f"{100 * s.rouge1:.1f}", f"{100 * s.rouge2:.1f}", f"{100 * s.rougeL:.1f}")
        title = (f"[bold]{r.corpus}[/]: ROUGE F1 x 100 of one-sentence summaries, N={r.n} "
                 f"({r.split or 'all'} split, seed {r.seed}, Porter stemming)")  # fmt: skip
        tables.append((title, table))
    console = stdout_console(*(t for _, t in tables))
    for title, table in tables:
        console.print(title)
        console.print(table)
