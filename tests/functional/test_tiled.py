"""The tiled backend (FlashAttention-2 forward/backward) against the float64 reference.

Every comparison runs ``reference_attention`` on float64 inputs. In float64 the
tiled result must agree to round-off; in lower precisions its error must be at
most twice the reference's own error in that dtype (plus a small floor).

Shape legend: B batch, H query heads, Hkv key/value heads, Lq queries, Lk keys,
D query/key head dim, Dv value head dim.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from attnkit import masks
from attnkit.functional import Alibi, alibi_slopes, attention, attention_weights, explain, tiled_attention
from attnkit.functional.bias import as_bias
from attnkit.functional.reference import attention_scores, normalize, reference_attention, weighted_sum
from attnkit.functional.tiled import TiledCall, dropout_keep_mask

# (B, H, Hkv, Lq, Lk, D, Dv, block_q, block_k): odd lengths, blocks that do not divide L, Lq != Lk, GQA
SHAPES = [
    (2, 2, 2, 97, 97, 16, 16, 32, 48),
    (1, 4, 2, 200, 97, 8, 12, 64, 40),
    (2, 4, 1, 97, 200, 8, 8, 33, 64),
]
LONG = (1, 2, 1, 1025, 1025, 8, 8, 128, 96)  # runs with a few masks only, to keep the file fast


def randn(*shape, seed=0, dtype=torch.float64, grad=False):
    t = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)
    return t.requires_grad_(grad)


def make_qkv(B, H, Hkv, Lq, Lk, D, Dv, dtype=torch.float64, seed=0):
    return (randn(B, H, Lq, D, seed=seed, dtype=dtype, grad=True), randn(B, Hkv, Lk, D, seed=seed + 1, dtype=dtype,
            grad=True), randn(B, Hkv, Lk, Dv, seed=seed + 2, dtype=dtype, grad=True))  # fmt: skip


def make_mask(kind: str, B: int, H: int, Lq: int, Lk: int):
    """Every mask kind of attnkit.masks, and combinations; per-batch and per-head where they exist."""
    if kind.startswith("doc") and Lq > Lk:
        pytest.skip("document masks need Lq <= Lk (queries take the ids of the last Lq keys)")
    ids = torch.stack([torch.arange(Lk) * (3 + b) // Lk for b in range(B)])  # (B, Lk) documents of unequal length
    dense = randn(B, H, Lq, Lk, seed=9) > 0.3  # (B, H, Lq, Lk) per batch row and head
    return {
        "none": None,
        "causal": masks.causal(),
        "window": masks.sliding_window(41),
        "window_bidir": masks.sliding_window(23, causal=False),
        "prefix": masks.prefix_lm(30),
        "padding": masks.padding([Lk // 3 + 7 * b for b in range(B)]),
        "doc": masks.document(ids),
        "doc_causal": masks.document(ids) & masks.causal(),
        "dense": masks.dense(dense),
        "causal_or_dense": masks.causal() | masks.dense(dense[:, :1]),
        "not_window": ~masks.sliding_window(17) & masks.padding([Lk - 3 * b for b in range(B)]),
    }[kind]


MASK_KINDS = ["none", "causal", "window", "window_bidir", "prefix", "padding", "doc", "doc_causal", "dense",
              "causal_or_dense", "not_window"]  # fmt: skip


def reference64(q, k, v, mask=None, bias=None, scale=None):
    """(out, lse) of the reference on float64 copies, differentiable w.r.t. the float64 leaves."""
    q, k, v = (t.detach().double().requires_grad_() for t in (q, k, v))
    bias = as_bias(bias.double() if isinstance(bias, torch.Tensor) else bias)
    out, _, lse = reference_attention(q, k, v, masks.as_mask(mask), bias=bias, scale=scale)
    return out, lse, (q, k, v)


def grads(out, leaves, dout):
    return torch.autograd.grad(out, leaves, dout.to(out.dtype), allow_unused=False)


def assert_close64(got, want, atol=1e-10):
    assert torch.isfinite(got).all() or torch.equal(torch.isfinite(got), torch.isfinite(want))
    torch.testing.assert_close(got.double(), want.double(), atol=atol, rtol=0, equal_nan=True)


def assert_matches_reference64(q, k, v, mask, **tiles):
    """tiled_attention's out, lse and the three gradients agree with the float64 reference to round-off."""
    out, lse = tiled_attention(q, k, v, mask, **tiles)
    ref_out, ref_lse, leaves = reference64(q, k, v, mask)
    assert_close64(out, ref_out)
    assert torch.equal(torch.isinf(lse), torch.isinf(ref_lse)) and torch.allclose(lse, ref_lse, atol=1e-10)
    dout = randn(*out.shape, seed=5)
    for got, want in zip(grads(out, (q, k, v), dout), grads(ref_out, leaves, dout), strict=True):
        assert_close64(got, want)


