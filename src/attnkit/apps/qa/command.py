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
    add("question", help="the question, or 'eval' to score on questions built from CLDR facts (babel)")
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
    from ..summarize.text import read_text
    from .core import answer

    contexts = {path: read_text(path, what="context file") for path in args.context or []}
    result = answer(args.question, contexts or None, top_k=args.top_k, max_new_tokens=args.max_new_tokens)
    if args.json:
        print_json(result.to_dict())
        return 0
    table = _evidence_table(result) if result.evidence else None
    console = stdout_console(*([table] if table else []))
    console.print(f"[bold]{result.text or '(no answer)'}[/]")
    if result.reply and result.reply != result.text:
        console.print(f"[dim]reply: {result.reply}[/]")
    console.print(f"[dim]{result.mode}, {result.model}, {result.prompt_tokens} prompt tokens[/]")
    if table:
        console.print(table)
    return 0


def _evidence_table(result):
    from rich.table import Table

    table = Table(title="supporting sentences (MiniLM cosine to the question)", title_justify="left")
    for name, justify in (("#", "right"), ("score", "right"), ("source", "left"), ("sentence", "left")):
        table.add_column(name, justify=justify)
    for rank, e in enumerate(result.evidence, 1):
        table.add_row(str(rank), f"{e.score:.3f}", f"{e.passage.source}:{e.passage.index}", e.passage.text)
    return table


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
