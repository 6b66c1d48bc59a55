"""``attnkit lab heads``: how to choose num_heads and d_model, measured on a translation corpus.

::

    attnkit lab heads [--corpus gettext|numbers-dates|tsv:PATH] [--pair en-fr]
                      [--sweep heads|head-dim|shape|all] [--seeds 3] [--steps N | --minutes M]
                      [--d-model 64] [--layers 2] [--out out/lab/heads] [--resume] [--json]

Every point of a sweep is trained with the same number of updates on the same batches
(the same tokens) for each of ``--seeds`` seeds, then scored on the validation split
(BLEU, chrF, loss) and timed (training and decoding tokens/s). ``--minutes M`` measures
the cost of each configuration first and sets the number of updates so the whole sweep
fits in M minutes. The results go to ``OUT/results.json`` after every run, so
``--resume`` continues an interrupted sweep; the end prints the quality-vs-cost
frontier and the recommended configuration.

Library code: :mod:`attnkit.lab.sweep`. This module imports torch only inside :func:`run`.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_arguments(parser)
    >>> parser.parse_args(["--sweep", "heads", "--steps", "300"]).sweep
    'heads'
"""

from __future__ import annotations

import argparse

from .._argtypes import positive_float, positive_int

__all__ = ["add_arguments", "run", "SWEEPS", "DEFAULT_OUT"]

