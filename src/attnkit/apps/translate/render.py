"""Printing for ``attnkit translate``: rich tables for people, JSON for programs (CLI side only)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from ...console import literal, on_terminal

if TYPE_CHECKING:  # rich is imported when a bar is shown
    from rich.progress import Progress, TaskID

__all__ = ["console", "print_corpus", "print_eval", "print_train_result", "print_demo", "stop_note", "TimeBar"]

# Corpus, model and path text is printed literally (corpus text like "[OPTION]" must print as is).
def _line(*parts):
    """A line of literal text pieces and ``(text, style)`` pairs: nothing in it is read as markup."""
    from rich.text import Text

    return Text.assemble(*parts)


def _mark(text, ok: bool):
    """``text`` literally, with a red ✗ after it unless ``ok``."""
    return _line(str(text), *(() if ok else ((" ✗", "red"),)))


def console(quiet: bool):
    """A rich console on stdout; ``quiet`` makes it print nothing (JSON mode, other ranks).

    Piped or redirected output is not word-wrapped (a sample translation stays on its line) and
    tables get up to 200 columns (rich would squeeze them into 80 and break words).
    """
    from rich.console import Console

    piped = not on_terminal(sys.stdout)
    return Console(quiet=quiet, highlight=False, emoji=False, soft_wrap=piped, width=200 if piped else None)


def _table(title: str, *columns: str, text: bool = False):
    """A table whose first column is a label and the others numbers (right-aligned), or all ``text``."""
    from rich.table import Table

    table = Table(title=literal(title), title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 or text else "right", overflow="fold")
    return table


def print_corpus(summary, out) -> None:
    """The corpus summary: one row per split, then a few example pairs."""
    table = _table(f"corpus {summary.corpus} ({summary.pair}, seed {summary.seed})", "split", "pairs",
                   "src words mean/max", "tgt words mean/max", "tgt chars mean", "src vocab", "tgt vocab")  # fmt: skip
    for s in summary.splits:
        table.add_row(s.name, f"{s.pairs:,}", f"{s.source_words_mean:.1f} / {s.source_words_max}",
                      f"{s.target_words_mean:.1f} / {s.target_words_max}", f"{s.target_chars_mean:.1f}",
                      f"{s.source_vocab:,}", f"{s.target_vocab:,}")  # fmt: skip
    out.print(table)
    out.print(literal(summary.note, "dim"))
    for source, target in summary.examples:
        out.print(_line(f"  {source}  ", ("->", "dim"), f"  {target}"))


def print_eval(report, pair: str, *, as_json: bool) -> None:
    """Model vs copy baseline, then examples."""
    if as_json:
        print(json.dumps({"pair": pair, **report.to_dict()}, indent=2, ensure_ascii=False))
        return
    out = console(False)
    table = _table(f"{pair} {report.split} split, {report.model.sentences} pairs, {report.decoding}, "
                   f"{report.seconds:.0f} s", "system", "BLEU", "chrF", "exact match %")  # fmt: skip
    for name, scores in (("model", report.model), ("copy source (baseline)", report.copy_baseline)):
        table.add_row(name, f"{scores.bleu:.1f}", f"{scores.chrf:.1f}", f"{scores.exact_match:.1f}")
    out.print(table)
    _print_examples(out, report.examples)


def _print_examples(out, examples) -> None:
    table = _table("examples", "source", "reference", "model", text=True)
    for source, reference, hypothesis in examples:
        table.add_row(literal(source), literal(reference), _mark(hypothesis, hypothesis == reference))
    out.print(table)


def print_train_result(result, *, as_json: bool) -> None:
    """Steps, time, final loss and validation scores, where the model is, what to run next."""
    if as_json:
        print(json.dumps({**result.to_dict(), "stopped": stop_note(result)}, indent=2, ensure_ascii=False))
        return
    out = console(False)
    table = _table("training", "", "")
    table.add_row("steps", literal(stop_note(result)))
    table.add_row("time", f"{result.seconds:.0f} s")
    if result.train_loss is not None:
        table.add_row("train loss (last window)", f"{result.train_loss:.3f}")
    if result.valid:
        v = result.valid
        table.add_row(f"valid ({v['sentences']} pairs, {v['decoding']})",
                      f"BLEU {v['bleu']:.1f}  chrF {v['chrf']:.1f}  exact {v['exact_match']:.1f}%")  # fmt: skip
    table.add_row("model", literal(result.model_dir))
    out.print(table)
    if result.under_trained:
        out.print(_line(("warning: ", "bold yellow"), stop_note(result)))
    run_dir = result.run_dir
    out.print(literal(f"next: attnkit translate eval --model {run_dir}    attnkit translate --model {run_dir} \"...\""))


def stop_note(result) -> str:
    """Why training stopped, in words: "1,200 of 1,200 steps", or the time cap and what it means.

    Example:
        >>> from pathlib import Path
        >>> from attnkit.apps.translate.train import TrainResult
        >>> stop_note(TrainResult(Path("run"), Path("run/model"), 1200, "max_steps", 200.0, 1.8, None, 1200))
        '1,200 of 1,200 steps'
        >>> stop_note(TrainResult(Path("run"), Path("run/model"), 900, "max_minutes", 60.0, 2.1, None, None))
        '900 steps (the --minutes budget ran out)'
    """
    if result.under_trained:
        return (f"{result.steps:,} of {result.planned_steps:,} steps: the --minutes cap stopped training early; "
                "the model is under-trained (scores below what the full run reaches)")  # fmt: skip
    if result.stop_reason == "max_minutes":
        return f"{result.steps:,} steps (the --minutes budget ran out)"
    if result.planned_steps is not None and result.stop_reason == "max_steps":
        return f"{result.steps:,} of {result.planned_steps:,} steps"
    return f"{result.steps:,} steps ({result.stop_reason})"


def print_demo(result, *, as_json: bool) -> None:
    """Everything the demo made, with paths."""
    if as_json:
        doc = {"train": {**result.train.to_dict(), "stopped": stop_note(result.train)},
               "eval": result.evaluation.to_dict(), "samples": [list(s) for s in result.samples],
               "alignment_png": str(result.alignment_png), "pair": result.pair}  # fmt: skip
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    print_train_result(result.train, as_json=False)
    print_eval(result.evaluation, result.pair, as_json=False)
    out = console(False)
    table = _table("more held-out sentences (beam search)", "source", "translation", "reference", text=True)
    for source, translation, reference in result.samples:
        table.add_row(literal(source), _mark(translation, translation == reference), literal(reference))
    out.print(table)
    out.print(literal(f"cross-attention alignment: {result.alignment_png}"))
    if result.train.under_trained:
        out.print(_line(("warning: ", "bold yellow"), stop_note(result.train)))


class TimeBar:
    """A rich progress bar for a wall-clock budget: elapsed and remaining time, step, loss, tokens/s.

    Fed by the ``"step"`` records of :func:`~attnkit.apps.translate.train_translation`; a
    no-op when ``minutes`` is None (the Trainer's own step bar is shown then) or disabled.
    """

    def __init__(self, minutes: float | None, *, enabled: bool = True):
        self.minutes, self.enabled = minutes, enabled and minutes is not None
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last: tuple[float, int] | None = None  # (time, tokens) of the previous rate sample

    def __enter__(self) -> TimeBar:
        if self.enabled and self.minutes is not None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("train"), BarColumn(), TextColumn("step {task.fields[step]}"),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
                TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
            )  # fmt: skip
            self._task = self._bar.add_task("train", total=60 * self.minutes, step="-", loss="-", tps="-")
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def update(self, record: dict) -> None:
        if self._bar is None or self._task is None:
            return
        import time

        now = time.monotonic()
        task = self._bar.tasks[0]
        fields: dict[str, Any] = {"step": f"{record['step']:,}", "loss": f"{record['loss']:.3f}"}
        if self._last is None or now - self._last[0] >= 2.0:
            if self._last is not None:
                fields["tps"] = f"{(record['tokens'] - self._last[1]) / (now - self._last[0]):,.0f}"
            self._last = (now, record["tokens"])
        self._bar.update(self._task, completed=min(task.elapsed or 0.0, task.total or 0.0), **fields)