# ---------------------------------------------------------------------- float64 agreement
def shape_id(x):
    return x if isinstance(x, str) else "B{}H{}Hkv{}Lq{}Lk{}bq{}bk{}".format(*x[:5], *x[7:])


CASES = [(s, m) for s in SHAPES for m in MASK_KINDS] + [(LONG, m) for m in ("causal", "doc_causal", "dense")]


@pytest.mark.parametrize("shape,kind", CASES, ids=shape_id)
def test_tiled_forward_and_grads_match_reference_every_mask(shape, kind):
    B, H, Hkv, Lq, Lk, D, Dv, bq, bk = shape
    q, k, v = make_qkv(B, H, Hkv, Lq, Lk, D, Dv)
    assert_matches_reference64(q, k, v, make_mask(kind, B, H, Lq, Lk), block_q=bq, block_k=bk)


@pytest.mark.parametrize("bias_kind", ["alibi", "alibi_symmetric", "per_head", "per_batch_keys"])
def test_tiled_bias_matches_reference_with_causal_mask(bias_kind):
    B, H, Hkv, Lq, Lk, D = 2, 4, 2, 97, 130, 8
    q, k, v = make_qkv(B, H, Hkv, Lq, Lk, D, D)
    bias = {
        "alibi": Alibi(alibi_slopes(H)),
        "alibi_symmetric": Alibi(alibi_slopes(H), symmetric=True),
        "per_head": randn(1, H, Lq, Lk, seed=3),
        "per_batch_keys": randn(B, 1, 1, Lk, seed=4),
    }[bias_kind]
    out, lse = tiled_attention(q, k, v, masks.causal(), bias=bias, block_q=32, block_k=40)
    ref_out, ref_lse, leaves = reference64(q, k, v, masks.causal(), bias)
    assert_close64(out, ref_out)
    assert_close64(lse, ref_lse)
    dout = randn(*out.shape, seed=5)
    for got, want in zip(grads(out, (q, k, v), dout), grads(ref_out, leaves, dout), strict=True):
        assert_close64(got, want)


def test_tiled_gradcheck_with_mask_bias_gqa_and_lse():
    q, k, v = make_qkv(1, 4, 2, 7, 9, 3, 2)
    for mask, bias in [(masks.causal(), Alibi(alibi_slopes(4))),
                       (masks.document([0, 0, 0, 1, 1, 1, 1, 2, 2]), randn(1, 4, 7, 9, seed=8))]:  # fmt: skip
        def fn(q, k, v, mask=mask, bias=bias):  # this iteration's mask and bias, bound now
            return tiled_attention(q, k, v, mask, bias=bias, block_q=3, block_k=4)  # (out, lse): both differentiable

        assert torch.autograd.gradcheck(fn, (q, k, v), atol=1e-8)


def test_tiled_gradcheck_with_dropout():
    q, k, v = make_qkv(1, 2, 1, 6, 8, 3, 3)

    def fn(q, k, v):
        return tiled_attention(q, k, v, masks.causal(), dropout_p=0.3, seed=11, block_q=4, block_k=3)[0]

    assert torch.autograd.gradcheck(fn, (q, k, v), atol=1e-8)


# ---------------------------------------------------------------------- precision rule
def assert_rule(got, ref_x, ref64, floor):
    """Error of the backend in dtype X <= 2 x error of the reference in dtype X + floor."""
    err, ref_err = (got.double() - ref64).abs().max(), (ref_x.double() - ref64).abs().max()
    assert err <= 2 * ref_err + floor, f"tiled error {err:.3g} > 2 x reference error {ref_err:.3g} + {floor}"


