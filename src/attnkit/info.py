"""``attnkit info``: what this installation runs on and which attention backends it has.

:func:`collect_info` gathers versions, threads, the CPU model, the devices torch
can see, and the backends of :data:`attnkit.functional.dispatch.BACKENDS` in the order
``backend="auto"`` tries them. Benchmark reports can record it as "the machine
they ran on".

The bottom of the file holds the ``attnkit info`` subcommand.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from functools import lru_cache

__all__ = ["collect_info", "attnkit_version", "cpu_model"]


def attnkit_version() -> str:
    """The installed version of attnkit (from the package metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("attnkit")
    except PackageNotFoundError:
        return "unknown (not installed; run `pip install -e .`)"


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's marketing name, e.g. ``"AMD EPYC 7B13"``, or the best available substitute."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            cmd = ["sysctl", "-n", "machdep.cpu.brand_string"]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=2)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def _devices() -> dict[str, object]:
    import torch

    cuda = torch.cuda.is_available()
    mps_backend = getattr(torch.backends, "mps", None)
    return {
        "cpu": True,
        "cuda": cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "mps": bool(mps_backend is not None and mps_backend.is_available()),
    }


def collect_info() -> dict:
    """Versions, threads, CPU, devices and attention backends, as plain JSON-ready types.

    Example:
        >>> info = collect_info()
        >>> "reference" in [b["name"] for b in info["backends"]]
        True
    """
    import torch

    from .functional.dispatch import AUTO_ORDER, BACKENDS

    return {
        "attnkit": attnkit_version(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "devices": _devices(),
        "backends": [
            {"name": name, "summary": b.summary, "auto_rank": AUTO_ORDER.index(name) if name in AUTO_ORDER else None}
            for name, b in BACKENDS.items()
        ],
        "auto_order": list(AUTO_ORDER),
    }


# ---------------------------------------------------------------------- `attnkit info`
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the information as JSON")


def run(args: argparse.Namespace) -> int:
    from .console import status

    with status("info: importing torch and probing the devices"):
        info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    from rich.table import Table

    from .console import literal, stdout_console

    dev = info["devices"]
    cuda = ", ".join(dev["cuda_devices"]) if dev["cuda"] else "not available"
    system = Table(title="attnkit", title_justify="left", show_header=False)
    system.add_column(style="bold")
    system.add_column()
    for key, value in (
        ("attnkit", info["attnkit"]),
        ("python", info["python"]),
        ("torch", info["torch"]),
        ("platform", info["platform"]),
        ("cpu", info["cpu"]),
        ("threads", str(info["threads"])),
        ("cuda", cuda),
        ("mps", "available" if dev["mps"] else "not available"),
    ):
        system.add_row(key, literal(value))
    backends = Table(title="attention backends", title_justify="left")
    backends.add_column("name", style="bold")
    backends.add_column("auto order", justify="right")
    backends.add_column("summary")
    for b in info["backends"]:
        backends.add_row(b["name"], "-" if b["auto_rank"] is None else str(b["auto_rank"] + 1), literal(b["summary"]))
    console = stdout_console()
    console.print(system)
    console.print(backends)
    order = " → ".join(info["auto_order"])
    console.print(literal(f'backend="auto" tries: {order} (first that runs the call exactly)'))
    return 0
