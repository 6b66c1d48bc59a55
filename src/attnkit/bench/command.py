"""``attnkit bench``: the command line of the benchmark (``cli.py`` calls into here).

:func:`add_arguments` declares the options on a parser; :func:`run` does the
work and returns the exit code. ``python -m attnkit.bench`` is the same command.

Exit codes: 0 done (skipped cases and failing peers are results, not
failures); 1 nothing could be measured (the matmul calibration or every case
failed); 2 bad arguments; 130 interrupted (partial results are still written).

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="attnkit bench")
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["--quick", "--mask", "causal", "--L", "1k,2k"])
    >>> args.mask, args.L
    (['causal'], [1024, 2048])
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path
from typing import Any

# The benchmark modules import torch: they are imported inside the functions that run, so that
# `attnkit bench --help` starts without torch.
from .._argtypes import lengths
from ..console import literal
from .startup import startup_cases  # no torch: the startup suite measures other processes

__all__ = ["add_arguments", "run", "DEFAULT_LENGTHS", "QUICK", "SUITES"]

SUITES = ("grid", "overhead", "models", "all", "startup")
STARTUP_CASES = tuple(c.name for c in startup_cases())  #: names --case accepts
MASK_NAMES = ("none", "causal", "sliding", "document", "padding")  #: = cases.MASKS (a test checks); no torch for --help
PASS_NAMES = ("fwd", "fwdbwd")  #: = cases.PASSES
DEFAULT_LENGTHS = [1024, 2048, 4096, 8192, 16384, 32768, 65536]  #: the full grid's L axis
QUICK: dict[str, Any] = {  # --quick: about a minute on a quiet 2-core machine, all cases in one worker process
    "impl": ["attnkit-auto", "attnkit-tiled", "sdpa", "naive"],  # those registered
    "mask": ["none", "causal", "sliding"],
    "L": [1024, 2048],  # 4096 cost 101 s at load ~1 (naive alone ~35 s): over the minute
    "pass": ["fwd"],
    "min_time": 0.25,
}


# ---------------------------------------------------------------------- argument types
def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse



def _choices(valid: tuple[str, ...] | list[str], what: str):
    def parse(text: str) -> list[str]:
        import difflib

        tokens = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in tokens if t not in valid]
        if bad:
            close = difflib.get_close_matches(bad[0], valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise argparse.ArgumentTypeError(f"unknown {what} {bad[0]!r}; choose from {', '.join(valid)}{hint}")
        return tokens

    return parse


def _impl_patterns(text: str) -> list[str]:
    """Names or shell patterns (``attnkit-*``), comma-separated; each must match something."""
    from .impls import implementations

    names = list(implementations())
    tokens = [t.strip() for t in text.split(",") if t.strip()]
    for token in tokens:
        if not fnmatch.filter(names, token):
            raise argparse.ArgumentTypeError(
                f"{token!r} matches no implementation; choose from {', '.join(names)} (patterns like 'attnkit-*' work)"
            )
    return tokens


# ---------------------------------------------------------------------- parser
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``attnkit bench`` options on ``parser``."""
    add = parser.add_argument
    add("--suite", choices=SUITES, default="grid",
        help="grid: implementations x masks x L x pass; overhead: attention() vs SDPA call cost; "
             "models: MiniLM encoding and SmolLM2 decoding vs transformers (dev dependencies); all: the three; "
             "startup: cold and warm wall times of the first commands a user runs (not in 'all')")
    add("--quick", action="store_true",
        help="a small subset (~1 min on a quiet machine): L 1k,2k; masks none,causal,sliding; fwd; "
             "attnkit-auto/tiled, sdpa, naive; all in one worker process")
    add("--impl", type=_impl_patterns, action="extend", metavar="NAMES",
        help="implementations, comma-separated or repeated; patterns work, e.g. attnkit-auto,sdpa or 'attnkit-*' "
             "(default: all; a name that matches none lists them)")
    add("--mask", type=_choices(MASK_NAMES, "mask"), action="extend", metavar="NAMES",
        help=f"masks: {', '.join(MASK_NAMES)}")
    add("--L", type=lengths, action="extend", metavar="LENGTHS",
        help="sequence lengths, e.g. 1024,4k,64k (default: 1k..64k, powers of 2)")
    add("--pass", dest="pass_", type=_choices(PASS_NAMES, "pass"), action="extend", metavar="PASS",
        help="fwd, fwdbwd or both (default: both)")
    add("--repeats", type=_positive(int),
        help="exactly this many timed runs (default: adaptive, >= 3 runs and ~1 s); "
             "startup suite: warm runs (default: 3)")
    add("--once", action="store_true",
        help="one call per case, both timed and memory-measured (long L: a call takes seconds to minutes)")
    add("--threads", type=_positive(int), default=2, help="torch threads in every worker")
    add("--max-memory", type=_positive(float), default=16.0, metavar="GIB",
        help="skip cases whose estimated memory exceeds this many GiB")
    add("--timeout", type=_positive(float), default=1800.0, metavar="S",
        help="kill a case's worker after this many seconds")
    add("--batch", type=_positive(int), default=1, help="B")
    add("--heads", type=_positive(int), default=8, help="H")
    add("--head-dim", type=_positive(int), default=64, help="D")
    add("--dry-run", action="store_true", help="list the cases and why some would be skipped; run nothing")
    add("--json", action="store_true", help="print the results as JSON on stdout (progress goes to stderr)")
    add("--out", type=Path, metavar="DIR", help="write results.json, report.md and plot.png into DIR")  # fmt: skip
    startup = parser.add_argument_group("startup suite (--suite startup)")
    startup.add_argument("--source", type=Path, metavar="DIR",
                         help="the attnkit checkout to measure (its src/ goes on PYTHONPATH; default: this attnkit)")
    startup.add_argument("--compare", type=Path, metavar="RESULTS_JSON",
                         help="an earlier startup results.json (e.g. the 'before') to show beside this run")
    startup.add_argument("--case", dest="cases", type=_choices(STARTUP_CASES, "startup case"), action="extend",
                         metavar="NAMES", help=f"only these cases: {', '.join(STARTUP_CASES)}")
    startup.add_argument("--with-translate-demo", action="store_true",
                         help="also time `attnkit translate demo` (it trains a model: minutes)")
    add("--resume", action="store_true",
        help="with --out: keep the grid cases DIR/results.json already holds, run only the others, "
             "and write one report of both (a long grid in several runs, or after an interruption)")


