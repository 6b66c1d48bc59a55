"""The reference backend against an independent float64 numpy oracle and hand values.

The oracle below loops over every (batch, head, query) row and writes the
softmax out by hand (maximum shift, exponentials, sum), reading key/value head
``h // (H // Hkv)`` for query head ``h``. Mask and bias values come from python
loops over the documented rules, never from attnkit.

Shape legend: B batch, H query heads, Hkv key/value heads, Lq queries, Lk keys,
D query/key head dim, Dv value head dim.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attnkit import masks
from attnkit.functional import Alibi, TensorBias, alibi_slopes, attention, reference_attention

# (B, H, Hkv, Lq, Lk, D, Dv): GQA ratios 1, 2, 4; Lq != Lk both ways; Dv != D
SHAPES = [
    (1, 1, 1, 1, 1, 3, 3),
    (2, 2, 2, 5, 5, 4, 4),
    (2, 4, 2, 3, 7, 5, 2),
    (1, 4, 1, 7, 3, 3, 6),
    (2, 6, 3, 6, 9, 2, 5),
]


# ---------------------------------------------------------------------- oracle
def oracle(q, k, v, allowed=None, bias=None, scale=None):
    """Attention in float64 with explicit loops; returns (out, weights, lse) as numpy arrays."""
    q, k, v = (np.asarray(t, dtype=np.float64) for t in (q, k, v))
    B, H, Lq, D = q.shape
    Hkv, Lk, Dv = k.shape[1], k.shape[2], v.shape[3]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    allowed = np.ones((B, H, Lq, Lk), bool) if allowed is None else np.broadcast_to(allowed, (B, H, Lq, Lk))
    bias = np.zeros((B, H, Lq, Lk)) if bias is None else np.broadcast_to(np.asarray(bias, np.float64), (B, H, Lq, Lk))
    out, weights = np.zeros((B, H, Lq, Dv)), np.zeros((B, H, Lq, Lk))
    lse = np.full((B, H, Lq), -np.inf)
    for b in range(B):
        for h in range(H):
            g = h // (H // Hkv)  # the key/value head this query head reads
            for i in range(Lq):
                keys = [j for j in range(Lk) if allowed[b, h, i, j]]
                if not keys:
                    continue  # nothing to attend to: zeros, lse = -inf
                s = {j: float(np.dot(q[b, h, i], k[b, g, j])) * scale + bias[b, h, i, j] for j in keys}
                m = max(s.values())
                e = {j: math.exp(s[j] - m) for j in keys}
                total = sum(e.values())
                for j in keys:
                    weights[b, h, i, j] = e[j] / total
                    out[b, h, i] += weights[b, h, i, j] * v[b, g, j]
                lse[b, h, i] = m + math.log(total)
    return out, weights, lse


def loop_mask(rule, Lq, Lk):
    """(1, 1, Lq, Lk) bool array of ``rule(a, j)`` with ``a = i + Lk - Lq`` (bottom-right alignment)."""
    return np.array([[[[rule(i + Lk - Lq, j) for j in range(Lk)] for i in range(Lq)]]])


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def make_qkv(B, H, Hkv, Lq, Lk, D, Dv, dtype=torch.float64, seed=0):
    return randn(B, H, Lq, D, seed=seed, dtype=dtype), randn(B, Hkv, Lk, D, seed=seed + 1, dtype=dtype), randn(
        B, Hkv, Lk, Dv, seed=seed + 2, dtype=dtype
    )


def mask_cases(B, Lq, Lk):
    """(name, attnkit mask, oracle bool array broadcastable to (B, 1, Lq, Lk))."""
    lengths = [(b * 3 + 2) % (Lk + 1) for b in range(B)]
    dense = randn(B, 1, Lq, Lk, seed=7) > 0
    lengths_4d = np.array(lengths)[:, None, None, None]  # (B, 1, 1, 1)
    return [
        ("none", None, None),
        ("causal", masks.causal(), loop_mask(lambda a, j: j <= a, Lq, Lk)),
        ("window2", masks.sliding_window(2), loop_mask(lambda a, j: a - 2 < j <= a, Lq, Lk)),
        ("padding", masks.padding(lengths), np.arange(Lk)[None, None, None, :] < lengths_4d),
        ("dense", masks.dense(dense), dense.numpy()),
    ]


def assert_matches_oracle(got, want, atol=1e-12):
    out, weights, lse = got
    np.testing.assert_allclose(out.detach().numpy(), want[0], rtol=0, atol=atol)
    np.testing.assert_allclose(weights.detach().numpy(), want[1], rtol=0, atol=atol)
    np.testing.assert_allclose(lse.detach().numpy(), want[2], rtol=0, atol=atol)  # -inf == -inf


# ---------------------------------------------------------------------- values
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("mask_name", ["none", "causal", "window2", "padding", "dense"])
def test_reference_matches_numpy_oracle_masks_gqa(shape, mask_name):
    B, H, Hkv, Lq, Lk, D, Dv = shape
    q, k, v = make_qkv(*shape)
    _, mask, allowed = next(c for c in mask_cases(B, Lq, Lk) if c[0] == mask_name)
    assert_matches_oracle(reference_attention(q, k, v, mask), oracle(q, k, v, allowed))


@pytest.mark.parametrize("shape", SHAPES[2:], ids=str)
def test_reference_matches_numpy_oracle_tensor_bias_and_scale(shape):
    B, H, Hkv, Lq, Lk, D, Dv = shape
    q, k, v = make_qkv(*shape)
    bias = randn(B, 1, Lq, Lk, seed=5) * 2  # broadcast over heads
    want = oracle(q, k, v, bias=bias.numpy(), scale=0.37)
    assert_matches_oracle(reference_attention(q, k, v, bias=TensorBias(bias), scale=0.37), want)


def test_reference_gqa_query_head_reads_kv_head_h_div_group():
    H, Hkv = 6, 3  # G = 2: heads 0,1 -> kv 0; 2,3 -> kv 1; 4,5 -> kv 2
    q, k, _ = make_qkv(1, H, Hkv, 4, 5, 3, 2)
    v = torch.arange(Hkv, dtype=torch.float64)[None, :, None, None].expand(1, Hkv, 5, 2)  # kv head g holds g
    out = reference_attention(q, k, v)[0]
    for h in range(H):
        assert torch.allclose(out[0, h], torch.full((4, 2), float(h // 2), dtype=torch.float64), atol=1e-12)


def test_reference_hand_values_identity_scale_one():
    q = k = torch.eye(2, dtype=torch.float64)[None, None]  # (1, 1, 2, 2): scores = I
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)[None, None]
    out, weights, lse = reference_attention(q, k, v, scale=1.0)
    e = math.e
    want = torch.tensor([[e / (e + 1), 1 / (e + 1)], [1 / (e + 1), e / (e + 1)]], dtype=torch.float64)
    assert torch.allclose(weights[0, 0], want, atol=1e-15) and torch.allclose(out[0, 0], want, atol=1e-15)
    assert torch.allclose(lse[0, 0], torch.full((2,), math.log(e + 1), dtype=torch.float64), atol=1e-15)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_reference_weights_rows_sum_to_one_or_zero_causal(shape):
    q, k, v = make_qkv(*shape)
    _, weights, _ = reference_attention(q, k, v, masks.causal())
    Lq, Lk = shape[3], shape[4]
    visible = np.array([i + Lk - Lq >= 0 for i in range(Lq)], dtype=np.float64)  # rows with some key
    np.testing.assert_allclose(weights.sum(-1).numpy(), np.broadcast_to(visible, weights.shape[:3]), atol=1e-12)
    assert (weights >= 0).all()


# ---------------------------------------------------------------------- ALiBi
ALIBI_SLOPES = {  # the paper's slopes written out by hand
    1: [2**-8],
    2: [2**-4, 2**-8],
    3: [2**-4, 2**-8, 2**-2],  # slopes of 2 heads + every other slope of 4 heads
    4: [2**-2, 2**-4, 2**-6, 2**-8],
    6: [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3],
    8: [2.0**-n for n in range(1, 9)],
    12: [2.0**-n for n in range(1, 9)] + [2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5],
}


@pytest.mark.parametrize("n", sorted(ALIBI_SLOPES))
def test_alibi_slopes_hand_values_head_counts(n):
    np.testing.assert_allclose(alibi_slopes(n).double().numpy(), ALIBI_SLOPES[n], rtol=1e-7)


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32, 64])
def test_alibi_slopes_geometric_powers_of_two(n):
    want = [(2 ** (-8 / n)) ** (i + 1) for i in range(n)]
    np.testing.assert_allclose(alibi_slopes(n).double().numpy(), want, rtol=1e-7)


@pytest.mark.parametrize("Lq,Lk", [(4, 4), (2, 5), (5, 2)])
@pytest.mark.parametrize("symmetric", [False, True])
def test_alibi_bias_values_hand_formula_bottom_right(Lq, Lk, symmetric):
    H = 3
    got = Alibi(alibi_slopes(H), symmetric=symmetric).to_dense(Lq, Lk)
    assert tuple(got.shape) == (1, H, Lq, Lk)
    for h in range(H):
        m = ALIBI_SLOPES[3][h]
        for i in range(Lq):
            for j in range(Lk):
                d = (i + Lk - Lq) - j  # query i sits at key position i + Lk - Lq
                want = -m * (abs(d) if symmetric else d)
                assert math.isclose(float(got[0, h, i, j]), want, rel_tol=1e-6, abs_tol=1e-12)


@pytest.mark.parametrize("Lq,Lk", [(3, 6), (6, 3)])
def test_reference_alibi_attention_matches_oracle_causal(Lq, Lk):
    H = 4
    q, k, v = make_qkv(2, H, 2, Lq, Lk, 4, 3)
    slopes = np.array(ALIBI_SLOPES[4])
    bias = np.array([[[-slopes[h] * ((i + Lk - Lq) - j) for j in range(Lk)] for i in range(Lq)] for h in range(H)])
    want = oracle(q, k, v, loop_mask(lambda a, j: j <= a, Lq, Lk), bias[None])
    assert_matches_oracle(reference_attention(q, k, v, masks.causal(), bias=Alibi(alibi_slopes(H))), want, 1e-6)


# ---------------------------------------------------------------------- fully masked rows
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_reference_fully_masked_rows_zero_output_weights_grad(dtype):
    q, k, v = (t.requires_grad_() for t in make_qkv(2, 4, 2, 6, 3, 4, 5, dtype=dtype))
    mask = masks.causal() & masks.padding([3, 0])  # batch 0: queries 0-2 see nothing; batch 1: no query sees anything
    out, weights, lse = reference_attention(q, k, v, mask)
    (out.float().square().sum() + weights.float().sum()).backward()
    assert (out[0, :, :3] == 0).all() and (out[1] == 0).all()
    assert (weights[0, :, :3] == 0).all() and (weights[1] == 0).all()
    assert torch.isneginf(lse[0, :, :3]).all() and torch.isneginf(lse[1]).all() and torch.isfinite(lse[0, :, 3:]).all()
    assert (q.grad[0, :, :3] == 0).all() and (q.grad[1] == 0).all()
    assert (k.grad[1] == 0).all() and (v.grad[1] == 0).all()
    for t in (out, weights, q.grad, k.grad, v.grad):
        assert not torch.isnan(t).any()


def test_reference_lse_backward_finite_fully_masked_row():
    q, k, v = (t.requires_grad_() for t in make_qkv(1, 1, 1, 4, 2, 3, 3))
    _, _, lse = reference_attention(q, k, v, masks.causal())  # rows 0, 1 are empty: lse = -inf
    lse[torch.isfinite(lse)].sum().backward()
    assert torch.isfinite(q.grad).all() and (q.grad[0, 0, :2] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_reference_large_logits_match_oracle_every_dtype(dtype):
    # q = +-4096, k = +-1, D = 4, scale 1e4/16384: logits in {0, +-5e3, +-1e4}, exact in every dtype.
    # Head 1: five equal keys and queries opposite to them, so every logit of its rows is -1e4.
    g = torch.Generator().manual_seed(0)
    k = torch.randint(0, 2, (1, 2, 5, 4), generator=g) * 2.0 - 1  # (1, 2, 5, 4)
    q = (torch.randint(0, 2, (1, 2, 3, 4), generator=g) * 2.0 - 1) * 4096  # (1, 2, 3, 4)
    k[0, 1] = k[0, 1, :1]  # (5, 4) rows all equal to key 0
    q[0, 1] = -4096 * k[0, 1, :1]  # (3, 4) rows all opposite
    q, k, v = q.to(dtype), k.to(dtype), randn(1, 2, 5, 2, dtype=dtype)
    out, weights, _ = reference_attention(q, k, v, scale=1e4 / 16384)
    want = oracle(q.double(), k.double(), v.double(), scale=1e4 / 16384)
    assert torch.isfinite(out).all()
    half = dtype in (torch.float16, torch.bfloat16)  # half weights/outputs carry 8 or 11 significant bits
    np.testing.assert_allclose(weights.double().numpy(), want[1], rtol=0, atol=4e-3 if half else 1e-7)
    np.testing.assert_allclose(out.double().numpy(), want[0], rtol=0, atol=2e-2 if half else 1e-6)


# ---------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize(
    "mask",
    [None, masks.causal(), masks.sliding_window(2, causal=False) & masks.padding([3, 2])],
    ids=["none", "causal_empty_row", "window_padding"],
)
def test_reference_gradcheck_float64_masks_and_bias(mask):
    B, H, Hkv, Lq, Lk, D, Dv = 2, 2, 1, 4, 3, 3, 2  # Lq > Lk: causal leaves query 0 with no key
    q, k, v = (t.requires_grad_() for t in make_qkv(B, H, Hkv, Lq, Lk, D, Dv))
    bias = randn(B, H, Lq, Lk, seed=9).requires_grad_()

    def f(q, k, v, bias):
        out, weights, _ = reference_attention(q, k, v, mask, bias=TensorBias(bias))
        return out, weights

    assert torch.autograd.gradcheck(f, (q, k, v, bias))


def test_reference_gradcheck_float64_lse_no_empty_row():
    q, k, v = (t.requires_grad_() for t in make_qkv(1, 2, 2, 3, 4, 3, 2))
    assert torch.autograd.gradcheck(lambda q, k, v: reference_attention(q, k, v, masks.causal()), (q, k, v))


# ---------------------------------------------------------------------- dtypes and the public entry
# measured worst errors over seeds: 4e-7, 7e-3, 1e-3 (a few units in the last place of |out| ~ 2)
@pytest.mark.parametrize("dtype, atol", [(torch.float32, 2e-6), (torch.bfloat16, 1.5e-2), (torch.float16, 2e-3)])
def test_reference_low_precision_close_to_oracle_dtype(dtype, atol):
    q, k, v = make_qkv(2, 4, 2, 9, 13, 8, 6, dtype=dtype)
    out, weights, lse = reference_attention(q, k, v, masks.causal())
    assert out.dtype == weights.dtype == dtype and lse.dtype == torch.promote_types(dtype, torch.float32)
    want = oracle(q.double(), k.double(), v.double(), loop_mask(lambda a, j: j <= a, 9, 13))
    np.testing.assert_allclose(out.double().numpy(), want[0], rtol=0, atol=atol)
    np.testing.assert_allclose(weights.double().numpy(), want[1], rtol=0, atol=atol)


def test_attention_reference_backend_returns_oracle_values_and_tuple():
    q, k, v = make_qkv(2, 4, 2, 5, 7, 3, 4)
    out, weights, lse = attention(q, k, v, masks.causal(), return_weights=True, return_lse=True, backend="reference")
    assert_matches_oracle((out, weights, lse), oracle(q, k, v, loop_mask(lambda a, j: j <= a, 5, 7)))
