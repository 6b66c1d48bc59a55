"""``attnkit qa "question" [--context FILE ...]``, and ``attnkit qa eval`` on the CLDR question set.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="attnkit qa")
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["Who wrote it?", "--context", "a.txt", "b.txt"])
    >>> args.question, args.context
    ('Who wrote it?', ['a.txt', 'b.txt'])
"""

from __future__ import annotations

import argparse

from ..summarize.console import print_json, progress_bar, stdout_console

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``attnkit qa`` options on ``parser``."""
    add = parser.add_argument
    add("question", nargs="?",
        help="the question, or 'eval' to score on questions built from CLDR facts (babel); without it, every line "
             "of standard input is a question (a prompt on a terminal), with the models loaded once")
    add("--context", action="extend", nargs="+", metavar="FILE",
        help="UTF-8 text files to answer from ('-' = stdin); without them the model answers closed-book")
    add("--top-k", type=int, default=3, metavar="K", help="sentences retrieved into the prompt (default 3)")
    add("--max-new-tokens", type=int, default=24, metavar="N", help="answer length limit in tokens (default 24)")
    add("--limit", type=int, default=50, metavar="N", help="eval: number of questions (default 50)")
    add("--seed", type=int, default=0, help="eval: question sampling seed (default 0)")
    add("--distractors", type=int, default=4, metavar="N", help="eval: distractor documents per question (default 4)")
    add("--closed-book", action="store_true", help="eval: also ask SmolLM2 without context (twice the time)")
    add("--json", action="store_true", help="print machine-readable JSON")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if args.question == "eval":
        return _run_eval(args)
    from .ask import ask

    return ask(args)


def _run_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    with progress_bar("qa eval") as update:
        report = evaluate(limit=args.limit, seed=args.seed, distractors=args.distractors, top_k=args.top_k,
                          closed_book=args.closed_book, progress=update)  # fmt: skip
    if args.json:
        print_json(report.to_dict(with_predictions=True))
        return 0
    from rich.table import Table

    def pct(x):
        return "—" if x is None else f"{100 * x:.1f}"

    title = (f"[bold]CLDR questions[/], N={report.n} (seed {report.seed}; each with {report.distractors} distractor "
             f"documents; top-{report.top_k} sentences in the prompt)")  # fmt: skip
    table = Table()
    for name in ("system", "EM", "F1", "retrieval@1", f"retrieval@{report.top_k}"):
        table.add_column(name, justify="left" if name == "system" else "right")
    for name, s in report.systems.items():
        table.add_row(name, pct(s.exact_match), pct(s.f1), pct(s.retrieval_at_1), pct(s.retrieval_at_k))
    rel = Table()
    for name in ("relation", "n", "EM", "F1", "retrieval@1"):
        rel.add_column(name, justify="left" if name == "relation" else "right")
    for name, r in report.by_relation.items():
        rel.add_row(name, str(r["n"]), pct(r["exact_match"]), pct(r["f1"]), pct(r["retrieval_at_1"]))
    console = stdout_console(table, rel)
    console.print(title)
    console.print(table)
    console.print("[bold]attnkit by relation[/]")
    console.print(rel)
    return 0