#: the three sweeps of the issue (A, B, C of "Attention Is All You Need", table 3); kept equal to sweep.SWEEPS
SWEEPS = ("heads", "head-dim", "shape")
DEFAULT_OUT = "out/lab/heads"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``attnkit lab heads``."""
    add = parser.add_argument
    add("--corpus", default="gettext", metavar="NAME", help="gettext | numbers-dates | tsv:PATH")
    add("--pair", default=None, metavar="SRC-TGT", help="language pair (default: the corpus's, en-fr for gettext)")
    add("--sweep", default="all", choices=(*SWEEPS, "all"),
        help="heads: num_heads at fixed d_model; head-dim: d_k reduced at fixed heads; "
             "shape: d_model and layers at fixed head_dim")  # fmt: skip
    add("--seeds", type=positive_int, default=3, metavar="N", help="seeds per point (the spread is the noise floor)")
    add("--steps", type=positive_int, default=None, metavar="N", help="updates per run (default: 300)")
    add("--minutes", type=positive_float, default=None, metavar="M",
        help="fit the whole sweep into M minutes (measures each configuration, then sets --steps)")
    add("--d-model", type=positive_int, default=None, metavar="D", help="d_model of the heads/head-dim sweeps "
        "(default: 64)")  # fmt: skip
    add("--layers", type=positive_int, default=None, metavar="N", help="encoder = decoder layers (default: 2)")
    add("--max-tokens", type=positive_int, default=None, metavar="N", help="padded tokens per batch (default: 1024)")
    add("--lr-scale", type=positive_float, default=None, metavar="X",
        help="multiplies the inverse-square-root schedule, peak d_model^-0.5 warmup^-0.5 (default: 0.25)")
    add("--vocab-size", type=positive_int, default=None, metavar="N",
        help="joint BPE vocabulary (default: 1000 for numbers-dates, else 2000)")
    add("--corpus-size", type=positive_int, default=None, metavar="N", help="pairs to keep / generate")
    add("--valid-sentences", type=positive_int, default=None, metavar="N",
        help="validation pairs decoded for BLEU/chrF (default: 200)")  # fmt: skip
    add("--out", default=DEFAULT_OUT, metavar="DIR", help="results.json, plots and the prepared corpus")
    add("--resume", action="store_true", help="keep the runs already in OUT/results.json and do the rest")


def run(args: argparse.Namespace) -> int:
    """Run the sweep (:func:`attnkit.lab.sweep.run_sweep`), print the frontier and the recommendation."""
    import sys

    from ..console import print_json
    from . import sweep as lab
    from .render import print_summary
    from .summary import summarize, write_report_files

    _one_thread_when_busy(args)
    given = dict(corpus=args.corpus, pair=_pair(args), seeds=args.seeds, d_model=args.d_model, layers=args.layers,
                 max_tokens=args.max_tokens, lr_scale=args.lr_scale, corpus_size=args.corpus_size,
                 vocab_size=args.vocab_size, valid_sentences=args.valid_sentences,
                 out_dir=args.out, sweeps=lab.SWEEPS if args.sweep == "all" else (args.sweep,))  # fmt: skip
    config = lab.SweepConfig(**{k: v for k, v in given.items() if v is not None})
    extra = {"command": " ".join(["attnkit", *sys.argv[1:]])}
    saved = _saved_steps(config) if args.resume else None
    if args.steps or (saved and not args.minutes):  # --resume alone continues with the sweep's own budget
        config = lab.SweepConfig(**{**_fields(config), "steps": args.steps or saved})
    elif args.minutes:
        config = _fit(config, args.minutes, quiet=args.json, resume=args.resume)
    with _bar(not args.json) as update:
        doc = lab.run_sweep(config, resume=args.resume, progress=update, extra=extra)
    summary = summarize(doc)
    files = write_report_files(doc, summary, args.out)
    if args.json:
        print_json({**summary, "files": [str(f) for f in files]})
    else:
        print_summary(summary, files)
    return 0


def _saved_steps(config) -> int | None:
    """The updates per run of the sweep already in ``config.out_dir`` (None when there is none)."""
    import json
    from pathlib import Path

    from .sweep import RESULTS_NAME

    path = Path(config.out_dir) / RESULTS_NAME
    return json.loads(path.read_text(encoding="utf-8"))["config"]["steps"] if path.is_file() else None


def _pair(args) -> str | None:
    if args.pair:
        return args.pair
    return "en-fr" if args.corpus == "gettext" else None


def _fields(config) -> dict:
    import dataclasses

    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def _fit(config, minutes: float, *, quiet: bool, resume: bool):
    """``config`` with the steps per run that fit the sweep in ``minutes`` (kept from results.json on --resume)."""
    import json
    from pathlib import Path

    from ..console import status, stderr_console
    from . import sweep as lab

    saved = Path(config.out_dir) / lab.RESULTS_NAME
    if resume and saved.is_file():
        return lab.SweepConfig(**{**_fields(config), "steps": json.loads(saved.read_text())["config"]["steps"]})
    with status(f"lab heads: timing {len({p.key for p in config.points()})} shapes to fit the sweep in {minutes} min"):
        fit = lab.estimate_steps(config, lab.prepare_corpus(config), minutes)
    if fit["steps"] < 20:
        raise ValueError(f"--minutes {minutes}: the sweep affords only {fit['steps']} updates per run "
                         f"({len(config.points())} points x {config.seeds} seeds); give more minutes, fewer --seeds "
                         "or one --sweep")  # fmt: skip
    if not quiet:
        stderr_console().print(f"lab heads: {fit['steps']} updates per run fit in {minutes} min")
    return lab.SweepConfig(**{**_fields(config), "steps": fit["steps"]})


def _one_thread_when_busy(args) -> None:
    """One torch thread unless --threads says otherwise and the machine is busy (see translate's _auto_threads)."""
    import os

    import torch

    if args.threads is None and os.getloadavg()[0] >= (os.cpu_count() or 1):
        torch.set_num_threads(1)


def _bar(enabled: bool):
    """A progress bar over runs with the ETA (stderr, terminals only): yields ``update(done, total, what)``."""
    import time
    from contextlib import contextmanager, nullcontext

    from ..console import on_terminal, stderr_console

    if not enabled:
        return nullcontext(None)
    if not on_terminal():  # a log file: one line per run
        return nullcontext(lambda done, total, what: stderr_console().print(
            f"lab heads: run {min(done + 1, total)}/{total}: {what}  ({time.strftime('%H:%M:%S')})"))

    @contextmanager
    def bar():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                   TextColumn("ETA"), TimeRemainingColumn())  # fmt: skip
        with Progress(*columns, console=stderr_console(), transient=True) as progress:
            task = progress.add_task("lab heads", total=None)

            def update(done: int, total: int, what: str) -> None:
                progress.update(task, completed=done, total=total, description=f"lab heads: {what}")

            yield update

    return bar()
