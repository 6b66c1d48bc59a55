"""``attnkit cost``: parameters, FLOPs and memory of a Transformer configuration; ``--measure`` times it here.

The configuration is a preset (``--preset paper_base|paper_big|minilm|smollm2``,
default ``paper_base``) or a saved model (``--model DIR``, see :mod:`attnkit.checkpoint`),
either one changed by flags (``--d-model 256 --num-heads 4 ...``). Lengths are a
comma-separated list (``--L 1k,4k``); by default 128 ... 65536 (powers of two).

Torch is imported only inside :func:`run` (``attnkit cost --help`` starts at once).

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="attnkit cost")
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["--preset", "smollm2", "--L", "1k,4096", "--num-kv-heads", "1"])
    >>> args.preset, args.L, args.num_kv_heads
    ('smollm2', [[1024, 4096]], 1)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._argtypes import lengths, positive_int

__all__ = ["add_arguments", "run", "DEFAULT_LENGTHS", "MEASURE_LENGTH", "MAX_PREDICTED_S"]

PRESET_NAMES = ("paper_base", "paper_big", "minilm", "smollm2")  #: = architecture.PRESETS (a test checks)
KIND_NAMES = ("encoder-decoder", "decoder-only", "encoder-only")  #: = architecture.KINDS
DEFAULT_LENGTHS = [128 << i for i in range(10)]  #: 128 ... 65536
MEASURE_LENGTH = 256  #: --measure without --L measures at this length
MAX_PREDICTED_S = 120.0  #: --measure refuses a step predicted to take longer (seconds)
#: flag -> TransformerConfig field, for the integer options of a custom configuration
_INT_FIELDS = {"--vocab-size": "vocab_size", "--d-model": "d_model", "--num-heads": "num_heads",
               "--num-kv-heads": "num_kv_heads", "--head-dim": "head_dim", "--d-ff": "d_ff",
               "--encoder-layers": "num_encoder_layers", "--decoder-layers": "num_decoder_layers",
               "--max-len": "max_len"}  # fmt: skip



def _nonnegative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``attnkit cost`` options on ``parser``."""
    add = parser.add_argument
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", choices=PRESET_NAMES,
                        help="a published configuration (default: paper_base): the 2017 base/big Transformer, "
                             "all-MiniLM-L6-v2, SmolLM2-135M")  # fmt: skip
    source.add_argument("--model", type=Path, metavar="DIR", help="a model directory saved by attnkit (config.json)")
    add("--L", type=lengths, nargs="+", metavar="LENGTHS",
        help="sequence lengths, comma- or space-separated, e.g. 512,4k or 512 4k (default: 128..65536 in powers of 2; "
             f"with --measure: {MEASURE_LENGTH})")
    add("--batch", type=positive_int, default=1, help="sequences per step")
    add("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
        help="element type of weights, optimizer state, activations and cache")
    add("--json", action="store_true", help="print the results as JSON")
    add("--measure", action="store_true",
        help="also time one training step (Adam) and one decoding step here, beside the time predicted from "
             f"this machine's matmul rate (refused above {MAX_PREDICTED_S:g} s predicted per step)")
    add("--threads", type=positive_int, help="torch threads for --measure (default: torch's)")
    custom = parser.add_argument_group("custom configuration (changes the preset or --model)")
    for flag, field in _INT_FIELDS.items():
        kind = _nonnegative if field.startswith("num_") and field.endswith("layers") else positive_int
        custom.add_argument(flag, dest=field, type=kind, metavar="N")
    custom.add_argument("--activation", choices=("relu", "gelu", "gelu_tanh", "swiglu"))
    custom.add_argument("--norm", choices=("layernorm", "rmsnorm"))
    custom.add_argument("--positional", choices=("sinusoidal", "learned", "rotary", "alibi", "none"))
    custom.add_argument("--no-bias", dest="bias", action="store_const", const=False, help="projections without bias")
    custom.add_argument("--untied", dest="tie_embeddings", action="store_const", const=False,
                        help="separate input embeddings and output projection")  # fmt: skip
    custom.add_argument("--kind", choices=KIND_NAMES, help="the model built from the configuration")


