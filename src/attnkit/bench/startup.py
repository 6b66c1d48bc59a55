"""The ``startup`` suite: wall times of the commands a new user runs first, cold and warm.

Each *case* is a command run as a subprocess of this one, exactly as a user
types it (``python -m attnkit ...``, or a ``python -c`` snippet for model
loads), with the interpreter running this suite and ``PYTHONPATH=<source>/src``,
so that any attnkit source tree can be measured — the old code for "before",
the merged code for "after" — with the same tool (``--source DIR``).

**Cold** = the case's first run with (1) a new, empty attnkit model cache: a
fresh temporary directory passed as ``ATTNKIT_CACHE_DIR`` (a cache that
converts GGUF to safetensors on first load builds it during this run), and
(2) no compiled bytecode of attnkit itself: every ``__pycache__`` folder under
``<source>/src/attnkit`` is deleted first, as after a fresh checkout. Every
case gets its own fresh cache directory, so one case's cold run never warms
another's. Not reset: the operating system's file cache (no root; torch and
the model files are usually in memory already) and other packages' bytecode —
"cold" is the first run after installing or updating attnkit, not the first
after a reboot.

**Warm** = the runs after the cold one, same cache directory and bytecode:
``repeats`` runs (default 3), fewer when a case's warm runs have taken more
than ``budget`` seconds (at least one). The median is reported with min-max.

Each run starts in a new, empty working directory (pictures a command writes
land there and are deleted), stdin is a pipe (empty unless the case feeds
questions), stdout and stderr are captured (so commands see no terminal and
print no progress), and the 1-minute load average is read before and after.

**qa next answer**: ``attnkit qa --context F`` with one question on stdin
and with three; *next answer* = (time with three - time with one) / 2, the
cost of each later question once the model is loaded. Where the measured
attnkit does not read questions from stdin (it exits with an error), the case
is marked *unsupported* with its error line.

Example:
    >>> [c.name for c in startup_cases()][:3]
    ['version', 'help', 'demo']
    >>> spread_summary([3.0, 1.0, 2.0])["median"]
    2.0
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "StartupCase",
    "startup_cases",
    "spread_summary",
    "find_source",
    "run_startup",
    "loadavg",
    "QA_CONTEXT",
    "QA_QUESTIONS",
    "INSPECT_SENTENCE",
]

INSPECT_SENTENCE = "The animal didn't cross the street because it was too tired"
QA_QUESTIONS = (
    "When was the Eiffel Tower completed?",
    "How tall is the Eiffel Tower?",
    "Who designed the Eiffel Tower?",
)
QA_CONTEXT = """\
The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.
It is named after the engineer Gustave Eiffel, whose company designed and built the tower.
Construction began in 1887 and the tower was completed in 1889.
It was built as the centrepiece of the 1889 World's Fair.
The tower is 330 metres tall, about the height of an 81-storey building.
It was the tallest man-made structure in the world until the Chrysler Building in New York was finished in 1930.
The tower has three levels for visitors, with restaurants on the first and second levels.
About seven million people visit the tower every year.
"""

_LOAD_SNIPPET = """\
import json, time
t0 = time.perf_counter()
{imports}
t1 = time.perf_counter()
model = {load}
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1}}))
"""
LOAD_SMOLLM2 = _LOAD_SNIPPET.format(imports="from attnkit.pretrained import ChatModel",
                                    load="ChatModel.from_pretrained()")  # fmt: skip
LOAD_MINILM = _LOAD_SNIPPET.format(imports="from attnkit.pretrained import SentenceEncoder",
                                   load="SentenceEncoder.from_pretrained()")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class StartupCase:
    """One command of the suite."""

    name: str  # short key, e.g. "qa-first"
    args: tuple[str, ...]  # after the interpreter: ("-m", "attnkit", ...) or ("-c", snippet)
    what: str  # the command as a user types it, for the report
    stdin: str = ""  # fed to the command's standard input
    opt_in: bool = False  # run only when asked (attnkit translate demo takes minutes)


def startup_cases(files: dict[str, str] | None = None) -> list[StartupCase]:
    """The suite's cases; ``files`` maps ``"context"`` and ``"text"`` to the input files' paths."""
    files = files or {"context": "CONTEXT.txt", "text": "TEXT.txt"}
    ctx, text = files["context"], files["text"]
    cli = ("-m", "attnkit")
    one_q = QA_QUESTIONS[0]
    return [
        StartupCase("version", (*cli, "--version"), "attnkit --version"),
        StartupCase("help", (*cli, "--help"), "attnkit --help"),
        StartupCase("demo", (*cli, "demo"), "attnkit demo"),
        StartupCase("qa-first", (*cli, "qa", one_q, "--context", ctx), f'attnkit qa "{one_q}" --context CONTEXT.txt'),
        StartupCase("qa-stdin-1", (*cli, "qa", "--context", ctx), "attnkit qa --context CONTEXT.txt < 1 question",
                    stdin=one_q + "\n"),  # fmt: skip
        StartupCase("qa-stdin-3", (*cli, "qa", "--context", ctx), "attnkit qa --context CONTEXT.txt < 3 questions",
                    stdin="\n".join(QA_QUESTIONS) + "\n"),  # fmt: skip
        StartupCase("summarize", (*cli, "summarize", text), "attnkit summarize TEXT.txt"),
        StartupCase("inspect", (*cli, "inspect", INSPECT_SENTENCE), f'attnkit inspect "{INSPECT_SENTENCE}"'),
        StartupCase("load-smollm2", ("-c", LOAD_SMOLLM2), "python -c 'ChatModel.from_pretrained()' (SmolLM2-135M)"),
        StartupCase("load-minilm", ("-c", LOAD_MINILM), "python -c 'SentenceEncoder.from_pretrained()' (MiniLM)"),
        StartupCase("translate-demo", (*cli, "translate", "demo"), "attnkit translate demo", opt_in=True),
    ]


def spread_summary(seconds: Sequence[float]) -> dict:
    """Median, min, max and count of ``seconds`` (``None`` figures for no runs)."""
    if not seconds:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds), "n": len(seconds)}


def loadavg() -> float | None:
    """The 1-minute load average (``/proc/loadavg``), None where unavailable."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def find_source(source: str | os.PathLike | None) -> Path:
    """The ``src`` folder holding the attnkit package to measure (a checkout's root or its ``src``)."""
    if source is None:
        import attnkit

        return Path(attnkit.__file__).resolve().parents[1]
    root = Path(source).expanduser().resolve()
    for candidate in (root / "src", root):
        if (candidate / "attnkit" / "__init__.py").is_file():
            return candidate
    raise ValueError(f"--source: {str(root)!r} holds no attnkit package (looked for src/attnkit/__init__.py "
                     "and attnkit/__init__.py); give the root of an attnkit checkout")  # fmt: skip


