"""Terminal helpers of the ``attnkit`` subcommands: consoles, literal text, status lines, progress, JSON.

Library code never prints; the subcommands use these so that every command
behaves the same way:

* results go to stdout (:func:`stdout_console`, :func:`print_json`); notes,
  status lines and progress bars to stderr, so ``--json`` output stays clean;
* text that comes from the user, a file or a model is printed **literally**:
  wrap it in :func:`literal` (a rich ``Text``), never paste it into a markup
  string, or ``a[k]`` prints as ``a`` and ``[red]x[/red]`` as a red ``x``;
* a step that takes more than a moment says what it does on a terminal
  (:func:`status`, :func:`progress_bar`) and prints nothing when stderr is a
  pipe or a file, so logs and pipes get no spinners or ANSI codes.

Example:
    >>> print_json({"a": 1})
    {
      "a": 1
    }
    >>> console = stdout_console()
    >>> with console.capture() as out:
    ...     console.print(literal("a[k] [red]x[/red] :smile: C:\\\\dir\\\\"))
    >>> out.get()
    'a[k] [red]x[/red] :smile: C:\\\\dir\\\\\\n'
    >>> with status("loading a model"):  # on a terminal: a spinner on stderr; here: nothing
    ...     pass
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

__all__ = ["literal", "status", "progress_bar", "print_json", "stdout_console", "stderr_console", "on_terminal"]


def literal(value: object, style: str = "") -> Text:
    """``str(value)`` as rich ``Text``: printed as is, never read as markup (``[b]``) or emoji codes (``:x:``).

    Use it for every string from the user, a file or a model, in tables and lines;
    compose a line with ``rich.text.Text.assemble(("label", "bold"), literal(s))``.
    """
    from rich.text import Text

    return Text(str(value), style=style)


def on_terminal(stream=None) -> bool:
    """Whether ``stream`` (default stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def stdout_console(*tables) -> Console:
    """A rich console on stdout without syntax highlighting or emoji codes, wide enough for ``tables``.

    Numbers are never squeezed into ellipses: when a table needs more columns than
    the terminal has, the console is widened and the terminal wraps instead. Piped or
    redirected output is never word-wrapped either (rich would break lines at 80
    columns), so a long sentence or path stays on one line, as it came.
    """
    from rich.console import Console
    from rich.measure import Measurement

    soft_wrap = not on_terminal(sys.stdout)
    console = Console(highlight=False, emoji=False, soft_wrap=soft_wrap)
    if tables:
        unbounded = console.options.update(max_width=10_000)
        needed = max(Measurement.get(console, unbounded, t).maximum for t in tables)
        if needed > console.width:
            console = Console(highlight=False, emoji=False, soft_wrap=soft_wrap, width=needed)
    return console


def stderr_console() -> Console:
    """A rich console on stderr (status, progress and notes, never results)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, emoji=False)


@contextmanager
def status(message: str) -> Iterator[None]:
    """Show ``message`` with a spinner on stderr while the block runs, if stderr is a terminal.

    ``message`` says what is happening, e.g. ``status("loading SmolLM2-135M-Instruct")``;
    it is printed literally. Piped or redirected stderr gets nothing.
    """
    if not on_terminal():
        yield
        return
    with stderr_console().status(literal(message)):
        yield


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A transient progress bar on stderr; yields ``update(done, total)``. Silent when stderr is no terminal."""
    if not on_terminal():
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=stderr_console(), transient=True) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def print_json(data) -> None:
    """``data`` as indented JSON on stdout (non-ASCII kept)."""
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
