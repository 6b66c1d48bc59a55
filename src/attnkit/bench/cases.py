"""What a benchmark case is: an implementation, a mask, a length and a pass.

A :class:`Case` is plain data (JSON in, JSON out) so that it can cross the
process boundary to :mod:`attnkit.bench.worker`. This module also holds the
two pieces of arithmetic the report rests on:

* **useful FLOPs** — only the (query, key) pairs the mask allows count:
  ``4 * pairs * D`` for the forward pass (two matmuls, ``QK^T`` and ``PV``, at
  2 FLOPs per multiply-add) and ``3.5x`` that for forward + backward. That is
  the FlashAttention benchmark convention (``benchmark_flash_attention.py``):
  the backward alone is ``2.5x`` the forward (five matmuls: ``QK^T`` recomputed,
  ``dV``, ``dP``, ``dQ``, ``dK``), so forward + backward is ``1 + 2.5 = 3.5x``.
  Work an implementation spends on masked-out pairs is not useful work.
* **memory estimates** — how much an implementation would allocate beyond its
  inputs, so cases that cannot fit under ``--max-memory`` are skipped with a
  reason ("would need 24.0 GiB ...") instead of being killed by the kernel.

Shape legend: B batch, H heads, L sequence length (queries = keys), D head dim.

Example:
    >>> c = Case(impl="sdpa", mask="causal", L=4, pass_="fwd", B=1, H=1, D=8)
    >>> pairs(c.mask, c.B, c.H, c.L)     # 4 + 3 + 2 + 1
    10
    >>> useful_flops(c)                  # 4 * 10 * 8
    320.0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from .. import masks as _masks
from ..masks import Mask

__all__ = [
    "Case",
    "MaskSpec",
    "MASKS",
    "PASSES",
    "SLIDING_WINDOW",
    "NUM_DOCUMENTS",
    "PADDED_FRACTION",
    "FWDBWD_FLOP_FACTOR",
    "GiB",
    "pairs",
    "useful_flops",
    "document_ids",
    "padding_lengths",
    "input_bytes",
]

SLIDING_WINDOW = 256  #: keys seen by each query in the "sliding" mask (itself included, causal)
NUM_DOCUMENTS = 8  #: documents packed into one sequence in the "document" mask
PADDED_FRACTION = 0.6  #: padded batch rows keep this fraction of their keys in the "padding" mask
FWDBWD_FLOP_FACTOR = 3.5  #: forward + backward = (1 + 2.5) x forward, the FlashAttention convention
PASSES = ("fwd", "fwdbwd")  #: forward only; forward then backward
GiB = 1 << 30


@dataclass(frozen=True)
class Case:
    """One measurement: an implementation on one mask, length and pass."""

    impl: str  # implementation name, a key of attnkit.bench.impls.implementations()
    mask: str  # mask name, a key of MASKS
    L: int  # sequence length (queries = keys)
    pass_: str  # "fwd" or "fwdbwd"
    B: int = 1  # batch size
    H: int = 8  # heads
    D: int = 64  # head dim
    threads: int = 2  # torch.set_num_threads in the worker
    repeats: int | None = None  # exact number of timed runs; None = adaptive (>= 3 runs and ~min_time)
    min_time: float = 1.0  # adaptive timing runs until this many seconds have been spent
    once: bool = False  # one call is both timed and memory-measured (long L; see attnkit.bench.worker)
    seed: int = 0  # torch.manual_seed for the inputs
    extra: dict = field(default_factory=dict)  # implementation-specific knobs (kept in the JSON)

    def __post_init__(self):
        if self.mask not in MASKS:
            raise ValueError(f"Case: mask must be one of {sorted(MASKS)}, got {self.mask!r}")
        if self.pass_ not in PASSES:
            raise ValueError(f"Case: pass_ must be one of {PASSES}, got {self.pass_!r}")
        for name in ("L", "B", "H", "D", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Case: {name} must be a positive int, got {value!r}")

    def to_json(self) -> dict:
        """A JSON-ready dict; ``Case.from_json(c.to_json()) == c``."""
        d = asdict(self)
        d["pass"] = d.pop("pass_")
        return d

    @classmethod
    def from_json(cls, d: dict) -> Case:
        d = dict(d)
        d["pass_"] = d.pop("pass")
        return cls(**d)

    @property
    def label(self) -> str:
        """Short human name: ``sdpa causal L=4096 fwd``."""
        return f"{self.impl} {self.mask} L={self.L} {self.pass_}"


# ---------------------------------------------------------------------- masks
@dataclass(frozen=True)
class MaskSpec:
    """A benchmark mask: a name, a sentence, and how to build it as an attnkit mask."""

    name: str  # key in MASKS and the --mask value
    summary: str  # one line for the report
    build: Callable[[int, int], Mask | None]  # (B, L) -> attnkit mask (None = no mask)


def document_ids(L: int, n: int = NUM_DOCUMENTS) -> torch.Tensor:
    """Document id of each position when ``n`` documents of (nearly) equal length are packed.

    Example:
        >>> document_ids(8, n=4).tolist()
        [0, 0, 1, 1, 2, 2, 3, 3]
    """
    return torch.arange(L) * n // L  # (L,)


def padding_lengths(B: int, L: int, fraction: float = PADDED_FRACTION) -> list[int]:
    """Real lengths of each batch row: rows ``b >= B // 2`` keep ``fraction * L`` keys.

    With ``B = 1`` the single row is the padded one, so the mask still matters.

    Example:
        >>> padding_lengths(1, 1000), padding_lengths(4, 1000)
        ([600], [1000, 1000, 600, 600])
    """
    short = max(1, round(fraction * L))
    return [L if b < B // 2 else short for b in range(B)]


MASKS: dict[str, MaskSpec] = {
    "none": MaskSpec("none", "every query sees every key", lambda B, L: None),
    "causal": MaskSpec("causal", "query i sees keys j <= i", lambda B, L: _masks.causal()),
    "sliding": MaskSpec(
        "sliding",
        f"causal sliding window: query i sees keys i-{SLIDING_WINDOW} < j <= i",
        lambda B, L: _masks.sliding_window(SLIDING_WINDOW),
    ),
    "document": MaskSpec(
        "document",
        f"{NUM_DOCUMENTS} packed documents of equal length, each attending only within itself",
        lambda B, L: _masks.document(document_ids(L)),
    ),
    "padding": MaskSpec(
        "padding",
        f"key padding: batch rows b >= B//2 keep {PADDED_FRACTION:.0%} of their keys (all rows when B = 1)",
        lambda B, L: _masks.padding(padding_lengths(B, L)),
    ),
}


# ---------------------------------------------------------------------- FLOPs
def pairs(mask: str, B: int, H: int, L: int) -> int:
    """Number of (query, key) pairs the mask allows, summed over batch and heads (closed form).

    Example:
        >>> pairs("none", 1, 1, 4), pairs("causal", 1, 1, 4), pairs("padding", 1, 2, 10)
        (16, 10, 120)
    """
    if mask == "none":
        per_row = [L * L] * B
    elif mask == "causal":
        per_row = [L * (L + 1) // 2] * B
    elif mask == "sliding":
        w = min(SLIDING_WINDOW, L)
        per_row = [w * (w + 1) // 2 + (L - w) * w] * B  # sum over i of min(i + 1, w)
    elif mask == "document":
        sizes = torch.bincount(document_ids(L)).tolist()
        per_row = [sum(n * n for n in sizes)] * B
    elif mask == "padding":
        per_row = [L * n for n in padding_lengths(B, L)]
    else:
        raise ValueError(f"pairs(): mask must be one of {sorted(MASKS)}, got {mask!r}")
    return H * sum(per_row)


def useful_flops(case: Case) -> float:
    """FLOPs of the pairs the mask allows: ``4 * pairs * D``, times 3.5 for forward + backward."""
    fwd = 4.0 * pairs(case.mask, case.B, case.H, case.L) * case.D
    return fwd * (FWDBWD_FLOP_FACTOR if case.pass_ == "fwdbwd" else 1.0)


def input_bytes(case: Case) -> int:
    """Bytes of q, k, v (and, for forward + backward, their gradients, the output and its gradient)."""
    one = case.B * case.H * case.L * case.D * 4  # one (B, H, L, D) float32 tensor
    return one * (3 if case.pass_ == "fwd" else 8)
