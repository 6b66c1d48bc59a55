"""Training history: one JSON object per line in ``out_dir/history.jsonl``, and the progress bar.

Each record is appended with a single ``write`` on a file opened in append mode and
flushed, so a crash loses at most the last line, which the reader skips. On resume the
file is cut back to the checkpoint's step (atomically: temp file + ``os.replace``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..checkpoint import write_atomic

__all__ = ["HistoryLog", "read_history", "Progress"]


def read_history(path: str | Path) -> list[dict]:
    """Records of a ``history.jsonl``; a damaged (partially written) line is skipped.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "h.jsonl"
        >>> _ = p.write_text('{"step": 1, "loss": 2.5}\\n{"step": 2, "lo')
        >>> read_history(p)
        [{'step': 1, 'loss': 2.5}]
    """
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class HistoryLog:
    """Append-only JSONL file of training records."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, record: dict) -> None:
        line = (json.dumps(record) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def rewind(self, step: int) -> list[dict]:
        """Keep the records up to ``step`` (those after it are redone on resume) and return them."""
        records = [r for r in read_history(self.path) if r.get("step", 0) <= step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in records))
        return records


class Progress:
    """A rich progress bar showing step, loss, tokens/s and ETA; a no-op when disabled."""

    def __init__(self, enabled: bool, total: int, completed: int):
        self._bar = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[tps]} tok/s"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            )  # fmt: skip
            self._task = self._bar.add_task("train", total=total, completed=completed, loss="-", tps="-")

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, step: int, loss: float | None = None, tokens_per_s: float | None = None) -> None:
        if self._bar is None:
            return
        fields: dict[str, Any] = {}  # rich's extra task fields (**fields: Any)
        if loss is not None:
            fields["loss"] = f"{loss:.4f}"
        if tokens_per_s is not None:
            fields["tps"] = f"{tokens_per_s:,.0f}"
        self._bar.update(self._task, completed=step, **fields)
