"""The implementations a benchmark compares: attnkit and its peers.

Each :class:`Impl` knows how to build a zero-argument callable for a case
(inside the worker process, after the inputs exist), how much memory it would
need beyond its inputs (so the runner can skip what cannot fit), and when it
cannot run a case at all. Every mask is handed to a peer in the peer's native
form:

============== ============================================================
impl           mask given as
============== ============================================================
attnkit-*      an :mod:`attnkit.masks` object (``attention(..., backend=)``)
sdpa           ``is_causal=True`` for causal; padding as a ``(B, 1, 1, L)``
               key mask; otherwise a dense ``(1, 1, L, L)`` bool mask
sdpa-math      the same, inside ``sdpa_kernel(SDPBackend.MATH)``
naive          a dense bool mask, ``masked_fill(-inf)`` before the softmax
mha            ``nn.MultiheadAttention`` (with its projections): inverted
               polarity ``attn_mask`` (+ ``is_causal`` hint) or
               ``key_padding_mask``
flex           a ``mask_mod`` turned into a ``BlockMask`` by
               ``create_block_mask``; ``flex_attention`` under ``torch.compile``
============== ============================================================

To add an implementation (for example attnkit's ``MultiHeadAttention`` at the
module level), append an :class:`Impl` to :data:`PEERS`; attnkit's functional
backends are picked up from ``attnkit.functional.dispatch.BACKENDS`` automatically.

Example:
    >>> names = list(implementations())
    >>> names[0], "sdpa" in names, "attnkit-reference" in names
    ('attnkit-auto', True, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..functional import explain
from ..functional.dispatch import BACKENDS
from .cases import MASKS, SLIDING_WINDOW, Case, GiB, document_ids, input_bytes, padding_lengths

__all__ = ["Impl", "Inputs", "PEERS", "implementations", "estimate_bytes", "skip_reason", "resolve_auto"]


@dataclass
class Inputs:
    """The tensors a case runs on, allocated by the worker before the memory baseline."""

    q: Tensor | None = None  # (B, H, L, D) for function cases
    k: Tensor | None = None  # (B, H, L, D)
    v: Tensor | None = None  # (B, H, L, D)
    x: Tensor | None = None  # (B, L, H * D) for module cases
    dout: Tensor | None = None  # gradient of the output (forward + backward only)

    def qkv(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(q, k, v)`` of a function case; ``ValueError`` for module-case inputs (only ``x`` set)."""
        if self.q is None or self.k is None or self.v is None:
            raise ValueError("Inputs.qkv(): q, k and v must all be set; a module case holds x instead")
        return self.q, self.k, self.v


@dataclass(frozen=True)
class Impl:
    """One implementation of attention under test."""

    name: str  # the --impl value and the row label
    summary: str  # one line for the report
    build: Callable[[Case, Inputs], Callable[[], Tensor]]  # worker side: returns fn() -> output
    memory: Callable[[Case], tuple[int, str]]  # extra bytes beyond the inputs, and what they are
    kind: str = "function"  # "function": q, k, v (B, H, L, D); "module": x (B, L, H*D) with projections
    compiled: bool = False  # the first call compiles: its time is reported apart
    why_not: Callable[[Case], str | None] = lambda case: None  # reason it cannot run the case


# ---------------------------------------------------------------------- memory models
def _scores(case: Case) -> int:
    return case.B * case.H * case.L * case.L * 4  # one (B, H, L, L) float32 matrix


def _dense_mask(case: Case, key_padding: bool) -> int:
    """Bytes of the dense bool mask a peer receives (0 when it needs none)."""
    if case.mask == "none":
        return 0
    if case.mask == "padding":
        return case.B * case.L * (1 if key_padding else case.L)
    return case.L * case.L


def _scores_model(case: Case) -> tuple[int, str]:
    n = 3 if case.pass_ == "fwd" else 5  # scores, probabilities, (their gradients), transients
    return n * _scores(case) + 5 * _dense_mask(case, key_padding=False), f"{n} dense L x L score matrices"


def _mask_model(case: Case, key_padding: bool = False) -> tuple[int, str]:
    if case.mask == "causal":
        return 0, "no mask tensor (is_causal)"
    return 5 * _dense_mask(case, key_padding), "a dense mask, bool and as float"  # SDPA converts bool to float


def _key_mask_model(case: Case) -> tuple[int, str]:
    return _mask_model(case, key_padding=True)  # peers take padding as a (B, 1, 1, L) key mask