def _selection(args) -> dict:
    """The grid axes after --quick defaults and filters."""
    from .cases import MASKS, PASSES
    from .impls import implementations

    registry = list(implementations())
    quick = args.quick
    impl_patterns = args.impl or (QUICK["impl"] if quick else ["*"])
    impls = [n for n in registry if any(fnmatch.fnmatch(n, p) for p in impl_patterns)]
    return {
        "impls": impls,
        "masks": args.mask or (QUICK["mask"] if quick else list(MASKS)),
        "lengths": args.L or (QUICK["L"] if quick else DEFAULT_LENGTHS),
        "passes": args.pass_ or (QUICK["pass"] if quick else list(PASSES)),
        "min_time": QUICK["min_time"] if quick else 1.0,
    }


def _command_line(args, sel: dict) -> str:
    parts = ["attnkit bench", f"--suite {args.suite}", f"--impl {','.join(sel['impls'])}",
             f"--mask {','.join(sel['masks'])}", f"--L {','.join(map(str, sel['lengths']))}",
             f"--pass {','.join(sel['passes'])}", f"--threads {args.threads}", f"--max-memory {args.max_memory:g}",
             f"--batch {args.batch} --heads {args.heads} --head-dim {args.head_dim}"]  # fmt: skip
    if args.quick:
        parts.append("--quick")
    if args.repeats:
        parts.append(f"--repeats {args.repeats}")
    if args.once:
        parts.append("--once")
    return " ".join(parts)


