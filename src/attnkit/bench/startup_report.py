"""Tables and files of the ``startup`` suite: one run, or a "before" run beside this one.

Example:
    >>> row = {"name": "version", "command": "attnkit --version", "status": "ok",
    ...        "cold": {"wall_s": 4.0, "rc": 0}, "warm": {"median": 3.5, "min": 3.4, "max": 3.9, "n": 3}}
    >>> startup_rows([row])[0][:4]
    ['version', 'attnkit --version', '4.00', '3.50']
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ..checkpoint import write_atomic

__all__ = ["startup_rows", "compare_rows", "startup_markdown", "write_startup", "load_compare", "SCHEMA"]

SCHEMA = "attnkit.bench.startup/1"
COLUMNS = ("case", "command", "cold s", "warm s (median)", "warm min-max (n)", "in-process load s", "load avg", "note")
COMPARE_COLUMNS = ("case", "before cold s", "after cold s", "before warm s", "after warm s", "warm: after/before",
                   "load avg before / after")


def _s(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def _inner_load(row: dict) -> float | None:
    """Median in-process model load seconds of the warm runs (model-load snippets only)."""
    values = [r["inner"]["load_s"] for r in row.get("warm_runs", []) if isinstance(r.get("inner"), dict)]
    return statistics.median(values) if values else None


def _load_range(row: dict) -> str:
    runs = [row.get("cold") or {}, *row.get("warm_runs", [])]  # a derived row (qa-next) has none: "—"
    values = [v for r in runs for v in (r.get("load_before"), r.get("load_after")) if v is not None]
    return f"{min(values):.1f}-{max(values):.1f}" if values else "—"


def _note(row: dict) -> str:
    if row.get("status") == "unsupported":
        return f"unsupported by this attnkit: {row.get('error')}"
    if row.get("status") != "ok":
        return f"failed: {row.get('error')}"
    return f"derived: {row['derived']}" if row.get("derived") else ""


def startup_rows(rows: list[dict]) -> list[list[str]]:
    """One table row per case: cold, warm median with its spread, in-process load, load average, note."""
    out = []
    for r in rows:
        warm = r.get("warm") or {}
        spread = f"{_s(warm.get('min'))}-{_s(warm.get('max'))} ({warm.get('n', 0)})" if warm.get("min") is not None \
            else f"({warm.get('n', 0)})" if warm else "—"  # fmt: skip
        cold = (r.get("cold") or {}).get("wall_s")
        out.append([r["name"], r["command"], _s(cold), _s(warm.get("median")), spread, _s(_inner_load(r)),
                    _load_range(r), _note(r)])  # fmt: skip
    return out


def compare_rows(before: list[dict], after: list[dict]) -> list[list[str]]:
    """Cases of both runs side by side (by name, in the order of ``after`` then any left in ``before``)."""
    old = {r["name"]: r for r in before}
    names = [r["name"] for r in after] + [n for n in old if n not in {r["name"] for r in after}]
    new = {r["name"]: r for r in after}

    def figures(row: dict | None) -> tuple:
        if row is None or row.get("status") != "ok":
            return None, None
        return (row.get("cold") or {}).get("wall_s"), (row.get("warm") or {}).get("median")

    out = []
    for name in names:
        (bc, bw), (ac, aw) = figures(old.get(name)), figures(new.get(name))
        ratio = f"{aw / bw:.2f}x" if aw is not None and bw else "—"
        if old.get(name, {}).get("status") == "unsupported":
            ratio = "new (unsupported before)" if aw is not None else ratio
        loads = f"{_load_range(old[name]) if name in old else '—'} / {_load_range(new[name]) if name in new else '—'}"
        out.append([name, _s(bc), _s(ac), _s(bw), _s(aw), ratio, loads])
    return out


def _table(columns, rows) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]


def startup_markdown(doc: dict, compare: dict | None = None) -> str:
    """report.md of a startup run (and, with ``compare``, that earlier run beside it)."""
    m, s = doc["machine"], doc["startup"]
    lines = [
        "# attnkit startup: wall times of the first commands",
        "",
        f"- command: `{doc['config']['command']}`",
        f"- measured source: `{s['source']}` (revision {s.get('revision') or 'unknown'}), "
        f"interpreter `{s['interpreter']}`",
        f"- machine: {m['cpu']}, {m['cores_available']} of {m['cores']} cores, {_s(m.get('memory_gib'))} GiB; "
        f"torch {m['torch']}, Python {m['python']}; {m['date']}",
        f"- load average (1 min) at start {_s(doc.get('load_start'))}, at end {_s(doc.get('load_end'))}; "
        "per case: the range seen before and after its runs (this machine is shared; a load above the core "
        "count slows every figure)",
        f"- warm = median of up to {s['repeats']} runs after the cold one (fewer once a case's warm runs "
        f"passed {s['budget_s']:g} s); cold = first run with an empty `ATTNKIT_CACHE_DIR` and attnkit's "
        "`__pycache__` deleted (see benchmarks/README.md)",
        "",
    ]  # fmt: skip
    if compare is not None:
        cs = compare["startup"]
        lines += [f"## Before ({cs['source']}, revision {cs.get('revision') or 'unknown'}, "
                  f"{compare['machine']['date']}) and after (this run)", ""]  # fmt: skip
        lines += _table(COMPARE_COLUMNS, compare_rows(cs["rows"], s["rows"])) + [""]
    lines += ["## This run", ""] + _table(COLUMNS, startup_rows(s["rows"])) + [""]
    lines += ["## Commands", "", "Each ran from a fresh empty folder, stdin a pipe, output captured:", "", "```sh"]
    lines += s["commands"] + ["```", ""]
    return "\n".join(lines)


def load_compare(path: str | Path) -> dict:
    """An earlier startup results.json (for ``--compare``); a clear error when it is not one."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"--compare: cannot read {str(path)!r} as JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("startup"), dict) or "rows" not in doc["startup"]:
        raise ValueError(f"--compare: {str(path)!r} is not a startup results.json (no 'startup' rows); "
                         "give the results.json written by `attnkit bench --suite startup --out DIR`")  # fmt: skip
    return doc


def write_startup(doc: dict, out_dir: str | Path, compare: dict | None = None) -> list[Path]:
    """Write results.json, report.md and commands.sh into ``out_dir`` (atomically); their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    script = ["#!/bin/sh", "# The commands of the startup suite (attnkit bench --suite startup runs them, each from an",
              "# empty folder). SOURCE = the checkout measured; CACHE = a cache dir (empty for a cold run);",
              "# INPUTS holds CONTEXT.txt (QA_CONTEXT in attnkit/bench/startup.py) and TEXT.txt",
              "# (the argparse module's docstring).",
              f"SOURCE={doc['startup']['source']}", "CACHE=$(mktemp -d)", "INPUTS=$(mktemp -d)",
              *doc["startup"]["commands"]]  # fmt: skip
    return [
        write_atomic(out / "results.json", json.dumps(doc, indent=1, allow_nan=False) + "\n"),
        write_atomic(out / "report.md", startup_markdown(doc, compare)),
        write_atomic(out / "commands.sh", "\n".join(script) + "\n"),
    ]
