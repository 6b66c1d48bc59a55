"""``attnkit qa``'s question loop: one question, every line of standard input, or a prompt on a terminal.

The models are loaded and the context files embedded once (:func:`~attnkit.apps.qa.core.answer_many`),
so the second and later questions cost one retrieval and one generation each.

* ``attnkit qa "question" --context F`` answers that question;
* ``attnkit qa --context F < questions.txt`` (standard input not a terminal) answers every
  non-empty line; with ``--json`` it prints one JSON object per line (JSON Lines), as soon as
  each answer is ready;
* ``attnkit qa --context F`` on a terminal prompts ``question>`` until an empty line, ``quit``
  or end of input (Ctrl-D).

The printed answer is the model's reply as written, once; evidence locations are
``file:line`` with the 1-based line of the context file where the sentence starts.

Example:
    >>> import io
    >>> list(questions_from(None, io.StringIO("Who?\\n\\n  What?  \\n")))
    ['Who?', 'What?']
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import TextIO

__all__ = ["questions_from", "ask", "print_answer"]

PROMPT = "question> "
SMOLLM2 = "SmolLM2-135M-Instruct"
_STOP = {"", "quit", "exit", "q"}


def questions_from(question: str | None, stdin: TextIO) -> Iterator[str]:
    """The questions to answer: ``question`` alone, else stdin's non-empty lines, else a terminal prompt."""
    if question is not None:
        yield question
    elif _is_terminal(stdin):
        yield from _prompt(stdin)
    else:
        yield from (line.strip() for line in stdin if line.strip())


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _prompt(stdin: TextIO) -> Iterator[str]:
    print("Ask about the context; an empty line or Ctrl-D ends.", file=sys.stderr)
    while True:
        print(PROMPT, end="", file=sys.stderr, flush=True)
        line = stdin.readline()
        if not line or line.strip().lower() in _STOP:
            print(file=sys.stderr)
            return
        yield line.strip()


def ask(args, stdin: TextIO | None = None) -> int:
    """Answer the questions of ``args`` (see the module docstring); 0 on success."""
    from ...console import status
    from ..summarize.text import read_text
    from .core import answer_many

    stdin = sys.stdin if stdin is None else stdin
    paths = args.context or []
    if args.question is None and "-" in paths:
        raise ValueError("qa: --context - reads the context from standard input, which then cannot hold the "
                         "questions; give the question as an argument, or the context as a file")  # fmt: skip
    contexts = {path: read_text(path, what="context file") for path in paths}
    many = args.question is None
    prompting = many and _is_terminal(stdin)  # no spinner while the user types at the prompt
    answers = answer_many(questions_from(args.question, stdin), contexts or None, top_k=args.top_k,
                          max_new_tokens=args.max_new_tokens)  # fmt: skip
    retrieving = f"retrieving from {len(contexts)} file(s) with all-MiniLM-L6-v2, " if contexts else ""
    doing = f"qa: loading the models (once), {retrieving}generating up to {args.max_new_tokens} tokens with {SMOLLM2}"
    while True:
        if prompting:
            result = next(answers, None)
        else:
            with status(doing):
                result = next(answers, None)
        if result is None:
            return 0
        if args.json:
            data = result.to_dict()
            print(json.dumps(data, ensure_ascii=False) if many else json.dumps(data, indent=2, ensure_ascii=False),
                  flush=True)  # fmt: skip
        else:
            print_answer(result, with_question=many)


def print_answer(result, *, with_question: bool = False) -> None:
    """The answer (the model's reply, once), a dim line on how it was made, and the evidence table."""
    from ...console import literal, stdout_console

    table = _evidence_table(result) if result.evidence else None
    console = stdout_console(*([table] if table else []))
    if with_question:
        console.print(literal("Q: ", "bold") + literal(result.question))
    console.print(literal(result.reply or "(no answer)", "bold"))
    console.print(literal(f"{result.mode}, {result.model}, {result.prompt_tokens} prompt tokens", "dim"))
    if table:
        console.print(table)
    if with_question:
        console.print()


def _evidence_table(result):
    from rich.table import Table

    from ...console import literal

    table = Table(title="supporting sentences (MiniLM cosine to the question)", title_justify="left")
    for name in ("#", "score", "file:line", "sentence"):
        table.add_column(name, justify="right" if name in ("#", "score") else "left")
    for rank, e in enumerate(result.evidence, 1):
        table.add_row(str(rank), f"{e.score:.3f}", literal(e.location), literal(e.passage.text))
    return table