def _mha_model(case: Case) -> tuple[int, str]:
    """``nn.MultiheadAttention``: forward-only (eval, no grad) takes torch's fused inference path,
    which materializes scores — peak at L=4096 (benchmarks/results/grid) was 547 MiB with no mask (one 512 MiB
    (B, H, L, L) matrix) and 1058-1266 MiB with one (about 2.5); training mode goes through SDPA."""
    if case.pass_ == "fwdbwd":
        if case.mask == "causal":  # MHA takes the dense attn_mask along with is_causal (21 GiB peak at 64k)
            return 5 * _dense_mask(case, key_padding=False), "a dense causal mask, bool and as float"
        return _key_mask_model(case)
    n = 1 if case.mask == "none" else 3
    what = "its inference fast path: " + ("a dense L x L score matrix" if n == 1 else f"{n} dense L x L matrices")
    return n * _scores(case) + 5 * _dense_mask(case, key_padding=True), what


def _linear_model(case: Case) -> tuple[int, str]:
    return 0, "O(L) memory"


def _flex_model(case: Case) -> tuple[int, str]:
    """``create_block_mask`` (and, with no mask, ``flex_attention``'s own full block mask)
    evaluates the mask on an L x L grid of 8-byte elements: at L=65536 it asked for 32 GiB."""
    return 8 * case.L * case.L, "an L x L 8-byte grid while building the BlockMask"


_BACKEND_MEMORY: dict[str, Callable[[Case], tuple[int, str]]] = {
    "reference": _scores_model,
    "sdpa": _mask_model,
    "tiled": _linear_model,
}  # attnkit backends not listed here are assumed to materialize scores (the safe guess)


# ---------------------------------------------------------------------- attnkit
def _meta_qkv(case: Case) -> Tensor:
    return torch.empty(case.B, case.H, case.L, case.D, device="meta")  # shapes only, no memory


def resolve_auto(case: Case) -> str:
    """The backend ``attention(backend="auto")`` picks for this case."""
    q = _meta_qkv(case)
    return explain(q, q, q, MASKS[case.mask].build(case.B, case.L)).backend


def _attnkit_impl(backend: str) -> Impl:
    def build(case: Case, x: Inputs) -> Callable[[], Tensor]:
        from ..functional import attention

        mask = MASKS[case.mask].build(case.B, case.L)
        q, k, v = x.qkv()
        return lambda: attention(q, k, v, mask, backend=backend)

    def memory(case: Case) -> tuple[int, str]:
        name = resolve_auto(case) if backend == "auto" else backend
        return _BACKEND_MEMORY.get(name, _scores_model)(case)

    def why_not(case: Case) -> str | None:
        if backend == "auto":
            return None
        if backend not in BACKENDS:
            return f"attnkit backend {backend!r} is no longer registered"
        q = _meta_qkv(case)
        problem = explain(q, q, q, MASKS[case.mask].build(case.B, case.L)).problem
        return BACKENDS[backend].why_not(problem)

    summary = "attention(backend='auto')" if backend == "auto" else BACKENDS[backend].summary
    return Impl(f"attnkit-{backend}", summary, build, memory, why_not=why_not)


# ---------------------------------------------------------------------- torch SDPA
def _sdpa_mask(case: Case) -> tuple[Tensor | None, bool]:
    """SDPA's native mask for the case: (attn_mask or None, is_causal). True = may attend."""
    if case.mask in ("none", "causal"):
        return None, case.mask == "causal"
    if case.mask == "padding":
        lengths = torch.tensor(padding_lengths(case.B, case.L))
        return (torch.arange(case.L) < lengths[:, None])[:, None, None, :], False  # (B, 1, 1, L)
    return _allowed_dense(case).contiguous(), False  # (1, 1, L, L)


def _allowed_dense(case: Case) -> Tensor:
    """The case's mask as a dense boolean tensor (Bm, 1, L, L); True = may attend. Only for a masked case."""
    mask = MASKS[case.mask].build(case.B, case.L)
    if mask is None:
        raise ValueError(f"mask {case.mask!r} builds no mask; the caller must handle the unmasked case")
    return mask.to_dense(case.L, case.L)


def _build_sdpa(case: Case, x: Inputs) -> Callable[[], Tensor]:
    mask, is_causal = _sdpa_mask(case)
    q, k, v = x.qkv()
    return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)


def _build_sdpa_math(case: Case, x: Inputs) -> Callable[[], Tensor]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    mask, is_causal = _sdpa_mask(case)
    q, k, v = x.qkv()

    def run() -> Tensor:
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)

    return run


