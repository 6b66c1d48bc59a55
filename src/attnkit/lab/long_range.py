"""``attnkit lab long-range``: how does self-attention capture long-range dependencies? Measured.

::

    attnkit lab long-range [--distances 4,16,64,256,1024] [--seeds 3] [--steps 800] [--budget 20000]
                           [--models transformer-1L,...] [--listops-steps 800] [--listops-lengths 16,64]
                           [--induction-distance 16]
                           [--pretrained-corpus DIR] [--no-pretrained] [--max-minutes M]
                           [--out out/lab/long-range] [--resume | --report-only] [--json]

Trains every model (Transformer 1 and 2 layers, 2 layers with a 4-token sliding window,
LSTM 1 and 2 layers; all at the same parameter budget, updates and examples) on
multi-query associative recall at each key -> query distance ``d``, on ListOps and on
induction at one distance, for
``--seeds`` seeds; then measures the mean attention distance per layer of the packaged
MiniLM and SmolLM2 over a text corpus found on this machine. Writes ``OUT/results.json``
(after every run: ``--resume`` continues), ``OUT/long_range.png`` and ``OUT/report.md``.

Library code: :mod:`attnkit.lab.distance` (the sweep) and :mod:`attnkit.lab.long_range_report`
(pretrained distances, plot, report). This module imports torch only inside :func:`run`.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["--distances", "4,16", "--seeds", "1"])
    >>> args.distances, args.seeds
    ((4, 16), 1)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._argtypes import names, positive_float, positive_int

__all__ = ["add_arguments", "run", "DEFAULT_OUT"]

DEFAULT_OUT = "out/lab/long-range"


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 4,16,64, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return values



def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``attnkit lab long-range``."""
    add = parser.add_argument
    add("--distances", type=_ints, default=(4, 16, 64, 256, 1024), metavar="D,D,...",
        help="key -> query distances of the recall task (default: 4,16,64,256,1024)")  # fmt: skip
    add("--seeds", type=positive_int, default=3, metavar="N", help="seeds per model and distance")
    add("--steps", type=positive_int, default=800, metavar="N", help="updates per recall run (every model)")
    add("--batch-size", type=positive_int, default=16, metavar="N", help="sequences per update")
    add("--budget", type=positive_int, default=20_000, metavar="P", help="parameters per model (matched)")
    add("--models", type=names, default=None, metavar="A,B",
        help="subset of transformer-1L,transformer-2L,transformer-2L-w4,lstm-1L,lstm-2L (default: all)")  # fmt: skip
    add("--eval-examples", type=positive_int, default=200, metavar="N", help="held-out sequences per run")
    add("--listops-steps", type=positive_int, default=800, metavar="N", help="updates per ListOps run")
    add("--listops-lengths", type=_ints, default=(16, 64), metavar="MIN,MAX",
        help="ListOps lengths, exclusive bounds (LRA: 500,2000) (default: 16,64)")  # fmt: skip
    add("--induction-distance", type=int, default=16, metavar="D",
        help="also train on the induction task at distance D (0: skip)")  # fmt: skip
    add("--pretrained-corpus", default=None, metavar="DIR",
        help="text files for the MiniLM/SmolLM2 attention distances (default: this package's docstrings)")  # fmt: skip
    add("--no-pretrained", action="store_true", help="skip the pretrained models' attention distances")
    add("--max-minutes", type=positive_float, default=None, metavar="M",
        help="stop starting new runs after M minutes (the results so far are kept; --resume continues)")  # fmt: skip
    add("--out", default=DEFAULT_OUT, metavar="DIR", help="results.json, long_range.png, report.md")
    add("--resume", action="store_true", help="keep the runs already in OUT/results.json and do the rest")
    add("--report-only", action="store_true",
        help="train nothing: (re)measure the pretrained models unless --no-pretrained, redraw the plot and report "
             "from OUT/results.json")  # fmt: skip


def _config(args: argparse.Namespace):
    from .distance import MODELS, LongRangeConfig

    lengths = args.listops_lengths
    if len(lengths) != 2:
        raise ValueError(f"lab long-range: --listops-lengths must be MIN,MAX, got {lengths}")
    return LongRangeConfig(distances=args.distances, seeds=args.seeds, steps=args.steps, batch_size=args.batch_size,
                           budget=args.budget, models=args.models or tuple(MODELS), eval_examples=args.eval_examples,
                           listops_steps=args.listops_steps, listops_lengths=(lengths[0], lengths[1]),
                           induction_distance=args.induction_distance or None)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Run the sweep, the pretrained measurement, then write the plot and the report."""
    from .. import console
    from .distance import load_results, run_sweep
    from .long_range_report import command_line, machine, measure_pretrained, write_report

    cfg = _config(args)
    out = Path(args.out)
    extra = {"command": command_line(sys.argv), "machine": machine()}
    if args.report_only:
        results = load_results(out / "results.json")
    else:
        with _progress() as update:
            results = run_sweep(cfg, out, resume=args.resume, max_minutes=args.max_minutes, extra=extra,
                                progress=update)  # fmt: skip
    if not args.no_pretrained and (args.report_only or "stopped" not in results):
        with console.status("mean attention distance of MiniLM and SmolLM2 over the corpus"):
            pretrained = measure_pretrained(out, args.pretrained_corpus)  # also written to OUT/pretrained.json
        results = {**results, "pretrained": pretrained}
    paths = write_report(out)
    if args.json:
        console.print_json({**results, "files": [str(p) for p in paths]})
    else:
        from .long_range_report import summary_tables

        tables = summary_tables(results)
        shell = console.stdout_console(*tables)
        for table in tables:
            shell.print(table)
        for p in paths:
            print(p)
    return 0


def _progress():
    """A progress bar over the sweep's work units with an ETA (silent when stderr is no terminal)."""
    from contextlib import contextmanager

    from .. import console

    @contextmanager
    def bar():
        if not console.on_terminal():
            yield lambda done, total, key: None
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        columns = (TextColumn("{task.description}", markup=False), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())  # fmt: skip
        with Progress(*columns, console=console.stderr_console(), transient=True) as progress:
            task = progress.add_task("long-range", total=None)
            yield lambda done, total, key: progress.update(task, completed=done, total=total, description=key)

    return bar()