def _architecture(args: argparse.Namespace):
    from .architecture import Architecture

    arch = Architecture.from_checkpoint(args.model) if args.model else Architecture.preset(args.preset or "paper_base")
    fields = [*_INT_FIELDS.values(), "activation", "norm", "positional", "bias", "tie_embeddings"]
    changes = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    if args.kind is None and not changes:
        return arch
    config = arch.config.replace(**changes) if changes else arch.config
    kind = args.kind or arch.kind
    bert = kind == "encoder-only" and arch.kind == "encoder-only"
    try:
        return Architecture(config, kind, arch.name if not changes else f"{arch.name} (changed)",
                            token_types=arch.token_types if bert else 0, embedding_norm=bert and arch.embedding_norm,
                            pooler=bert and arch.pooler)  # fmt: skip
    except ValueError as e:
        raise ValueError(f"{e}; set the model kind with --kind {{{','.join(KIND_NAMES)}}}") from None


def run(args: argparse.Namespace) -> int:
    """Run ``attnkit cost`` with parsed ``args``; return the exit code."""
    from ..console import print_json, status, stdout_console
    from .report import cost_tables, estimate

    arch = _architecture(args)
    lengths = [n for group in args.L for n in group] if args.L else None
    lengths = lengths or ([MEASURE_LENGTH] if args.measure else DEFAULT_LENGTHS)
    doc = estimate(arch, lengths, args.batch, args.dtype)
    if args.measure:
        from .measure import measure_steps

        if args.dtype != "float32":
            raise ValueError(f"--measure runs in float32 (CPUs here have no fast {args.dtype} matmul); "
                             f"drop --dtype {args.dtype} or --measure")  # fmt: skip
        _check_measurable(doc)
        doc["measured"] = []
        for L in lengths:
            with status(f"measuring a training and a decoding step at L={L} ..."):
                doc["measured"].append(measure_steps(arch, L, args.batch, threads=args.threads))
    if args.json:
        print_json(doc)
        return 0
    from ..console import literal

    tables = cost_tables(doc) + ([_measure_table(doc["measured"])] if args.measure else [])
    console = stdout_console(*tables)
    console.print(literal(doc["architecture"]["description"]))
    for table in tables:
        console.print(table)
    console.print(literal(doc["conventions"]), style="dim")
    return 0


def _check_measurable(doc: dict) -> None:
    """Refuse steps predicted (at a generous 50 GFLOP/s) to run longer than :data:`MAX_PREDICTED_S`."""
    for row in doc["lengths"]:
        seconds = row["training_step_flops"] / 50e9
        if seconds > MAX_PREDICTED_S:
            raise ValueError(
                f"--measure at L={row['L']} and batch {doc['batch']} needs {row['training_step_flops'] / 1e12:.1f} "
                f"TFLOP per training step (~{seconds:.0f} s at 50 GFLOP/s); measure a shorter --L or smaller --batch"
            )


def _measure_table(rows: list[dict]):
    from rich.table import Table

    table = Table(title="measured here vs predicted = FLOPs / matmul rate, in CPU seconds per thread "
                        "(x = measured / predicted; wall seconds beside); decoding also by bytes read / "
                        "memory rate (GB/s of a matrix-vector product)")  # fmt: skip
    columns = ("L", "threads", "matmul GFLOP/s", "training step", "predicted", "x", "wall",
               "decode step", "predicted", "x", "wall", "GB/s", "by bytes", "x")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="right")
    for r in rows:
        cells = [f"{r['L']:,}", str(r["threads"]), f"{r['matmul_gflops']:.0f}"]
        for step in (r["training"], r["decode"]):
            cells += ["-"] * 4 if step is None else [_seconds(step["cpu_s"]), _seconds(step["predicted_s"]),
                                                    f"{step['ratio']:.1f}", _seconds(step["wall_s"])]  # fmt: skip
        d = r["decode"]
        cells += ["-"] * 3 if d is None else [f"{r['memory_gbps']:.1f}", _seconds(d["predicted_bandwidth_s"]),
                                              f"{d['bandwidth_ratio']:.1f}"]  # fmt: skip
        table.add_row(*cells)
    return table


def _seconds(s: float) -> str:
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"

