"""``attnkit qa "question" [--context FILE ...]``, and ``attnkit qa eval`` on the CLDR question set.

``--context`` takes one file and is repeated for several (``--context a.txt --context
b.txt``), so options and the question may come in any order.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="attnkit qa")
    >>> add_arguments(parser)
    >>> args = parser.parse_intermixed_args(["--context", "a.txt", "Who wrote it?", "--context", "b.txt"])
    >>> args.question, args.context
    ('Who wrote it?', ['a.txt', 'b.txt'])
"""

from __future__ import annotations

import argparse

from ..._argtypes import nonnegative_int, positive_int
from ...console import print_json, progress_bar, stdout_console

__all__ = ["add_arguments", "run", "ACTIONS"]

#: action -> one line of help; without an action, `attnkit qa "question"` answers the question
ACTIONS = {"eval": "exact match, F1 and retrieval accuracy on questions built from CLDR facts (babel)"}
SMOLLM2 = "SmolLM2-135M-Instruct"


def add_arguments(parser: argparse.ArgumentParser, action: str | None = None) -> None:
    """Declare the options of ``attnkit qa [eval]`` on ``parser``."""
    add = parser.add_argument
    if action == "eval":
        add("--limit", type=positive_int, default=50, metavar="N", help="number of questions")
        add("--seed", type=int, default=0, metavar="S", help="question sampling seed")
        add("--distractors", type=nonnegative_int, default=4, metavar="N", help="distractor documents per question")
        add("--closed-book", action="store_true", help=f"also ask {SMOLLM2} without context (twice the time)")
    else:
        add("question", nargs="?",
            help="the question (quote it); without it, every line of standard input is a question (a question> "
                 "prompt on a terminal), the models loaded once")
        add("--context", action="append", metavar="FILE",
            help="a UTF-8 text file to answer from ('-' = stdin); repeat for several: --context a.txt --context "
                 "b.txt (default: none, the model answers closed-book)")
        add("--max-new-tokens", type=positive_int, default=24, metavar="N", help="answer length limit in tokens")
        hint = "one question per call, in quotes; several context files: --context a --context b"
        parser.unknown_hint = hint  # type: ignore[attr-defined]  # read by attnkit.cli.Parser
    add("--top-k", type=positive_int, default=3, metavar="K", help="sentences retrieved into the prompt")
    add("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    if args.action == "eval":
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
