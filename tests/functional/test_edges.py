"""The attention contract at its edges, the same in every backend (the reference is the spec).

No keys (Lk = 0), no batch rows (B = 0), a scale that is not finite, non-finite inputs ("NaN in, NaN out"),
an fp16 bias beyond fp16's range, explain() for a bias-only call, errors that name
the entry point, and the SDPA adapter's memory estimate against the bytes it allocates.

Shape legend: B batch, H query heads, Hkv key/value heads, Lq queries, Lk keys,
D query/key head dim, Dv value head dim.
"""

from __future__ import annotations

import math
import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from attnkit import masks
from attnkit.functional import Alibi, alibi_slopes, attention, attention_weights, explain, tiled_attention
from attnkit.functional.bias import as_bias
from attnkit.functional.dispatch import BACKENDS
from attnkit.functional.sdpa import sdpa_attention, sdpa_mask_bytes

NAMES = sorted(BACKENDS) + ["auto"]
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
MASKS = {
    "none": lambda: None,
    "causal": lambda: masks.causal(),
    "padding": lambda: masks.padding([3, 0]),
    "window&padding": lambda: masks.sliding_window(2) & masks.padding([5, 2]),
}


def qkv(B, H, Hkv, Lq, Lk, D, Dv, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)
                 for s in ((B, H, Lq, D), (B, Hkv, Lk, D), (B, Hkv, Lk, Dv)))  # fmt: skip


