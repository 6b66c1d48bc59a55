"""Present benchmark results: a rich table, JSON, a markdown report and a PNG plot.

Every file is written atomically (a temporary file in the same directory,
then ``os.replace``), so an interrupted run never leaves half a report.

Columns (see ``benchmarks/README.md``): ``ms`` median time of one call;
``x sdpa`` that time over torch SDPA's on the same mask, length and pass;
``GFLOP/s`` useful work (pairs the mask allows, FlashAttention convention) per
second; ``% mm`` that rate over this machine's measured float32 matmul rate;
``peak MiB`` memory beyond the inputs at the worst moment of one call.

Example:
    >>> doc = {"machine": machine_info(threads=2), "grid": [], "overhead": []}
    >>> markdown_report(doc).splitlines()[0]
    '# attnkit bench'
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import write_atomic

__all__ = [
    "machine_info",
    "grid_rows",
    "summary_rows",
    "overhead_rows",
    "models_rows",
    "rich_tables",
    "markdown_report",
    "write_plot",
    "write_outputs",
    "GRID_COLUMNS",
    "SUMMARY_COLUMNS",
    "OVERHEAD_COLUMNS",
    "MODELS_COLUMNS",
]

GRID_COLUMNS = ("impl", "mask", "L", "pass", "ms", "min-max ms (runs)", "x sdpa", "GFLOP/s", "% mm", "peak MiB", "note")
SUMMARY_COLUMNS = ("pass", "mask", "L", "auto ms", "runs on", "fastest peer", "peer ms", "auto / peer", "peers not run")
OVERHEAD_COLUMNS = ("size", "mask", "attnkit µs", "sdpa µs", "ratio", "target", "verdict")
MODELS_COLUMNS = ("task", "attnkit", "peer", "attnkit rate", "peer rate", "speedup", "target", "verdict", "check")


# ---------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1 << 20)  # kB -> GiB
    except OSError:
        pass
    return None


def machine_info(threads: int) -> dict:
    """What the numbers depend on: CPU, cores, memory, versions, threads, date (UTC)."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": affinity,
        "memory_gib": _memory_gib(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": threads,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ---------------------------------------------------------------------- files
# ---------------------------------------------------------------------- rows
def _num(value, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _note(r: dict) -> str:
    status = r.get("status")
    if status == "skipped":
        return f"skipped: {r.get('reason', '')}"
    if status != "ok":
        return f"{status}: {r.get('error', '')}"
    notes = []
    if r.get("runs_on"):
        notes.append(f"runs on {r['runs_on']}")
    if r.get("compile_s") is not None:
        notes.append(f"setup {r.get('setup_s', 0):.1f} s, compile {r['compile_s']:.1f} s (not in ms)")
    if r.get("once") and r.get("runs") == 1:
        notes.append("one call (--once)")
    if r["impl"] == "mha":
        notes.append("module, incl. projections")
    if r.get("output_finite") is False:
        notes.append("output has NaN/inf")
    return "; ".join(notes)


def _spread(r: dict) -> str:
    """``min-max (runs)`` of the timed runs beside the median: how much to trust a difference between rows.

    Example:
        >>> _spread({"status": "ok", "min_ms": 1.234, "max_ms": 1.5, "runs": 7})
        '1.23-1.50 (7)'
    """
    if r.get("status") != "ok" or r.get("min_ms") is None or r.get("max_ms") is None:
        return "—"
    fmt = ".3g" if r["max_ms"] < 1 else ".2f" if r["max_ms"] < 10 else ".1f"
    return f"{format(r['min_ms'], fmt)}-{format(r['max_ms'], fmt)} ({r.get('runs', '?')})"


def grid_rows(results: list[dict]) -> list[list[str]]:
    """One list of cell strings per result, in GRID_COLUMNS order."""
    return [
        [
            r["impl"],
            r["mask"],
            str(r["L"]),
            r["pass"],
            _num(r.get("median_ms"), ".3g" if (r.get("median_ms") or 0) < 1 else ".1f"),
            _spread(r),
            _num(r.get("ratio_sdpa"), ".2f"),
            _num(r.get("gflops"), ".1f"),
            _num(r.get("pct_matmul"), ".0f"),
            _num(r.get("peak_mib"), ".0f"),
            _note(r),
        ]
        for r in results
    ]


def summary_rows(results: list[dict]) -> list[list[str]]:
    """Per (pass, mask, L): ``attnkit-auto`` against the fastest peer (a non-attnkit row) that ran.

    ``auto / peer`` < 1 means attnkit's default is faster than every peer measured
    there; ``peers not run`` counts the peers skipped (memory) or failed at that size.

    Example:
        >>> rows = [{"impl": "attnkit-auto", "mask": "causal", "L": 8, "pass": "fwd", "status": "ok",
        ...          "median_ms": 2.0, "runs_on": "sdpa"},
        ...         {"impl": "naive", "mask": "causal", "L": 8, "pass": "fwd", "status": "ok", "median_ms": 4.0}]
        >>> summary_rows(rows)
        [['fwd', 'causal', '8', '2.00', 'sdpa', 'naive', '4.00', '0.50', '0']]
    """
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault(_group(r), []).append(r)
    out = []
    for (pass_, mask, L), rows in groups.items():
        auto = next((r for r in rows if r["impl"] == "attnkit-auto" and r.get("status") == "ok"), None)
        if auto is None:
            continue
        peers = [r for r in rows if not r["impl"].startswith("attnkit-")]
        ran = [r for r in peers if r.get("status") == "ok"]
        best = min(ran, key=lambda r: r["median_ms"]) if ran else None
        out.append([
            pass_, mask, str(L), _ms(auto["median_ms"]), auto.get("runs_on") or "",
            best["impl"] if best else "none ran", _ms(best["median_ms"]) if best else "—",
            f"{auto['median_ms'] / best['median_ms']:.2f}" if best else "—", str(len(peers) - len(ran)),
        ])  # fmt: skip
    return out


def _ms(value: float) -> str:
    return format(value, ".3g" if value < 1 else ".2f" if value < 100 else ".0f")


def overhead_rows(rows: list[dict]) -> list[list[str]]:
    """Cells of the overhead table, in OVERHEAD_COLUMNS order."""
    return [
        [
            r["size"],
            r["mask"],
            f"{r['attnkit_us']:.1f}",
            f"{r['sdpa_us']:.1f}",
            f"{r['ratio']:.3f}",
            f"<= {r['target']:g}",
            "ok" if r["ok"] else "over target",
        ]
        for r in rows
    ]


def models_rows(rows: list[dict]) -> list[list[str]]:
    """Cells of the models table, in MODELS_COLUMNS order (rates in each row's unit)."""
    return [
        [
            r["task"],
            r["ours"],
            r["peer"],
            f"{r['ours_rate']:.1f} {r['unit']}",
            f"{r['peer_rate']:.1f} {r['unit']}",
            f"{r['speedup']:.2f}x",
            f">= {r['target']:g}x",
            "ok" if r["ok"] else "under target",
            r["check"] if r["check_ok"] else f"FAILED: {r['check']}",
        ]
        for r in rows
    ]


def _group(r: dict) -> tuple:
    return (r["pass"], r["mask"], r["L"])


def rich_tables(doc: dict) -> list:
    """``rich.table.Table`` objects for the grid, overhead and models suites (those present).

    Cells are literal text: an error message such as ``expected [batch] ...`` prints as is.
    """
    from rich.table import Table

    from ..console import literal

    tables = []
    grid = doc.get("grid") or []
    if grid:
        mm = (doc.get("matmul") or {}).get("gflops")
        title = "attention grid" + (f" — matmul {mm:.0f} GFLOP/s" if mm else "")
        table = Table(title=title)
        for col in GRID_COLUMNS:
            table.add_column(col, justify="left" if col in ("impl", "mask", "pass", "note") else "right",
                             overflow="fold")  # fmt: skip
        previous = None
        for r, cells in zip(grid, grid_rows(grid), strict=True):
            if previous is not None and _group(r) != previous:
                table.add_section()
            previous = _group(r)
            table.add_row(*map(literal, cells), style="dim" if r.get("status") != "ok" else None)
        tables.append(table)
        summary = summary_rows(grid)
        if summary:
            table = Table(title="summary: attnkit-auto vs the fastest peer that ran (auto / peer < 1: attnkit faster)")
            for col in SUMMARY_COLUMNS:
                table.add_column(col, justify="left" if col in ("pass", "mask", "runs on", "fastest peer") else "right")
            for cells in summary:
                table.add_row(*map(literal, cells))
            tables.append(table)
    if doc.get("overhead"):
        table = Table(title="overhead: attention(backend='auto') vs torch SDPA")
        for col in OVERHEAD_COLUMNS:
            table.add_column(col, justify="left" if col in ("size", "mask", "verdict") else "right")
        for cells in overhead_rows(doc["overhead"]):
            table.add_row(*map(literal, cells))
        tables.append(table)
    if doc.get("models"):
        table = Table(title="models: attnkit vs transformers on the same weights (speedup = attnkit's speed / peer's)")
        for col in MODELS_COLUMNS:
            table.add_column(col, justify="right" if "rate" in col or col in ("speedup", "target") else "left",
                             overflow="fold")  # fmt: skip
        for cells in models_rows(doc["models"]):
            table.add_row(*map(literal, cells))
        tables.append(table)
    return tables


# ---------------------------------------------------------------------- markdown
def _md_table(columns, rows) -> list[str]:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] + [
        "| " + " | ".join(esc(c) for c in row) + " |" for row in rows
    ]


def _mm_how(matmul: dict | None) -> str:
    """How the matmul ceiling was measured, in words (reports of older runs had one 2048 x 2048 median)."""
    if not matmul or not matmul.get("measurements"):
        return "one 2048 x 2048 mm (median; an older report)"
    shapes = sorted({s["name"] for m in matmul["measurements"] for s in m.get("shapes", [])})
    return (f"{len(matmul['measurements'])} measurements (before and after the cases) of "
            f"{', '.join(shapes) or 'one shape'}; best: {matmul.get('best_shape')}")  # fmt: skip


def markdown_report(doc: dict) -> str:
    """The whole report as markdown: machine, conventions, grid, overhead and models tables."""
    m = doc["machine"]
    mm = (doc.get("matmul") or {}).get("gflops")
    cfg = doc.get("config") or {}
    lines = [
        "# attnkit bench",
        "",
        f"- CPU: {m['cpu']} — {m['cores']} cores ({m['cores_available']} available), "
        f"{_num(m.get('memory_gib'), '.1f')} GiB RAM",
        f"- torch {m['torch']}, Python {m['python']}, {m['platform']}",
        f"- threads: {m['threads']}; date: {m['date']}",
        f"- float32 matmul: {_num(mm, '.1f')} GFLOP/s, the best run over {_mm_how(doc.get('matmul'))}",
    ]
    if cfg:
        lines.append(f"- command: `{cfg.get('command', '')}`; B={cfg.get('B')}, H={cfg.get('H')}, D={cfg.get('D')}")
        lines += [f"- earlier run kept in this report (`--resume`): `{c}`" for c in cfg.get("earlier", [])]
    lines += [
        "",
        "Useful FLOPs count only the (query, key) pairs the mask allows: 4·pairs·D for the forward "
        "pass, 3.5× that for forward + backward (FlashAttention convention: backward = 2.5× forward). "
        "`% mm` is the achieved rate over the machine's best measured matmul rate (attention's own GEMM shapes "
        "and a square one, fastest run, before and after the cases), a ceiling no case should pass. "
        "`min-max ms` is the spread of the timed runs behind the median. `peak MiB` is peak RSS during one call "
        "minus RSS after the inputs were allocated (masks, weights and compiled code included; q, k, v "
        "excluded). `x sdpa` is the time over torch SDPA's for the same mask, L and pass. "
        "See benchmarks/README.md.",
        "",
    ]
    grid = doc.get("grid") or []
    summary = summary_rows(grid)
    if summary:
        lines += ["## Summary: attnkit-auto against the fastest peer that ran", "",
                  "`auto / peer` < 1: attnkit's default is faster than every peer measured at that size; "
                  "`peers not run`: skipped (memory estimate over `--max-memory`) or failed, see the grid.", ""]
        lines += _md_table(SUMMARY_COLUMNS, summary) + [""]  # fmt: skip
    if grid:
        lines += ["## Attention grid", ""] + _md_table(GRID_COLUMNS, grid_rows(grid)) + [""]
    if doc.get("overhead"):
        lines += ["## Overhead of attention(backend='auto') over torch SDPA", ""]
        lines += _md_table(OVERHEAD_COLUMNS, overhead_rows(doc["overhead"])) + [""]
    if doc.get("models"):
        lines += ["## Published models: attnkit vs transformers on the same weights", ""]
        lines += [f"- {r['task']}: {r['workload']}; median of {r['rounds']} round(s)" for r in doc["models"]] + [""]
        lines += _md_table(MODELS_COLUMNS, models_rows(doc["models"])) + [""]
    if doc.get("plot"):
        lines += [f"![time and memory vs L]({doc['plot']})", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------- plot
def _series(ok: list[dict], impl: str, mask: str, pass_: str, key: str) -> list[tuple[int, float]]:
    """(L, value) points of one implementation on one panel, positive values only (log axes)."""
    pts = [(r["L"], r[key]) for r in ok if (r["impl"], r["mask"], r["pass"]) == (impl, mask, pass_)]
    return sorted((L, y) for L, y in pts if y and y > 0)


def _draw_panel(ax, ok: list[dict], impls: list[str], mask: str, pass_: str, key: str, label: str) -> None:
    for impl in impls:
        pts = _series(ok, impl, mask, pass_, key)
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=impl)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_title(f"{mask} · {pass_}", fontsize=9)
    ax.set_xlabel("L", fontsize=8)
    ax.set_ylabel(label, fontsize=8)
    ax.grid(True, which="both", alpha=0.3)


def write_plot(results: list[dict], path: str | os.PathLike) -> Path:
    """Time and peak memory vs L (log-log), one column per mask, two rows per pass; PNG, atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if r.get("status") == "ok"]
    masks = list(dict.fromkeys(r["mask"] for r in results)) or ["none"]
    passes = list(dict.fromkeys(r["pass"] for r in results)) or ["fwd"]
    impls = list(dict.fromkeys(r["impl"] for r in results))
    nrows, ncols = 2 * len(passes), len(masks)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3 * nrows), squeeze=False)
    for pi, pass_ in enumerate(passes):
        for mi, mask in enumerate(masks):
            _draw_panel(axes[2 * pi][mi], ok, impls, mask, pass_, "median_ms", "ms")
            _draw_panel(axes[2 * pi + 1][mi], ok, impls, mask, pass_, "peak_mib", "peak MiB")
    handles: dict[str, Any] = {}  # label -> matplotlib Artist, first panel wins
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    if handles:
        labels, artists = list(handles), list(handles.values())
        fig.legend(artists, labels, loc="lower center", ncol=min(6, len(handles)), fontsize=8)
    else:
        fig.text(0.5, 0.5, "no successful results to plot", ha="center")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save_png(fig, Path(path))


def _save_png(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, dpi=100, format="png")
    finally:
        plt.close(fig)
    return write_atomic(path, buffer.getvalue())


def write_outputs(doc: dict, out_dir: str | os.PathLike) -> list[Path]:
    """Write results.json, report.md and (with grid results) plot.png into ``out_dir``; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    doc = dict(doc)
    if doc.get("grid"):
        paths.append(write_plot(doc["grid"], out_dir / "plot.png"))
        doc["plot"] = "plot.png"
    paths.insert(0, write_atomic(out_dir / "results.json", json.dumps(doc, indent=1, allow_nan=False) + "\n"))
    paths.insert(1, write_atomic(out_dir / "report.md", markdown_report(doc)))
    return paths
