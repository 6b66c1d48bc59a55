"""``attnkit export onnx --model DIR [OUT.onnx]``: a saved model as an ONNX file, checked in onnxruntime.

``DIR`` is an attnkit checkpoint directory (``config.json`` + ``model.safetensors``) or a
training run holding one: a trained translation model (``attnkit translate train --out DIR``;
its final model, else its latest checkpoint) or a ``TransformerLM`` saved with
``save_pretrained``. The file gets dynamic batch size and lengths; onnxruntime's logits on
two fresh batches are compared to the eager model's and the largest difference is printed.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_arguments(parser, "onnx")
    >>> parser.parse_args(["--model", "runs/mt", "mt.onnx"]).out
    PosixPath('mt.onnx')
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

ACTIONS = {"onnx": "write a Transformer or TransformerLM checkpoint as ONNX and check it in onnxruntime"}
DEFAULT_OUT_DIR = Path("out") / "export"


def add_arguments(parser: argparse.ArgumentParser, action: str | None = None) -> None:
    from .._argtypes import nonnegative_int, positive_int

    if action is None:  # the actions are listed by the CLI
        return
    add = parser.add_argument
    add("--model", type=Path, required=True, metavar="DIR",
        help="checkpoint directory (config.json + model.safetensors) of a Transformer or TransformerLM, "
             "or a training run (`attnkit translate train --out DIR`)")  # fmt: skip
    add("out", type=Path, nargs="?", default=None, metavar="OUT.onnx",
        help=f"the ONNX file to write (default: {DEFAULT_OUT_DIR}/<DIR name>.onnx)")  # fmt: skip
    add("--batch", type=positive_int, default=2, metavar="N", help="rows of the example and check inputs")
    add("--length", type=positive_int, default=16, metavar="L", help="positions of the example and check inputs")
    add("--opset", type=positive_int, default=None, metavar="N", help="ONNX opset (default: torch's)")
    add("--seed", type=nonnegative_int, default=0, metavar="S", help="seed of the example and check inputs")
    add("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    import sys

    if args.action is None:  # `attnkit export` alone: nothing to do but say what can be done
        args.parser.print_help(sys.stderr)
        return 2

    from rich.table import Table

    from .. import checkpoint
    from ..console import literal, print_json, status, stdout_console
    from .onnx import export_onnx

    out = args.out or DEFAULT_OUT_DIR / f"{args.model.resolve().name}.onnx"
    model = checkpoint.load(model_dir(args.model))
    with status(f"export: tracing {type(model).__name__} and converting it to ONNX"), _quiet_exporter():
        result = export_onnx(model, out, batch=args.batch, length=args.length, opset=args.opset, seed=args.seed)
    if args.json:
        print_json(result.to_json())
        return 0
    table = Table(title=f"{result.model_class} -> ONNX")
    table.add_column("")
    table.add_column("value")
    rows = [
        ("file", str(result.path)),
        ("size", f"{result.size_bytes / 2**20:.2f} MiB"),
        *((f"input {name}", " x ".join(axes)) for name, axes in result.inputs.items()),
        *((f"output {name}", " x ".join(axes)) for name, axes in result.outputs.items()),
        ("checked on", "; ".join(", ".join(f"{k} {tuple(v)}" for k, v in s.items()) for s in result.checked_shapes)),
        ("max |onnxruntime - eager|", f"{result.max_abs_diff:.1e}"),
        ("export time", f"{result.seconds:.1f} s"),
    ]
    for name, value in rows:
        table.add_row(literal(name), literal(value))
    stdout_console(table).print(table)
    return 0


def model_dir(path: Path) -> Path:
    """The checkpoint for ``--model``: ``path`` itself, ``path/model`` (the final model of a training run,
    as ``attnkit translate train --out path`` writes it), or the run's latest checkpoint."""
    from ..train.state import latest_checkpoint

    for candidate in (path, path / "model"):
        if (candidate / "config.json").is_file():
            return candidate
    latest = latest_checkpoint(path) if path.is_dir() else None
    if latest is None:
        raise FileNotFoundError(
            f"--model {str(path)!r}: no checkpoint there (expected config.json and model.safetensors, or a "
            "training run with model/ or checkpoints); save one with model.save_pretrained(DIR) or train one "
            "with `attnkit translate train --out DIR`"
        )
    return latest


@contextlib.contextmanager
def _quiet_exporter():
    """Silence what torch's ONNX exporter says about itself (not about the model): FutureWarnings of its
    internals, "torchvision is not installed" log lines, and the note that the inputs share the batch axis."""
    import logging
    import warnings

    exporter = logging.getLogger("torch.onnx")
    level = exporter.level
    exporter.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message=r".*axis name: \w+ will not be used", category=UserWarning)
            yield
    finally:
        exporter.setLevel(level)
