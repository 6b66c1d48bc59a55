"""Terminal helpers shared by the ``summarize``, ``qa`` and ``inspect`` subcommands.

Library code never prints; the subcommands use these to draw progress bars on
stderr (so ``--json`` on stdout stays clean) and to print JSON.

Example:
    >>> print_json({"a": 1})
    {
      "a": 1
    }
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["progress_bar", "print_json", "stdout_console", "stderr_console"]


def stdout_console(*tables):
    """A rich console on stdout without syntax highlighting, wide enough for ``tables``.

    Numbers are never squeezed into ellipses: when a table needs more columns than
    the terminal has, the console is widened and the terminal wraps instead.
    """
    from rich.console import Console
    from rich.measure import Measurement

    console = Console(highlight=False)
    if tables:
        unbounded = console.options.update(max_width=10_000)
        needed = max(Measurement.get(console, unbounded, t).maximum for t in tables)
        if needed > console.width:
            console = Console(highlight=False, width=needed)
    return console


def stderr_console():
    """A rich console on stderr (progress and notes, never results)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A transient progress bar on stderr; yields ``update(done, total)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr_console(), transient=True) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def print_json(data) -> None:
    """``data`` as indented JSON on stdout (non-ASCII kept)."""
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