def _clear_bytecode(src: Path) -> int:
    """Delete every ``__pycache__`` under ``src/attnkit``; the number deleted."""
    folders = list((src / "attnkit").rglob("__pycache__"))
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return len(folders)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


Runner = Callable[[Sequence[str], dict, str, str, float], dict]


def run_command(argv: Sequence[str], env: dict, cwd: str, stdin: str, timeout: float) -> dict:
    """Run one command; its wall seconds, exit code, last output lines and the load average around it."""
    load_before = loadavg()
    start = time.perf_counter()
    try:
        proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, env=env, cwd=cwd,
                              timeout=timeout)  # fmt: skip
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired:
        rc, out, err = None, "", f"killed after the {timeout:g} s timeout"
    wall = time.perf_counter() - start
    row: dict[str, Any] = {"wall_s": wall, "rc": rc, "load_before": load_before, "load_after": loadavg()}
    if rc != 0:
        row["error"] = _last_line(err) or _last_line(out) or f"exit status {rc}"
    else:
        try:  # the load snippets print one JSON line of in-process timings
            inner = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
            if isinstance(inner, dict):
                row["inner"] = inner
        except (ValueError, IndexError):
            pass
    return row


def _measure_case(case: StartupCase, src: Path, work: Path, repeats: int, budget: float, timeout: float,
                  runner: Runner, files: dict) -> dict:  # fmt: skip
    """Cold run, then warm runs, of one case."""
    cache = Path(tempfile.mkdtemp(prefix=f"cache-{case.name}-", dir=work))
    env = {**os.environ, "PYTHONPATH": str(src), "ATTNKIT_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the cold run writes attnkit's bytecode, as a first run does
    argv = [sys.executable, *case.args]

    def once() -> dict:
        cwd = tempfile.mkdtemp(prefix=f"cwd-{case.name}-", dir=work)
        try:
            return runner(argv, env, cwd, case.stdin, timeout)
        finally:
            shutil.rmtree(cwd, ignore_errors=True)

    _clear_bytecode(src)
    cold = once()
    warm: list[dict] = []
    if cold["rc"] == 0:
        spent = 0.0
        while len(warm) < repeats and (not warm or spent < budget):
            warm.append(once())
            spent += warm[-1]["wall_s"]
            if warm[-1]["rc"] != 0:
                break
    shutil.rmtree(cache, ignore_errors=True)
    ok_warm = [r["wall_s"] for r in warm if r["rc"] == 0]
    row: dict[str, Any] = {"name": case.name, "command": case.what, "cold": cold, "warm_runs": warm,
                           "warm": spread_summary(ok_warm),
                           "status": "ok" if cold["rc"] == 0 and len(ok_warm) == len(warm) else "failed"}  # fmt: skip
    if row["status"] != "ok":
        row["error"] = cold.get("error") or next(r.get("error") for r in warm if r["rc"] != 0)
    return row


def _derive_next_answer(rows: list[dict]) -> dict | None:
    """The qa next-answer row from the stdin runs with one and with three questions."""
    by = {r["name"]: r for r in rows}
    one, three = by.get("qa-stdin-1"), by.get("qa-stdin-3")
    if one is None or three is None:
        return None
    row = {"name": "qa-next", "command": "attnkit qa --context CONTEXT.txt, each later question read from stdin",
           "derived": "(3 questions - 1 question) / 2"}  # fmt: skip
    if one["status"] != "ok" or three["status"] != "ok":
        failed = one if one["status"] != "ok" else three
        if failed["cold"].get("rc") == 2:  # a usage error: this attnkit has no stdin mode (argparse exits 2)
            for r in (one, three):
                r["status"] = "unsupported" if r["status"] != "ok" else r["status"]
            return {**row, "status": "unsupported", "error": failed.get("error")}
        return {**row, "status": "failed", "error": failed.get("error")}
    per = lambda a, b: None if a is None or b is None else (b - a) / (len(QA_QUESTIONS) - 1)  # noqa: E731
    warm = {"median": per(one["warm"]["median"], three["warm"]["median"]), "min": None, "max": None,
            "n": min(one["warm"]["n"], three["warm"]["n"])}  # fmt: skip
    cold = {"wall_s": per(one["cold"]["wall_s"], three["cold"]["wall_s"]), "rc": 0}
    return {**row, "status": "ok", "cold": cold, "warm": warm}


def write_inputs(folder: Path) -> dict[str, str]:
    """Write the qa context and the text to summarize into ``folder``; their paths."""
    import argparse
    import inspect

    context = folder / "CONTEXT.txt"
    context.write_text(QA_CONTEXT, encoding="utf-8")
    text = folder / "TEXT.txt"  # a real ~340-word text: the argparse module's documentation
    text.write_text(inspect.cleandoc(argparse.__doc__ or "") + "\n", encoding="utf-8")
    return {"context": str(context), "text": str(text)}


def run_startup(
    source: str | os.PathLike | None = None,
    *,
    repeats: int = 3,
    budget: float = 90.0,
    timeout: float = 900.0,
    only: Sequence[str] | None = None,
    opt_in: Sequence[str] = (),
    runner: Runner = run_command,
    on_start: Callable[[StartupCase], None] | None = None,
) -> dict:
    """Measure the startup cases against the attnkit in ``source``; the ``startup`` part of a results doc.

    ``only`` restricts to those case names; opt-in cases (``translate-demo``)
    run only when named in ``opt_in``. ``runner`` runs one command (tests pass a fake).
    """
    src = find_source(source)
    work = Path(tempfile.mkdtemp(prefix="attnkit-startup-"))
    try:
        files = write_inputs(work)
        cases = [c for c in startup_cases(files) if (not c.opt_in or c.name in opt_in)]
        if only:
            cases = [c for c in cases if c.name in only]
        rows = []
        for case in cases:
            if on_start:
                on_start(case)
            rows.append(_measure_case(case, src, work, repeats, budget, timeout, runner, files))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    derived = _derive_next_answer(rows)
    if derived:
        rows.append(derived)
    return {
        "source": str(src.parent if src.name == "src" else src),
        "revision": _revision(src),
        "interpreter": sys.executable,
        "repeats": repeats,
        "budget_s": budget,
        "rows": rows,
        "commands": [_shell_line(c).replace(str(work), "$INPUTS") for c in cases],
    }


def _revision(src: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(src), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10)  # fmt: skip
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _shell_line(case: StartupCase) -> str:
    import shlex

    feed = f"printf %s {shlex.quote(case.stdin)} | " if case.stdin else ""
    return f"{feed}PYTHONPATH=$SOURCE/src ATTNKIT_CACHE_DIR=$CACHE python {shlex.join(case.args)}"
