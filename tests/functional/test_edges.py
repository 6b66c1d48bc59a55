"""The attention contract at its edges, the same in every backend (the reference is the spec).

No keys (Lk = 0), a scale that is not finite, non-finite inputs ("NaN in, NaN out"),
an fp16 bias beyond fp16's range, explain() for a bias-only call, errors that name
the entry point, and the SDPA adapter's memory estimate against measured peak memory.

Shape legend: B batch, H query heads, Hkv key/value heads, Lq queries, Lk keys,
D query/key head dim, Dv value head dim.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from attnkit import masks
from attnkit.functional import Alibi, alibi_slopes, attention, attention_weights, explain, tiled_attention
from attnkit.functional.dispatch import BACKENDS

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
_MEASURE = textwrap.dedent(
    """
    import json, sys, torch
    torch.set_num_threads(1)
    from attnkit.bench import measure
    from attnkit import masks
    from attnkit.functional import Alibi, alibi_slopes
    from attnkit.functional.dispatch import explain
    from attnkit.functional.sdpa import sdpa_attention, sdpa_mask_bytes
    B, H, L, kind = 2, 4, 1024, sys.argv[1]
    q = k = v = torch.randn(B, H, L, 16)
    mask = masks.padding([L, L // 2]) if "padding" in kind else None
    bias = Alibi(alibi_slopes(H)) if "alibi" in kind else None
    measure.exact_allocator()
    sdpa_attention(q[:, :, :8], k[:, :, :8], v[:, :, :8], None if mask is None else masks.padding([8, 4]), bias=bias)
    peaks = []
    for _ in range(3):  # the least of three: a stray allocation elsewhere in the process only adds
        measure.trim()
        ok = measure.reset_peak()
        base = measure.rss_bytes()
        out = sdpa_attention(q, k, v, mask, bias=bias)
        peaks.append(measure.peak_rss_bytes() - base - out.numel() * out.element_size())
        del out
    print(json.dumps({"ok": ok, "peak": min(peaks), "estimate": sdpa_mask_bytes(B, H, L, L, q.dtype, mask, bias)}))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS reset needs Linux /proc")
@pytest.mark.parametrize("kind", ["padding", "alibi", "padding+alibi"])
def test_sdpa_memory_estimate_matches_measured_peak(kind):
    """The estimate the dispatcher uses (sdpa_mask_bytes) against the peak RSS of the SDPA call,
    measured as `attnkit bench` does (attnkit.bench.measure), in a fresh process."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", _MEASURE, kind], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    if not got["ok"]:
        pytest.skip("this kernel does not allow resetting the peak RSS (/proc/self/clear_refs)")
    ratio = got["estimate"] / max(got["peak"], 1)
    assert 0.67 <= ratio <= 1.5, f"estimate {got['estimate'] / 2**20:.1f} MiB vs measured {got['peak'] / 2**20:.1f} MiB"


def test_dispatch_memory_estimate_counts_the_combined_float_mask():
    """The issue's case: B=4, H=8, L=4096, padding + ALiBi: SDPA builds a (B, H, Lq, Lk) float32 mask (2 GiB)."""
    q = torch.empty(4, 8, 4096, 64)  # explain() reads shapes only
    e = explain(q, q, q, masks.padding([4096, 4000, 3000, 100]), bias=Alibi(alibi_slopes(8)))
    assert e.backend == "tiled" and "2.7 GiB" in e.reasons["sdpa"]