# ---------------------------------------------------------------------- naive
def _build_naive(case: Case, x: Inputs) -> Callable[[], Tensor]:
    m = MASKS[case.mask].build(case.B, case.L)
    forbidden = None if m is None else ~m.to_dense(case.L, case.L)  # (Bm, 1, L, L), prepared once
    scale = 1.0 / math.sqrt(case.D)
    q, k, v = x.qkv()

    def run() -> Tensor:
        s = (q @ k.transpose(-2, -1)) * scale  # (B, H, L, D) @ (B, H, D, L) -> (B, H, L, L)
        if forbidden is not None:
            s = s.masked_fill(forbidden, float("-inf"))
        return torch.softmax(s, dim=-1) @ v  # (B, H, L, L) @ (B, H, L, D) -> (B, H, L, D)

    return run


# ---------------------------------------------------------------------- nn.MultiheadAttention
def _build_mha(case: Case, x: Inputs) -> Callable[[], Tensor]:
    E = case.H * case.D
    mha = torch.nn.MultiheadAttention(E, case.H, batch_first=True)
    mha.train(case.pass_ == "fwdbwd")  # eval + no_grad lets torch take its fused inference path
    kw: dict = {"need_weights": False}
    if case.mask == "padding":
        lengths = torch.tensor(padding_lengths(case.B, case.L))
        kw["key_padding_mask"] = torch.arange(case.L) >= lengths[:, None]  # (B, L), True = padding (torch polarity)
    elif case.mask != "none":
        allowed = _allowed_dense(case)[0, 0]  # (L, L)
        kw["attn_mask"] = ~allowed  # torch's MHA: True = may NOT attend
        kw["is_causal"] = case.mask == "causal"
    return lambda: mha(x.x, x.x, x.x, **kw)[0]  # (B, L, E)


# ---------------------------------------------------------------------- FlexAttention
def _mask_mod(case: Case):
    if case.mask == "causal":
        return lambda b, h, q_idx, kv_idx: q_idx >= kv_idx
    if case.mask == "sliding":
        return lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) & (q_idx - kv_idx < SLIDING_WINDOW)
    if case.mask == "document":
        ids = document_ids(case.L)
        return lambda b, h, q_idx, kv_idx: ids[q_idx] == ids[kv_idx]
    if case.mask == "padding":
        lengths = torch.tensor(padding_lengths(case.B, case.L))
        return lambda b, h, q_idx, kv_idx: kv_idx < lengths[b]
    raise ValueError(f"no mask_mod for mask {case.mask!r}")


def _build_flex(case: Case, x: Inputs) -> Callable[[], Tensor]:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    q, k, v = x.qkv()
    block_mask = None
    if case.mask != "none":
        B = case.B if case.mask == "padding" else None
        block_mask = create_block_mask(_mask_mod(case), B, None, case.L, case.L, device=q.device)
    compiled = torch.compile(flex_attention)
    return lambda: compiled(q, k, v, block_mask=block_mask)


# ---------------------------------------------------------------------- registry
PEERS: list[Impl] = [
    Impl("sdpa", "torch.nn.functional.scaled_dot_product_attention, default kernel choice", _build_sdpa,
         _key_mask_model),
    Impl("sdpa-math", "torch SDPA restricted to the math kernel (sdpa_kernel(SDPBackend.MATH))",
         _build_sdpa_math, _scores_model),
    Impl("naive", "softmax(QK^T / sqrt(d)) V in three torch lines, dense mask", _build_naive, _scores_model),
    Impl("mha", "torch.nn.MultiheadAttention with its projections (d_model = H * D)", _build_mha,
         _mha_model, kind="module"),
    Impl("flex", "torch FlexAttention, torch.compile'd, BlockMask from create_block_mask", _build_flex,
         _flex_model, compiled=True),
]  # fmt: skip


def implementations() -> dict[str, Impl]:
    """Every implementation by name: attnkit ``auto``, each registered attnkit backend, then the peers.

    Reads ``attnkit.functional.dispatch.BACKENDS`` on each call, so a backend registered
    later (``tiled``) is included without changes here.
    """
    impls = [_attnkit_impl("auto")] + [_attnkit_impl(name) for name in BACKENDS] + PEERS
    return {impl.name: impl for impl in impls}


def estimate_bytes(case: Case, impl: Impl) -> tuple[int, str]:
    """Bytes the case would need beyond its inputs under ``impl``, and what dominates."""
    return impl.memory(case)


def skip_reason(case: Case, impl: Impl, max_bytes: int) -> str | None:
    """Why the case is not run (the implementation refuses it, or it would exceed the memory budget)."""
    why = impl.why_not(case)
    if why is not None:
        return f"{impl.name} refuses: {why}"
    extra, what = estimate_bytes(case, impl)
    need = extra + input_bytes(case)
    if need > max_bytes:
        return f"would need {need / GiB:.1f} GiB ({what}); --max-memory is {max_bytes / GiB:.1f} GiB"
    return None
