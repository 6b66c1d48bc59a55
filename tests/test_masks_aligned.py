"""masks.aligned (any query alignment) and masks.key_mask (any per-key pattern) against loops.

The oracle is a python double loop over (query i, key j) with query ``i`` placed at key
position ``i + offset`` — the rule as the docstring of :func:`attnkit.masks.aligned` states
it — and tile codes by brute-force any/all over each tile of that loop's dense mask.
Through attention, the oracle is the float64 reference backend given the loop's dense mask.

Shape legend: B batch, Lq queries, Lk keys, bq/bk block sizes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attnkit import masks
from attnkit.functional import attention, tiled_attention
from attnkit.masks import EMPTY, FULL, PARTIAL

SIZES = [(1, 1), (5, 5), (3, 7), (7, 3), (1, 9), (13, 29), (29, 13), (40, 64)]
OFFSETS = [-3, 0, 1, 4, 20]
BLOCKS = [(1, 1), (3, 5), (4, 4), (64, 64)]


def loop(rule, B: int, Lq: int, Lk: int) -> np.ndarray:
    """Dense (B, 1, Lq, Lk) bool array from ``rule(b, i, j)``."""
    out = np.zeros((B, 1, Lq, Lk), dtype=bool)
    for b in range(B):
        for i in range(Lq):
            for j in range(Lk):
                out[b, 0, i, j] = rule(b, i, j)
    return out


def tiles(dense: np.ndarray, bq: int, bk: int) -> np.ndarray:
    """Tile codes (B, 1, nq, nk) by any/all over each tile."""
    B, H, Lq, Lk = dense.shape
    nq, nk = math.ceil(Lq / bq), math.ceil(Lk / bk)
    codes = np.empty((B, H, nq, nk), dtype=np.int64)
    for tq in range(nq):
        for tk in range(nk):
            tile = dense[:, :, tq * bq : (tq + 1) * bq, tk * bk : (tk + 1) * bk]
            codes[:, :, tq, tk] = np.where(tile.all(axis=(2, 3)), FULL, np.where(tile.any(axis=(2, 3)), PARTIAL, EMPTY))
    return codes


def assert_sound(mask, dense: np.ndarray, bq: int, bk: int) -> None:
    """Codes have the right shape; EMPTY and FULL are true when claimed; a mixed tile is PARTIAL."""
    B, _, Lq, Lk = dense.shape
    got = mask.classify_tiles(Lq, Lk, bq, bk)
    assert got.shape[-2:] == (math.ceil(Lq / bq), math.ceil(Lk / bk)), got.shape
    want = tiles(dense, bq, bk)
    got = np.broadcast_to(got.numpy().astype(np.int64), want.shape)
    assert not ((got == EMPTY) & (want != EMPTY)).any(), "a tile called EMPTY has allowed pairs"
    assert not ((got == FULL) & (want != FULL)).any(), "a tile called FULL has forbidden pairs"
    assert not ((want == PARTIAL) & (got != PARTIAL)).any(), "a mixed tile was not called PARTIAL"


CASES = {
    "causal": (lambda: masks.causal(), lambda o: lambda b, i, j: j <= i + o),
    "window3": (lambda: masks.sliding_window(3), lambda o: lambda b, i, j: i + o - 3 < j <= i + o),
    "window2_bidir": (lambda: masks.sliding_window(2, causal=False), lambda o: lambda b, i, j: abs(i + o - j) < 2),
    "not_causal": (lambda: ~masks.causal(), lambda o: lambda b, i, j: j > i + o),
    "window_or_causal": (lambda: masks.sliding_window(2) | ~masks.causal(),
                         lambda o: lambda b, i, j: i + o - 2 < j),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("Lq,Lk", SIZES)
@pytest.mark.parametrize("offset", OFFSETS)
def test_aligned_to_dense_and_tiles_match_loop_any_offset(name, Lq, Lk, offset):
    make, rule = CASES[name]
    mask = masks.aligned(make(), offset)
    expected = loop(rule(offset), 1, Lq, Lk)
    np.testing.assert_array_equal(mask.to_dense(Lq, Lk).numpy(), expected)
    for bq, bk in BLOCKS:
        assert_sound(mask, expected, bq, bk)


def test_aligned_causal_top_left_tiles_are_exact_hand_values():
    # Lq=4, Lk=8, offset 0: queries at key positions 0..3; tiles of 2 queries x 4 keys
    codes = masks.aligned(masks.causal(), 0).classify_tiles(4, 8, 2, 4)[0, 0].tolist()
    assert codes == [[PARTIAL, EMPTY], [PARTIAL, EMPTY]]


def test_aligned_bottom_right_offset_equals_the_plain_mask():
    for Lq, Lk in SIZES:
        plain = masks.sliding_window(3).to_dense(Lq, Lk)
        assert torch.equal(masks.aligned(masks.sliding_window(3), Lk - Lq).to_dense(Lq, Lk), plain)


@pytest.mark.parametrize("backend", ["tiled", "sdpa", "reference"])
def test_attention_with_aligned_mask_matches_float64_reference_with_loop_mask(backend):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 37, 16, generator=g)
    k, v = torch.randn(2, 2, 150, 16, generator=g), torch.randn(2, 2, 150, 8, generator=g)
    mask = masks.aligned(masks.sliding_window(20), 5) & masks.key_mask(torch.arange(150).expand(2, 150) < 120)
    dense = torch.from_numpy(loop(lambda b, i, j: i + 5 - 20 < j <= i + 5 and j < 120, 1, 37, 150))
    want = attention(q.double(), k.double(), v.double(), dense, backend="reference")
    got = attention(q, k, v, mask, backend=backend)
    torch.testing.assert_close(got, want.float(), atol=2e-6, rtol=0)


def test_tiled_attention_skips_tiles_outside_an_aligned_window():
    q = k = v = torch.randn(1, 1, 512, 8)
    out, _ = tiled_attention(q, k, v, masks.aligned(masks.sliding_window(64), 0), block_q=64, block_k=64)
    codes = masks.aligned(masks.sliding_window(64), 0).classify_tiles(512, 512, 64, 64)
    assert (codes == EMPTY).float().mean() > 0.7
    want = attention(q.double(), k.double(), v.double(), masks.sliding_window(64), backend="reference")
    torch.testing.assert_close(out, want.float(), atol=2e-6, rtol=0)  # Lq == Lk: offset 0 is bottom-right too


@pytest.mark.parametrize("Lq,Lk", SIZES)
def test_key_mask_to_dense_and_tiles_match_loop_any_pattern(Lq, Lk):
    allowed = torch.rand(3, Lk, generator=torch.Generator().manual_seed(Lk)) < 0.6
    allowed[1] = torch.arange(Lk) >= Lk // 2  # left padding
    allowed[2] = False  # a row with no real key
    expected = loop(lambda b, i, j: bool(allowed[b, j]), 3, Lq, Lk)
    mask = masks.key_mask(allowed)
    np.testing.assert_array_equal(np.broadcast_to(mask.to_dense(Lq, Lk).numpy(), expected.shape), expected)
    for bq, bk in BLOCKS:
        assert_sound(mask, expected, bq, bk)


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: masks.aligned(masks.padding([1]), 0), TypeError, "causal.*sliding_window"),
        (lambda: masks.aligned(masks.causal(), 1.5), TypeError, "offset must be an int"),
        (lambda: masks.key_mask(torch.ones(2, 3)), TypeError, "bool tensor"),
        (lambda: masks.key_mask(torch.ones(2, 3, dtype=torch.bool)).to_dense(1, 4), ValueError, "Lk=4"),
    ],
)
def test_aligned_and_key_mask_raise_named_errors_bad_input(make, error, match):
    with pytest.raises(error, match=match):
        make()