@pytest.mark.parametrize("dtype,floor", [(torch.float32, 1e-6), (torch.bfloat16, 1e-2), (torch.float16, 1e-3)])
def test_tiled_lower_precision_within_twice_reference_error(dtype, floor):
    q, k, v = make_qkv(2, 4, 2, 200, 200, 16, 16, dtype=dtype)
    mask = masks.causal() & masks.sliding_window(90)
    out, lse = tiled_attention(q, k, v, mask, block_q=48, block_k=64)
    assert out.dtype == dtype and lse.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    ref_x = reference_attention(q, k, v, mask)[0]
    ref_out, _, leaves = reference64(q, k, v, mask)
    assert_rule(out, ref_x, ref_out, floor)
    dout = randn(*out.shape, seed=5)
    for got, rx, r64 in zip(
        grads(out, (q, k, v), dout), grads(ref_x, (q, k, v), dout), grads(ref_out, leaves, dout), strict=True
    ):
        assert got.dtype == dtype
        assert_rule(got, rx, r64, floor)


# ---------------------------------------------------------------------- empty rows
def test_tiled_fully_masked_rows_give_zeros_and_zero_grads():
    q, k, v = make_qkv(2, 2, 2, 70, 50, 8, 8, dtype=torch.float32)
    mask = masks.causal() & masks.padding([0, 50])  # batch 0: nothing; batch 1: the first 20 queries see nothing
    out, lse = tiled_attention(q, k, v, mask, block_q=16, block_k=16)
    empty = torch.zeros(2, 1, 70, dtype=torch.bool)
    empty[0], empty[1, :, :20] = True, True
    assert torch.equal(torch.isneginf(lse), empty.expand_as(lse))
    assert (out[empty.expand(2, 2, 70)] == 0).all() and torch.isfinite(out).all()
    dq, dk, dv = grads(out.square().sum() + lse.masked_fill(empty, 0).sum(), (q, k, v), torch.tensor(1.0))
    assert all(torch.isfinite(g).all() for g in (dq, dk, dv))
    assert (dq[empty.expand(2, 2, 70)] == 0).all() and (dk[0] == 0).all() and (dv[0] == 0).all()


# ---------------------------------------------------------------------- dropout
def reference_with_keep(q, k, v, mask, keep, p):
    """The reference's three steps in float64, with the given dropout keep mask."""
    q, k, v = (t.detach().double().requires_grad_() for t in (q, k, v))
    weights, _ = normalize(attention_scores(q, k, scale=q.shape[-1] ** -0.5, mask=mask))  # 1, 2
    return weighted_sum(weights * keep / (1 - p), v), (q, k, v)  # 3, with dropout


def test_tiled_dropout_is_deterministic_and_matches_reference_with_its_mask():
    q, k, v = make_qkv(2, 4, 2, 97, 120, 8, 8)
    mask, p = masks.causal(), 0.25
    out, _ = tiled_attention(q, k, v, mask, dropout_p=p, seed=123, block_q=32, block_k=48)
    again, _ = tiled_attention(q, k, v, mask, dropout_p=p, seed=123, block_q=64, block_k=16)  # other tiles
    other, _ = tiled_attention(q, k, v, mask, dropout_p=p, seed=124, block_q=32, block_k=48)
    assert_close64(again, out)  # the stream does not depend on the tiling
    assert not torch.allclose(other, out)
    keep = dropout_keep_mask(123, 2, 4, 97, 120, p)  # (B, H, Lq, Lk)
    assert abs(keep.float().mean().item() - (1 - p)) < 0.01
    ref_out, leaves = reference_with_keep(q, k, v, mask, keep, p)
    assert_close64(out, ref_out)
    dout = randn(*out.shape, seed=5)
    for got, want in zip(grads(out, (q, k, v), dout), grads(ref_out, leaves, dout), strict=True):
        assert_close64(got, want)


def test_tiled_dropout_seed_none_follows_torch_global_rng():
    q, k, v = make_qkv(1, 2, 2, 40, 40, 8, 8)
    torch.manual_seed(0)
    first, _ = tiled_attention(q, k, v, dropout_p=0.5)
    torch.manual_seed(0)
    second, _ = tiled_attention(q, k, v, dropout_p=0.5)
    third, _ = tiled_attention(q, k, v, dropout_p=0.5)
    assert torch.equal(first, second) and not torch.equal(second, third)