# ---------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> int:
    """Run ``attnkit bench`` with parsed ``args``; return the exit code."""
    from rich.console import Console

    from .cases import GiB
    from .report import machine_info
    from .runner import case_key, load_resumable, plan

    err = Console(stderr=True)
    stream = sys.stderr if args.json else sys.stdout  # with --json, stdout carries only JSON
    out = Console(stderr=args.json, width=None if stream.isatty() else 200)  # files and pipes get full rows
    sel = _selection(args)
    if not sel["impls"]:
        err.print("attnkit bench: --impl selects no implementation that is registered here")
        return 2
    if args.resume and not args.out:
        err.print("attnkit bench: --resume needs --out DIR (the results.json to resume from)")
        return 2
    if args.suite == "startup":
        return _run_startup(args, out, err)
    doc: dict[str, Any] = {
        "schema": "attnkit.bench/1",
        "machine": machine_info(args.threads),
        "config": {"command": _command_line(args, sel), "B": args.batch, "H": args.heads, "D": args.head_dim,
                   "threads": args.threads},
        "matmul": None,
        "grid": [],
        "overhead": [],
        "models": [],
    }
    code = 0
    if args.suite in ("grid", "all"):
        planned = plan(sel["impls"], sel["masks"], sel["lengths"], sel["passes"],
                       max_bytes=int(args.max_memory * GiB), B=args.batch, H=args.heads, D=args.head_dim,
                       threads=args.threads, repeats=args.repeats, min_time=sel["min_time"],
                       once=args.once)  # fmt: skip
        kept: list[dict] = []
        if args.resume:
            try:
                kept, doc["config"]["earlier"] = load_resumable(args.out / "results.json", doc["config"])
            except ValueError as e:
                err.print(literal(f"attnkit bench: --resume: {e}"))
                return 2
            done = {case_key(r) for r in kept if r.get("status") != "skipped"}
            planned = [(c, r) for c, r in planned if case_key(c.to_json()) not in done]
        if args.dry_run:
            return _print_plan(planned, out)
        code = _run_grid(doc, planned, args, err, kept)
    one_process = {"overhead": "overhead suite: attention(backend='auto') vs torch SDPA ...",
                   "models": "models suite: MiniLM encoding and SmolLM2 decoding vs transformers ..."}  # fmt: skip
    for name, status in one_process.items():
        if args.suite in (name, "all") and code != 130 and not args.dry_run:
            code = _run_suite(doc, name, args, err, status) or code
    _emit(doc, args, out, err)
    return code


def _run_startup(args, out, err) -> int:
    """``--suite startup``: time the first commands (cold, warm) as subprocesses; write the report."""
    from .report import machine_info
    from .startup import find_source, loadavg, run_startup
    from .startup_report import SCHEMA, load_compare

    try:
        find_source(args.source)
        compare = load_compare(args.compare) if args.compare else None
    except ValueError as e:
        err.print(literal(f"attnkit bench: {e}"))
        return 2
    options = [f"--source {args.source}" if args.source else "", f"--repeats {args.repeats}" if args.repeats else "",
               "--with-translate-demo" if args.with_translate_demo else "",
               f"--case {','.join(args.cases)}" if args.cases else ""]  # fmt: skip
    command = " ".join(["attnkit bench --suite startup", *filter(None, options)])
    doc: dict[str, Any] = {"schema": SCHEMA, "machine": machine_info(args.threads), "config": {"command": command},
           "load_start": loadavg()}  # fmt: skip
    with err.status("startup suite ...") as status:
        doc["startup"] = run_startup(args.source, repeats=args.repeats or 3, timeout=args.timeout, only=args.cases,
                                     opt_in=("translate-demo",) if args.with_translate_demo else (),
                                     on_start=lambda c: status.update(literal(f"startup: {c.what} ...")))  # fmt: skip
    doc["load_end"] = loadavg()
    _emit_startup(doc, args, out, err, compare)
    return 0 if all(r["status"] in ("ok", "unsupported") for r in doc["startup"]["rows"]) else 1


