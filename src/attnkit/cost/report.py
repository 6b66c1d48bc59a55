"""The whole cost calculation as data (:func:`estimate`) and as rich tables (:func:`cost_tables`).

Example:
    >>> from attnkit.cost import Architecture
    >>> doc = estimate(Architecture.preset("paper_base"), [128, 65536])
    >>> doc["parameters"]["total"], [row["L"] for row in doc["lengths"]]
    (63082496, [128, 65536])
    >>> round(doc["lengths"][1]["forward_per_token"]["score_share"], 3)   # at 64k, scores are 96% of the work
    0.965
    >>> human_bytes(3 * 2**30), human_count(63082496), human_flops(3.2e12), human_flops(999.7e9)
    ('3 GiB', '63.1M', '3.2 TFLOP', '1000 GFLOP')
"""

from __future__ import annotations

from collections.abc import Sequence

from .architecture import Architecture
from .calculator import (
    SCORE_BACKWARD_RECOMPUTE,
    crossover_length,
    decode_bytes,
    decode_flops,
    forward_flops_per_token,
    memory,
    parameter_count,
    parameter_counts,
    training_flops_per_token,
)

__all__ = ["estimate", "cost_tables", "human_bytes", "human_count", "human_flops", "DTYPE_BYTES", "SCHEMA"]

SCHEMA = "attnkit.cost/1"
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}  #: bytes per element of the supported dtypes
CONVENTIONS = (
    "FLOPs: matmuls only, 2 per multiply-add (as torch.utils.flop_counter.FlopCounterMode); softmax, norms, "
    "activations and embedding look-ups not counted. Every query is charged every key (dense); causal attention "
    "with tile skipping does about half of a decoder's score FLOPs. Training = 3x forward for projections and "
    f"logits, {SCORE_BACKWARD_RECOMPUTE:g}x for the scores (the backward recomputes QK^T: FlashAttention, "
    "SDPA, tiled; 3x when the probabilities are kept). Encoder-decoder: source = target = L, FLOPs per target "
    "token include the encoder's work on one source token. Memory: Adam keeps two moments per parameter; "
    "activations are what autograd keeps for the backward of the largest layer."
)


def estimate(arch: Architecture, lengths: Sequence[int], batch: int = 1, dtype: str = "float32") -> dict:
    """Parameters, FLOPs and memory of ``arch`` for ``batch`` sequences at each length, JSON-ready."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"estimate(): batch must be a positive int, got {batch!r}")
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"estimate(): dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    if not lengths:
        raise ValueError("estimate(): lengths must name at least one sequence length, got none")
    size = DTYPE_BYTES[dtype]
    counts = parameter_counts(arch)
    rows = []
    for L in lengths:
        fwd, train = forward_flops_per_token(arch, L), training_flops_per_token(arch, L)
        row = {
            "L": L,
            "forward_per_token": {**fwd.to_dict(), "score_share": fwd.scores / (fwd.projections + fwd.scores)},
            "training_per_token": train.to_dict(),
            "training_step_flops": train.total * batch * L,
            "memory": memory(arch, L, batch, size).to_dict(),
        }
        if arch.kind != "encoder-only":  # one new token per sequence after L cached ones
            step_bytes = decode_bytes(arch, L, dtype_bytes=size, batch=batch)
            row["decode_step"] = {**decode_flops(arch, L).to_dict(), "batch": batch, "bytes": step_bytes}
        rows.append(row)
    return {
        "schema": SCHEMA,
        "architecture": {"name": arch.name, "kind": arch.kind, "description": arch.describe(),
                         "config": arch.config.to_dict()},  # fmt: skip
        "batch": batch,
        "dtype": dtype,
        "parameters": {"components": counts, "total": parameter_count(arch)},
        "crossover_length": crossover_length(arch),
        "conventions": CONVENTIONS,
        "lengths": rows,
    }


# ---------------------------------------------------------------------- formatting
def human_bytes(n: float) -> str:
    """``3 GiB``, ``1.5 MiB``: binary units, three significant digits."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{_three(n / size)} {unit}"
    return f"{int(n)} B"


def human_count(n: float) -> str:
    """``63.1M``: parameters with a metric suffix."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{int(n)}"


def human_flops(n: float) -> str:
    """``3.2 TFLOP``: three significant digits."""
    for unit, size in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if abs(n) >= size:
            return f"{_three(n / size)} {unit}"
    return f"{n:.0f} FLOP"


def _three(value: float) -> str:
    """Three significant digits, never in exponent form (999.7 -> '1000')."""
    text = f"{value:.3g}"
    return f"{value:.0f}" if "e" in text else text


def cost_tables(doc: dict) -> list:
    """Rich tables of an :func:`estimate` document: parameters, FLOPs per token, memory."""
    from rich.table import Table

    total = doc["parameters"]["total"]
    params = Table(title=f"parameters: {total:,} ({human_count(total)})")
    for col in ("component", "parameters", "share"):
        params.add_column(col, justify="left" if col == "component" else "right")
    for name, n in doc["parameters"]["components"].items():
        if n:
            params.add_row(name, f"{n:,}", f"{100 * n / total:.1f}%")
    flops = Table(title=f"FLOPs per token (forward; crossover: scores > projections from L = "
                        f"{doc['crossover_length']:,.0f})")  # fmt: skip
    decoder = any("decode_step" in r for r in doc["lengths"])
    columns = ["L", "projections", "scores", "logits", "forward", "scores/(proj+scores)", "training step"]
    for col in columns + (["decode step"] if decoder else []):
        flops.add_column(col, justify="right")
    for r in doc["lengths"]:
        f = r["forward_per_token"]
        cells = [f"{r['L']:,}", human_flops(f["projections"]), human_flops(f["scores"]), human_flops(f["logits"]),
                 human_flops(f["total"]), f"{100 * f['score_share']:.0f}%", human_flops(r["training_step_flops"])]
        if decoder:
            cells.append(human_flops(r["decode_step"]["total"] * r["decode_step"]["batch"]))
        flops.add_row(*cells)
    return [params, flops, _memory_table(doc)]


def _memory_table(doc: dict):
    from rich.table import Table

    first = doc["lengths"][0]["memory"]
    title = (f"memory ({doc['dtype']}, batch {doc['batch']}): weights {human_bytes(first['weights'])}, "
             f"gradients {human_bytes(first['gradients'])}, Adam {human_bytes(first['adam'])}; "
             f"KV cache {human_bytes(first['kv_cache_per_token'])} per token")  # fmt: skip
    table = Table(title=title)
    decoder = any("decode_step" in r for r in doc["lengths"])
    columns = ("L", "activations/layer, L x L kept", "tiled", "ratio", "logits", "KV cache")
    for col in columns + (("decode step reads",) if decoder else ()):
        table.add_column(col, justify="right")
    for r in doc["lengths"]:
        m = r["memory"]
        cells = [f"{r['L']:,}", human_bytes(m["activations_materialized"]), human_bytes(m["activations_tiled"]),
                 f"{m['activations_materialized'] / m['activations_tiled']:.1f}x", human_bytes(m["logits"]),
                 human_bytes(m["kv_cache"]) if m["kv_cache"] else "-"]  # fmt: skip
        table.add_row(*cells, *([human_bytes(r["decode_step"]["bytes"])] if decoder else []))
    return table