# ---------------------------------------------------------------------- block sparsity
class RecordingMask(masks.Mask):
    """Wraps a mask and records the tiles its values are asked for."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def evaluate(self, q_idx, k_idx, Lq, Lk):
        if q_idx.shape[0] > 1 or k_idx.shape[1] > 1:  # not classify_tiles' broadcast probes
            self.calls.append((int(q_idx[0, 0]), int(q_idx[-1, 0]), int(k_idx[0, 0]), int(k_idx[0, -1])))
        return self.inner.evaluate(q_idx, k_idx, Lq, Lk)

    def classify_tiles(self, *args, **kw):
        return self.inner.classify_tiles(*args, **kw)


def test_tiled_skips_empty_tiles_and_masks_only_partial_tiles():
    L, bq, bk = 1000, 100, 50
    q, k, v = make_qkv(1, 2, 2, L, L, 8, 8, dtype=torch.float32)
    mask = RecordingMask(masks.sliding_window(120))
    out, _ = tiled_attention(q, k, v, mask, block_q=bq, block_k=bk)
    codes = masks.sliding_window(120).classify_tiles(L, L, bq, bk)[0, 0]  # (nq, nk)
    for q0, q1, k0, k1 in mask.calls:  # every evaluated tile is PARTIAL: FULL ones get no masking op
        assert q1 - q0 < bq and (codes[q0 // bq, k0 // bk : k1 // bk + 1] == masks.PARTIAL).all()
    call = TiledCall.build(q, k, masks.sliding_window(120), block_q=bq, block_k=bk)
    computed = call.plan.score_elements(H=2)
    assert computed == 2 * bq * bk * int((codes != masks.EMPTY).sum())  # exactly the non-empty tiles
    torch.testing.assert_close(out, reference_attention(q, k, v, masks.sliding_window(120))[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "B, H, Hkv, Lq, Lk, mask",
    [
        (1, 2, 2, 1000, 1000, masks.sliding_window(100)),
        (1, 4, 2, 700, 700, masks.sliding_window(64, causal=False)),  # GQA: G = 2 heads per key head
        (1, 2, 1, 300, 500, masks.sliding_window(60)),  # Lq < Lk: queries aligned to the last keys
        (1, 1, 1, 600, 530, masks.sliding_window(45)),  # Lq > Lk: the first 70 queries see no key
        (1, 2, 2, 800, 800, masks.causal() & masks.sliding_window(77) & ~masks.sliding_window(5)),
    ],
)
def test_tiled_bands_match_reference(B, H, Hkv, Lq, Lk, mask):
    """Shift-invariant masks run equally laid-out blocks as one band (batched matmuls over key windows)."""
    from attnkit.functional._tiles import Band
    from attnkit.functional.tiled import _work_items

    q, k, v = make_qkv(B, H, Hkv, Lq, Lk, 16, 24)
    call = TiledCall.build(q, k, mask, block_q=32, block_k=32)
    assert any(isinstance(item, Band) for g in call.plan.groups for item in _work_items(g, call))
    assert_matches_reference64(q, k, v, mask, block_q=32, block_k=32)


def test_tiled_default_tiles_are_64_for_banded_forward_and_128_otherwise():
    q, k, v = make_qkv(1, 2, 2, 1500, 1500, 16, 16)  # 2 rows of (batch, key head): bands need >= 4 blocks
    window = TiledCall.build(q, k, masks.sliding_window(200))
    assert (window.plan.block_q, window.backward_plan.block_q) == (64, 128)
    assert TiledCall.build(q, k, masks.causal()).plan.block_q == 128  # causal chunks grow: no bands
    assert TiledCall.build(q, k, masks.sliding_window(200), block_q=96, block_k=96).plan.block_q == 96  # as asked
    assert_matches_reference64(q, k, v, masks.sliding_window(200))  # forward at 64, backward at 128
    q, k, _ = make_qkv(1, 8, 8, 2048, 2048, 16, 16)  # 8 rows: at 128, 14 equal blocks are too few for a band
    assert TiledCall.build(q, k, masks.sliding_window(256)).plan.block_q == 64  # at 64 there are 30


@pytest.mark.parametrize(
    "Lq, Lk, block, mask",
    [
        (37, 37, 5, masks.sliding_window(7)),  # odd length, blocks that do not divide it
        (29, 41, 4, masks.sliding_window(6, causal=False)),  # Lq < Lk, a two-sided window
        (45, 45, 6, masks.causal() & masks.sliding_window(9) & ~masks.sliding_window(2)),  # rows 0-1 see no key
    ],
)
def test_tiled_band_backward_passes_gradcheck(Lq, Lk, block, mask, monkeypatch):
    """The banded backward pass (five bmm over a band's overlapping key windows, dK/dV added back
    window slice by slice; off by default, BACKWARD_BANDS) against finite differences, for out
    and lse, with GQA (G = 2)."""
    from attnkit.functional import tiled
    from attnkit.functional._tiles import Band
    from attnkit.functional.tiled import _work_items

    monkeypatch.setattr(tiled, "BACKWARD_BANDS", True)
    q, k, v = make_qkv(1, 4, 2, Lq, Lk, 4, 3)  # float64, requiring grad
    call = TiledCall.build(q, k, mask, block_q=block, block_k=block)
    plan = call.backward_plan
    assert any(isinstance(item, Band) for g in plan.groups for item in _work_items(g, call, plan))

    def fn(q, k, v):
        out, lse = tiled_attention(q, k, v, mask, block_q=block, block_k=block)
        return out, torch.where(torch.isinf(lse), 0.0, lse)  # empty rows: lse = -inf, no gradient

    assert torch.autograd.gradcheck(fn, (q, k, v), atol=1e-7)


@pytest.mark.parametrize("dtype,floor", [(torch.float32, 1e-6), (torch.bfloat16, 1e-2), (torch.float16, 1e-3)])
def test_tiled_bands_lower_precision_within_twice_reference_error(dtype, floor):
    q, k, v = make_qkv(1, 4, 2, 1500, 1500, 16, 16, dtype=dtype)  # GQA, default (banded) tiles
    mask = masks.sliding_window(200)
    out, lse = tiled_attention(q, k, v, mask)
    assert out.dtype == dtype
    ref_x = reference_attention(q, k, v, mask)[0]
    ref_out, _, leaves = reference64(q, k, v, mask)
    assert_rule(out, ref_x, ref_out, floor)


def test_masks_know_whether_they_are_shift_invariant():
    """Only rules of the offset i - j may share one mask tile along a band."""
    assert masks.causal().shift_invariant and masks.sliding_window(8).shift_invariant
    assert (masks.causal() & ~masks.sliding_window(3)).shift_invariant
    assert not masks.prefix_lm(4).shift_invariant and not masks.padding([3]).shift_invariant
    assert not (masks.causal() & masks.document(torch.zeros(1, 8, dtype=torch.long))).shift_invariant
    for m in (masks.causal(), masks.sliding_window(5, causal=False)):  # the property itself, on dense values
        d = m.to_dense(40, 33)[0, 0]  # (Lq, Lk)
        assert torch.equal(d[1:, 1:], d[:-1, :-1])


def test_tiled_plan_uses_per_row_groups_for_per_batch_documents():
    q = k = torch.empty(2, 2, 2048, 8)
    ids = torch.stack([torch.arange(2048) // 256, torch.zeros(2048, dtype=torch.long)])  # 8 documents vs 1
    call = TiledCall.build(q, k, masks.document(ids), block_q=128, block_k=128)
    assert [(g.b0, g.b1) for g in call.plan.groups] == [(0, 1), (1, 2)]  # the union would cost row 1's work twice
    assert call.plan.score_elements(H=2) == 2 * 128 * 128 * (8 * 4 + 16 * 16)  # 8 docs of 2 x 2 tiles; 16 x 16 tiles


# ---------------------------------------------------------------------- statistics
@pytest.mark.parametrize("use_lse", [True, False])
def test_attention_weights_match_reference_for_chosen_heads_and_rows(use_lse):
    B, H, Hkv, Lq, Lk = 2, 4, 2, 90, 110
    q, k, v = make_qkv(B, H, Hkv, Lq, Lk, 8, 8, dtype=torch.float32)
    mask, bias = masks.causal() & masks.padding([110, 60]), Alibi(alibi_slopes(H))
    _, ref_w, _ = reference_attention(q.double(), k.double(), v.double(), mask, bias=bias)
    _, lse = tiled_attention(q, k, v, mask, bias=bias, block_q=32, block_k=32)
    for heads, rows in [([3, 0], slice(10, 90, 7)), (None, torch.tensor([0, 89, 55])), (1, None)]:
        w = attention_weights(q, k, v, mask, bias=bias, heads=heads, rows=rows, lse=lse if use_lse else None)
        h = torch.arange(H)[heads if heads is not None else slice(None)].reshape(-1)
        r = torch.arange(Lq)[rows if rows is not None else slice(None)].reshape(-1)
        assert w.shape == (B, len(h), len(r), Lk)
        torch.testing.assert_close(w.double(), ref_w[:, h][:, :, r], atol=1e-6, rtol=0)


def test_dispatch_return_lse_runs_tiled_and_matches_reference():
    q, k, v = make_qkv(1, 4, 2, 50, 70, 8, 8, dtype=torch.float32)
    e = explain(q, k, v, masks.causal(), return_lse=True)
    assert e.backend == "tiled" and "log-sum-exp" in e.reasons["sdpa"]
    out, lse = attention(q, k, v, masks.causal(), return_lse=True)
    ref_out, ref_lse, _ = reference64(q, k, v, masks.causal())
    torch.testing.assert_close(out.double(), ref_out, atol=1e-5, rtol=0)
    torch.testing.assert_close(lse.double(), ref_lse, atol=1e-5, rtol=0)
    assert "attention_weights" in explain(q, k, v, return_weights=True).reasons["tiled"]


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(block_q=0), ValueError, r"tiled_attention\(\): block_q must be a positive int"),
    (dict(seed=1.5), TypeError, r"seed must be an int"),
    (dict(bias=torch.zeros(1, 1, 5, 5, requires_grad=True)), ValueError, r"bias requires grad.*backend='reference'"),
    (dict(mask=torch.zeros(5, 5)), TypeError, r"bool tensor"),
])  # fmt: skip
def test_tiled_attention_errors_name_the_argument(kwargs, error, match):
    q = k = v = torch.randn(1, 1, 5, 4)
    with pytest.raises(error, match=match):
        tiled_attention(q, k, v, **kwargs)


def test_attention_weights_errors_name_the_argument():
    q = k = v = torch.randn(1, 2, 5, 4)
    with pytest.raises(ValueError, match=r"attention_weights\(\): rows must be in \[-5, 5\)"):
        attention_weights(q, k, v, rows=[7])
    with pytest.raises(ValueError, match=r"lse must be \(B, H, Lq\) = \(1, 2, 5\)"):
        attention_weights(q, k, v, lse=torch.zeros(1, 5))


# ---------------------------------------------------------------------- memory
_MEMORY_SCRIPT = """
import json, torch
from attnkit import masks
from attnkit.functional import tiled_attention
torch.set_num_threads(1)  # memory does not depend on threads; one thread is robust on a busy machine
def mib(field):  # VmRSS: resident now; VmHWM: peak of this address space (ru_maxrss would include the parent's)
    line = next(x for x in open("/proc/self/status") if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024
L = {L}
q, k, v = (torch.randn(1, 1, L, 16, requires_grad=True) for _ in range(3))
tiled_attention(q[:, :, :256], k[:, :, :256], v[:, :, :256], masks.causal())[0].sum().backward()  # warm up
before = mib("VmRSS")
out, lse = tiled_attention(q, k, v, masks.causal())
out.sum().backward()
tiled = mib("VmHWM") - before
before = mib("VmRSS")
probe = torch.ones(64 << 20)  # control: 256 MiB touched must show up in the same measure
control = mib("VmHWM") - before
print(json.dumps(dict(tiled=tiled, control=control)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_tiled_peak_memory_is_far_below_one_score_matrix():
    L = 16384  # one float32 L x L score matrix = 1024 MiB
    res = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT.format(L=L)], capture_output=True, text=True,
                         timeout=300, check=True)  # fmt: skip
    used = json.loads(res.stdout.strip().splitlines()[-1])
    assert used["control"] > 240, f"the measure did not see a 256 MiB allocation: {used}"
    assert used["tiled"] < 64, f"tiled causal fwd+bwd at L={L} raised peak RSS by {used['tiled']:.0f} MiB"


def test_tiled_plans_of_position_masks_are_cached_by_what_they_follow_from():
    """Two equal position masks share one plan object; another size, window or a tensor mask does not."""
    from attnkit.functional import tiled

    q, k, v = make_qkv(1, 2, 2, 300, 300, 8, 8)
    first = TiledCall.build(q, k, masks.sliding_window(40)).plan
    assert TiledCall.build(q, k, masks.sliding_window(40)).plan is first  # a new but equal mask object
    assert TiledCall.build(q, k, masks.sliding_window(41)).plan is not first
    assert TiledCall.build(q[:, :, :299], k[:, :, :299], masks.sliding_window(40)).plan is not first
    ids = torch.tensor([[0] * 150 + [1] * 150])
    assert TiledCall.build(q, k, masks.document(ids)).plan is not TiledCall.build(q, k, masks.document(ids)).plan
    tiled._PLANS.clear()
    assert TiledCall.build(q, k, masks.sliding_window(40)).plan is not first  # planned again, equal
    assert_matches_reference64(q, k, v, masks.sliding_window(40))