def _emit_startup(doc: dict, args, out, err, compare: dict | None) -> None:
    from rich.table import Table
    from rich.text import Text

    from .startup_report import COLUMNS, startup_rows, write_startup

    if args.json:
        sys.stdout.write(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    else:
        table = Table(title="startup: wall seconds, cold and warm")
        for col in COLUMNS:
            table.add_column(col, overflow="fold")
        for row in startup_rows(doc["startup"]["rows"]):
            table.add_row(*(Text(cell) for cell in row))  # literal text: error lines may hold [brackets]
        out.print(table)
    if args.out:
        for path in write_startup(doc, args.out, compare):
            (err if args.json else out).print(literal(f"wrote {path}"))


def _run_suite(doc: dict, name: str, args, err, status: str) -> int:
    """Run a one-process suite (overhead, models) in a worker; its rows go to ``doc[name]``; 1 on failure."""
    from .runner import run_worker

    with err.status(status):
        res = run_worker({"mode": name, "threads": args.threads, "quick": args.quick},
                         threads=args.threads, timeout=args.timeout)  # fmt: skip
    doc[name] = res.get("rows", [])
    if res.get("status") != "ok":
        doc[f"{name}_error"] = res.get("error")
        err.print(literal(f"{name} suite failed: {res.get('error')}"))
        return 1
    return 0


def _run_grid(doc: dict, planned: list, args, err, kept: list[dict]) -> int:
    """Calibrate the matmul rate, run the planned cases with a progress bar, fill doc['grid'].

    ``kept`` are results of an earlier run (``--resume``); they join the report, in grid order.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .report import write_outputs
    from .runner import derive, matmul_ceiling, merge_results, run_cases
    from .worker import matmul_shapes

    lengths = sorted({c.L for c, reason in planned if reason is None and c.L <= 4096}) or [1024]
    shapes = matmul_shapes(args.heads * args.batch, args.head_dim, lengths)  # attention's own GEMMs, and a square one
    matmul_request = {"mode": "matmul", "threads": args.threads, "shapes": shapes,
                      "min_time": 0.25 if args.quick else 0.5}  # fmt: skip
    measurements: list[dict] = []
    collected: list[dict] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    interrupted = False
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("bench", total=len(planned))

        def on_result(result: dict) -> None:
            collected.append(result)
            progress.advance(task)
            if args.out and len(collected) % 10 == 0:  # keep partial results on disk during long runs
                gflops = matmul_ceiling(measurements)["gflops"]
                write_outputs({**doc, "grid": derive(merge_results(kept, collected), gflops), "partial": True},
                              args.out)  # fmt: skip

        try:
            progress.update(task, description="matmul rate (before the cases)")
            run_cases(planned, timeout=args.timeout, on_result=on_result, earlier=kept,
                      on_start=lambda c: progress.update(task, description=c.label), shared=_shared(args),
                      matmul=matmul_request, on_matmul=measurements.append)  # fmt: skip
        except KeyboardInterrupt:
            interrupted = True
    doc["matmul"] = matmul_ceiling(measurements)
    gflops = doc["matmul"]["gflops"]
    if gflops is None:
        err.print(literal(f"matmul calibration failed: {doc['matmul'].get('error')}; '% mm' will be empty"))
    doc["grid"] = derive(merge_results(kept, collected), gflops)
    if interrupted:
        doc["partial"] = True
        err.print(f"interrupted after {len(collected)} of {len(planned)} cases; writing what was measured")
        return 130
    ran = [r for r in collected if r["status"] != "skipped"]
    if gflops is None or (ran and all(r["status"] != "ok" for r in ran)):
        return 1
    return 0


def _shared(args) -> bool:
    """--quick runs every case in one worker process (one torch import); --once never does (long L, memory)."""
    return bool(args.quick and not args.once)


def _print_plan(planned: list, out) -> int:
    from rich.table import Table

    table = Table(title=f"{len(planned)} cases ({sum(r is None for _, r in planned)} to run)")
    for col in ("impl", "mask", "L", "pass", "plan"):
        table.add_column(col, overflow="fold")
    for case, reason in planned:
        plan_cell = literal("run" if reason is None else f"skip: {reason}")
        table.add_row(case.impl, case.mask, str(case.L), case.pass_, plan_cell)
    out.print(table)
    return 0


def _emit(doc: dict, args, out, err) -> None:
    from .report import rich_tables, write_outputs

    if args.json:
        sys.stdout.write(json.dumps(doc, indent=1, allow_nan=False) + "\n")
        sys.stdout.flush()
    else:
        for table in rich_tables(doc):
            out.print(table)
    if args.out:
        for path in write_outputs(doc, args.out):
            (err if args.json else out).print(literal(f"wrote {path}"))