# ---------------------------------------------------------------------- no keys
@pytest.mark.parametrize("mask", ["none", "causal", "padding"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_no_keys_output_zeros_lse_neg_inf_every_backend(name, dtype, mask):
    q, k, v = qkv(2, 4, 2, 3, 0, 8, 5, dtype)
    m = masks.padding([0, 0]) if mask == "padding" else MASKS[mask]()
    out = attention(q, k, v, m, backend=name)
    assert out.shape == (2, 4, 3, 5) and out.dtype == dtype and (out == 0).all()
    if name in ("reference", "tiled", "auto"):
        _, lse = attention(q, k, v, m, backend=name, return_lse=True)
        assert lse.shape == (2, 4, 3) and torch.isneginf(lse).all()
    if name in ("reference", "auto"):
        _, weights = attention(q, k, v, m, backend=name, return_weights=True)
        assert weights.shape == (2, 4, 3, 0)


# ---------------------------------------------------------------------- no batch rows
EMPTY_BATCH_MASKS = {
    "none": None,
    "causal": masks.causal(),
    "sliding": masks.sliding_window(16),
    "prefix": masks.prefix_lm(10),
    "document": masks.document(torch.arange(300) // 100),
    "padding": masks.padding(torch.zeros(0, dtype=torch.long)),
}


@pytest.mark.parametrize("mask", sorted(EMPTY_BATCH_MASKS))
@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_gives_empty_output_and_gradients_every_backend(name, mask):
    """B = 0 (an empty batch at the end of a data loader): empty results, no error (tiled once divided by 0)."""
    q, k, v = (t.requires_grad_() for t in qkv(0, 2, 2, 300, 300, 8, 8))
    out = attention(q, k, v, EMPTY_BATCH_MASKS[mask], backend=name)
    assert out.shape == (0, 2, 300, 8)
    out.sum().backward()
    assert q.grad is not None and q.grad.shape == q.shape and k.grad.shape == k.shape and v.grad.shape == v.shape


@pytest.mark.parametrize("name", NAMES)
def test_no_keys_gradient_of_q_is_zero_every_backend(name):
    q, k, v = (t.requires_grad_() for t in qkv(1, 2, 1, 4, 0, 3, 2, torch.float64))
    attention(q, k, v, backend=name).sum().backward()
    assert q.grad is not None and (q.grad == 0).all() and k.grad.shape == k.shape and v.grad.shape == v.shape


def test_no_keys_tiled_attention_and_weights_direct():
    q, k, v = qkv(1, 2, 2, 3, 0, 4, 4)
    out, lse = tiled_attention(q, k, v)
    assert (out == 0).all() and torch.isneginf(lse).all()
    assert attention_weights(q, k, v).shape == (1, 2, 3, 0)


# ---------------------------------------------------------------------- scale
@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("fn", [attention, explain, tiled_attention, attention_weights], ids=lambda f: f.__name__)
def test_scale_not_finite_raises_named_value_error(fn, scale):
    q, k, v = qkv(1, 2, 2, 3, 4, 8, 8)
    with pytest.raises(ValueError, match=rf"{fn.__name__}\(\): scale must be a finite number, got {scale!r}"):
        fn(q, k, v, scale=scale)


# ---------------------------------------------------------------------- NaN in, NaN out
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("mask", sorted(MASKS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("L", [6, 300])  # 300: several tiles, and torch's flash kernel on the sdpa path
def test_nonfinite_query_row_gives_nan_in_that_row_only_every_backend(name, dtype, mask, bad, L):
    q, k, v = qkv(2, 4, 2, L, L, 8, 5, dtype)
    q[0, 1, 2, 3] = bad  # one entry of query row 2, head 1, batch 0
    m = MASKS[mask]()
    if m is not None and mask == "window&padding":
        m = masks.sliding_window(2) & masks.padding([L, L // 2])
    elif mask == "padding":
        m = masks.padding([L, 0])
    out = attention(q, k, v, m, backend=name)
    nan_rows = torch.isnan(out).any(dim=-1)  # (B, H, Lq)
    expected = torch.zeros_like(nan_rows)
    expected[0, 1, 2] = True
    assert torch.equal(nan_rows, expected), f"NaN rows {nan_rows.nonzero().tolist()}"
    assert torch.isnan(out[0, 1, 2]).all()


@pytest.mark.parametrize("where", ["k", "v"])
@pytest.mark.parametrize("mask", sorted(MASKS))
@pytest.mark.parametrize("name", NAMES)
def test_nonfinite_key_or_value_gives_nan_in_the_heads_reading_it_every_backend(name, mask, where):
    """Even a key no query may attend (masked out) gives NaN: masking never hides a NaN input."""
    q, k, v = qkv(2, 4, 2, 6, 6, 8, 5)
    {"k": k, "v": v}[where][1, 0, 5, 0] = float("nan")  # batch 1, key head 0 (query heads 0, 1), last key
    out = attention(q, k, v, MASKS[mask](), backend=name)
    nan_rows = torch.isnan(out).any(dim=-1)  # (B, H, Lq)
    expected = torch.zeros_like(nan_rows)
    expected[1, :2] = True
    assert torch.equal(nan_rows, expected)


# big * 320 values (40 keys x 8) overflows the check's sum; big * 40 keys still fits an unnormalized P V sum
@pytest.mark.parametrize("dtype, big", [(torch.float32, 4e36), (torch.float16, 1e3)], ids=["float32", "float16"])
@pytest.mark.parametrize("name", NAMES)
def test_finite_values_whose_sum_overflows_are_not_taken_for_nan(name, dtype, big):
    """The NaN check sums a row first (fast); a sum that overflows must not flag finite inputs."""
    q, k, _ = qkv(1, 2, 1, 3, 40, 8, 8, dtype)
    v = torch.full((1, 1, 40, 8), big, dtype=dtype)  # every value big: any average of them is big too
    out = attention(q, k, v, masks.causal(), backend=name)
    assert torch.isfinite(out).all() and torch.allclose(out.double(), torch.full_like(out, big).double(), rtol=1e-3)


def test_nonfinite_lse_and_weights_nan_in_the_same_rows():
    q, k, v = qkv(1, 2, 1, 4, 5, 8, 8, torch.float64)
    q[0, 0, 1, 0] = float("nan")
    out, weights, lse = attention(q, k, v, masks.causal(), return_weights=True, return_lse=True)
    assert torch.isnan(lse[0, 0, 1]) and torch.isnan(weights[0, 0, 1]).all()
    assert torch.isfinite(lse[0, 1]).all() and not torch.isnan(weights[0, 1]).any()


# ---------------------------------------------------------------------- fp16 bias beyond fp16's range
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_half_inputs_with_float32_bias_over_fp16_max_same_result_every_path(name, dtype):
    q, k, v = qkv(1, 2, 1, 5, 7, 8, 8, dtype)
    bias = torch.zeros(1, 1, 5, 7)  # float32 bias: keys 0-2 get +1e5 (beyond fp16's 65504), the rest 0
    bias[..., :3] = 1e5
    bias[..., 0] += 1.0  # key 0 wins over keys 1-2 by e: the bias must stay float32 to keep this
    out = attention(q, k, v, bias=bias, backend=name)
    assert torch.isfinite(out).all()
    # oracle: float64 by hand; the bias dominates, so weights ~ softmax(bias) over keys 0-2
    s = q.double() @ k.double().transpose(-1, -2) / math.sqrt(8) + bias.double()  # (1, 2, 5, 7)
    want = s.softmax(dim=-1) @ v.double()
    assert (out.double() - want).abs().max() < 2 * torch.finfo(dtype).eps * v.double().abs().max() + 1e-3


# ---------------------------------------------------------------------- explain() and errors
def test_explain_bias_only_says_bias_and_header_names_it():
    q, k, v = qkv(1, 4, 4, 600, 600, 8, 8)
    e = explain(q, k, v, bias=Alibi(alibi_slopes(4)))
    text = str(e)
    assert "bias=Alibi(num_heads=4" in text.splitlines()[0]
    assert "dense tensor" not in text
    assert "only a bias" in e.reasons["tiled"] and "MiB" in e.reasons["tiled"]


@pytest.mark.parametrize(
    "bias, error, match",
    [
        (torch.ones(5, 7, dtype=torch.bool), TypeError, r"bias must be a float tensor .*torch.bool"),
        (torch.zeros(1, 1, 1, 5, 7), ValueError, r"bias must broadcast to \(B, H, Lq, Lk\), got 5 dims"),
        ("alibi", TypeError, r"bias must be a float tensor, an attnkit Bias .* got str"),
    ],
)
@pytest.mark.parametrize("fn", [attention, tiled_attention, attention_weights], ids=lambda f: f.__name__)
def test_bias_errors_start_with_the_entry_point_name(fn, bias, error, match):
    q, k, v = qkv(2, 4, 2, 5, 7, 8, 6)
    with pytest.raises(error, match=rf"^{fn.__name__}\(\): {match}"):
        fn(q, k, v, bias=bias)


# ---------------------------------------------------------------------- memory estimate vs measured
class PeakMeter(TorchDispatchMode):
    """Peak bytes of the tensors torch ops create while active (views and in-place results count once).

    Deterministic, unlike the process's peak RSS (``attnkit bench``'s gauge, attnkit.bench.measure),
    which on a shared machine also counts pages swapped back in; in a quiet process the two agree
    (padding / ALiBi / both at B=2, H=4, L=1024: RSS 8.9 / 28.4 / 51.8 MiB, this meter 8.5 / 24.0 / 50.0).
    """

    def __init__(self, existing):
        super().__init__()
        self.skip = {t.untyped_storage().data_ptr() for t in existing}  # inputs: not built by the call
        self.refs: dict[int, int] = {}
        self.live = self.peak = 0

    def _release(self, key: int, nbytes: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key in self.skip or key == 0:
                continue
            if key not in self.refs:
                self.refs[key] = 0
                self.live += storage.nbytes()
                self.peak = max(self.peak, self.live)
            self.refs[key] += 1
            weakref.finalize(t, self._release, key, storage.nbytes())
        return out


@pytest.mark.parametrize("kind", ["padding", "alibi", "padding+alibi", "causal&padding+tensor"])
def test_sdpa_memory_estimate_matches_measured_peak(kind):
    """sdpa_mask_bytes (what the dispatcher budgets) against the bytes the SDPA call really allocates."""
    B, H, L = 2, 4, 1024
    q = k = v = torch.randn(B, H, L, 16)
    mask = masks.padding([L, L // 2]) if "padding" in kind else None
    mask = masks.causal() & mask if "causal" in kind else mask
    bias = Alibi(alibi_slopes(H)) if "alibi" in kind else (torch.randn(1, H, L, L) if "tensor" in kind else None)
    with PeakMeter([q] + ([bias] if isinstance(bias, torch.Tensor) else [])) as meter:
        out = sdpa_attention(q, k, v, mask, bias=as_bias(bias))
        out_bytes = out.untyped_storage().nbytes()
        del out
    built = meter.peak - out_bytes
    estimate = sdpa_mask_bytes(B, H, L, L, q.dtype, mask, as_bias(bias))
    assert meter.live == 0
    assert 0.67 <= estimate / built <= 1.5, f"estimate {estimate / 2**20:.1f} MiB vs built {built / 2**20:.1f} MiB"


def test_dispatch_memory_estimate_counts_the_combined_float_mask():
    """The issue's case: B=4, H=8, L=4096, padding + ALiBi: SDPA builds a (B, H, Lq, Lk) float32 mask (2 GiB)."""
    q = torch.empty(4, 8, 4096, 64)  # explain() reads shapes only
    e = explain(q, q, q, masks.padding([4096, 4000, 3000, 100]), bias=Alibi(alibi_slopes(8)))
    assert e.backend == "tiled" and "2.7 GiB" in e.reasons["sdpa"]
