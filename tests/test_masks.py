"""attnkit.masks against brute-force loops over the documented rules.

Every expected value here comes from a python double loop over (query i, key j)
that implements the rule as DESIGN.md states it, with bottom-right alignment:
query ``i`` sits at key position ``a = i + Lk - Lq``. Tile codes come from a
brute-force any/all over each tile of that loop's dense mask.

Shape legend: B batch, Lq queries, Lk keys, bq/bk block sizes, nq/nk tile counts.
"""

from __future__ import annotations

import doctest
import importlib
import math
import pkgutil
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import attnkit.functional
from attnkit import masks
from attnkit.masks import EMPTY, FULL, PARTIAL

LENGTHS = [(1, 1), (5, 5), (3, 7), (7, 3), (1, 9), (9, 1), (13, 29), (29, 13)]
BLOCKS = [(1, 1), (3, 5), (4, 4), (7, 2), (64, 64)]


# ---------------------------------------------------------------------- oracles
def brute_force(rule, B: int, Lq: int, Lk: int) -> np.ndarray:
    """Dense (B, 1, Lq, Lk) bool array from ``rule(b, i, a, j)``; ``a`` is i aligned bottom-right."""
    out = np.zeros((B, 1, Lq, Lk), dtype=bool)
    for b in range(B):
        for i in range(Lq):
            for j in range(Lk):
                out[b, 0, i, j] = rule(b, i, i + Lk - Lq, j)
    return out


def brute_tiles(dense: np.ndarray, bq: int, bk: int) -> np.ndarray:
    """Tile codes (B, H, nq, nk) by any/all over each tile of a dense (B, H, Lq, Lk) mask."""
    B, H, Lq, Lk = dense.shape
    nq, nk = math.ceil(Lq / bq), math.ceil(Lk / bk)
    codes = np.empty((B, H, nq, nk), dtype=np.int64)
    for tq in range(nq):
        for tk in range(nk):
            tile = dense[:, :, tq * bq : (tq + 1) * bq, tk * bk : (tk + 1) * bk]  # (B, H, <=bq, <=bk)
            anys, alls = tile.any(axis=(2, 3)), tile.all(axis=(2, 3))  # (B, H)
            codes[:, :, tq, tk] = np.where(alls, FULL, np.where(anys, PARTIAL, EMPTY))
    return codes


def causal_rule():
    return lambda b, i, a, j: j <= a


def window_rule(w: int, is_causal: bool):
    if is_causal:
        return lambda b, i, a, j: a - w < j <= a
    return lambda b, i, a, j: abs(a - j) < w


def prefix_rule(n: int):
    return lambda b, i, a, j: j < n or j <= a


def padding_rule(lengths):
    return lambda b, i, a, j: j < lengths[b]


def document_rule(ids):
    return lambda b, i, a, j: ids[b][a] == ids[b][j]


def dense_rule(values: np.ndarray):
    return lambda b, i, a, j: bool(values[b % values.shape[0], i, j])


def assert_dense_equals(mask, expected: np.ndarray) -> None:
    """mask.to_dense is (Bm, 1, Lq, Lk) with Bm in {1, B} and equals the loop's values."""
    B, _, Lq, Lk = expected.shape
    got = mask.to_dense(Lq, Lk)
    assert got.dtype == torch.bool
    assert got.shape[0] in (1, B) and tuple(got.shape[1:]) == (1, Lq, Lk), got.shape
    np.testing.assert_array_equal(np.broadcast_to(got.numpy(), expected.shape), expected)


def codes_of(mask, Lq, Lk, bq, bk, shape) -> np.ndarray:
    got = mask.classify_tiles(Lq, Lk, bq, bk)
    assert got.dim() == 4 and got.shape[-2:] == (math.ceil(Lq / bq), math.ceil(Lk / bk)), got.shape
    return np.broadcast_to(got.numpy().astype(np.int64), shape)


def assert_tiles_exact(mask, expected: np.ndarray, bq: int, bk: int) -> None:
    want = brute_tiles(expected, bq, bk)
    np.testing.assert_array_equal(codes_of(mask, *expected.shape[2:], bq, bk, want.shape), want)


def assert_tiles_sound(mask, expected: np.ndarray, bq: int, bk: int) -> None:
    """EMPTY and FULL must be true when claimed; PARTIAL is always a safe answer."""
    want = brute_tiles(expected, bq, bk)
    got = codes_of(mask, *expected.shape[2:], bq, bk, want.shape)
    assert not ((got == EMPTY) & (want != EMPTY)).any(), "a tile called EMPTY has allowed pairs"
    assert not ((got == FULL) & (want != FULL)).any(), "a tile called FULL has forbidden pairs"
    assert not ((want == PARTIAL) & (got != PARTIAL)).any(), "a mixed tile was not called PARTIAL"


def generic_tiles(mask):
    """The same mask, classified by the base-class (evaluate-based) path instead of the closed form."""

    class Generic(masks.Mask):  # no classify_tiles of its own: the base class's evaluate-based one runs
        def evaluate(self, q_idx, k_idx, Lq, Lk):
            return mask.evaluate(q_idx, k_idx, Lq, Lk)

        def _device(self, device):
            return mask._device(device)

    return Generic()


# ---------------------------------------------------------------------- to_dense vs loops
@pytest.mark.parametrize("Lq,Lk", LENGTHS)
def test_causal_to_dense_matches_loop_lq_lk(Lq, Lk):
    assert_dense_equals(masks.causal(), brute_force(causal_rule(), 1, Lq, Lk))


@pytest.mark.parametrize("Lq,Lk", LENGTHS)
@pytest.mark.parametrize("w", [1, 2, 5, 40])
@pytest.mark.parametrize("is_causal", [True, False])
def test_sliding_window_to_dense_matches_loop_lq_lk(Lq, Lk, w, is_causal):
    expected = brute_force(window_rule(w, is_causal), 1, Lq, Lk)
    assert_dense_equals(masks.sliding_window(w, causal=is_causal), expected)


@pytest.mark.parametrize("Lq,Lk", LENGTHS)
@pytest.mark.parametrize("n", [0, 2, 10])
def test_prefix_lm_to_dense_matches_loop_lq_lk(Lq, Lk, n):
    assert_dense_equals(masks.prefix_lm(n), brute_force(prefix_rule(n), 1, Lq, Lk))


@pytest.mark.parametrize("Lq,Lk", LENGTHS)
def test_padding_to_dense_matches_loop_lengths_and_bool(Lq, Lk):
    lengths = [0, 1, Lk - 1, Lk]
    expected = brute_force(padding_rule(lengths), 4, Lq, Lk)
    assert_dense_equals(masks.padding(lengths), expected)
    real = torch.tensor([[j < n for j in range(Lk)] for n in lengths])  # (B, Lk) right padding
    assert_dense_equals(masks.padding(real), expected)


@pytest.mark.parametrize("Lq,Lk", [(Lq, Lk) for Lq, Lk in LENGTHS if Lq <= Lk])
def test_document_to_dense_matches_loop_per_batch_ids(Lq, Lk):
    ids = [[j // 3 for j in range(Lk)], [(j * 7) % 3 for j in range(Lk)]]  # (B, Lk), ids need not be sorted
    assert_dense_equals(masks.document(torch.tensor(ids)), brute_force(document_rule(ids), 2, Lq, Lk))
    assert_dense_equals(masks.document(ids[0]), brute_force(document_rule(ids[:1]), 1, Lq, Lk))


def test_causal_to_dense_equals_hand_values_lq_gt_lk():
    # Lq=4, Lk=2: queries sit at key positions -2, -1, 0, 1; the first two see nothing.
    want = [[0, 0], [0, 0], [1, 0], [1, 1]]
    assert masks.causal().to_dense(4, 2)[0, 0].int().tolist() == want


@pytest.mark.parametrize("shape", [(5, 7), (2, 5, 7), (2, 3, 5, 7), (2, 1, 1, 7), (1, 1, 5, 1)])
def test_dense_to_dense_broadcasts_values_any_shape(shape):
    values = torch.rand(shape, generator=torch.Generator().manual_seed(0)) < 0.5
    got = masks.dense(values).to_dense(5, 7)
    full = values.reshape((1,) * (4 - len(shape)) + tuple(shape)) if len(shape) != 3 else values[:, None]
    for idx in np.ndindex(*got.shape):  # element by element, against the broadcasting rule
        src = tuple(0 if full.shape[d] == 1 else idx[d] for d in range(4))
        assert bool(got[idx]) == bool(full[src])


# ---------------------------------------------------------------------- algebra vs loops
@pytest.mark.parametrize("Lq,Lk", [(6, 6), (4, 9), (9, 4)])
def test_mask_algebra_and_or_not_matches_loop_lq_lk(Lq, Lk):
    a, ra = masks.causal(), causal_rule()
    b, rb = masks.sliding_window(3, causal=False), window_rule(3, False)
    c, rc = masks.padding([2, Lk]), padding_rule([2, Lk])
    cases = [
        (a & b, lambda *x: ra(*x) and rb(*x)),
        (a | c, lambda *x: ra(*x) or rc(*x)),
        (~a, lambda *x: not ra(*x)),
        (~(b & c) | a, lambda *x: not (rb(*x) and rc(*x)) or ra(*x)),
    ]
    for mask, rule in cases:
        expected = brute_force(rule, 2, Lq, Lk)
        assert_dense_equals(mask, expected)
        assert_tiles_sound(mask, expected, 3, 2)


def test_mask_and_accepts_bool_tensor_either_side():
    t = torch.tensor([[True, False, True], [True, True, False]])
    want = brute_force(lambda b, i, a, j: j <= a and bool(t[i, j]), 1, 2, 3)
    assert_dense_equals(masks.causal() & t, want)
    assert_dense_equals(t & masks.causal(), want)


# ---------------------------------------------------------------------- classify_tiles
LEAF_CASES = {
    "causal": lambda B, Lk: (masks.causal(), causal_rule()),
    "window3": lambda B, Lk: (masks.sliding_window(3), window_rule(3, True)),
    "window4_bidir": lambda B, Lk: (masks.sliding_window(4, causal=False), window_rule(4, False)),
    "prefix5": lambda B, Lk: (masks.prefix_lm(5), prefix_rule(5)),
    "padding": lambda B, Lk: (masks.padding([3, Lk, 0][:B]), padding_rule([3, Lk, 0][:B])),
    "document": lambda B, Lk: _document_case(B, Lk),
    "not_causal": lambda B, Lk: (~masks.causal(), lambda *x: not causal_rule()(*x)),
}


def _document_case(B, Lk):
    ids = [[j // 4 for j in range(Lk)], [j // 9 + (j % 2) for j in range(Lk)], [0] * Lk][:B]
    return masks.document(torch.tensor(ids)), document_rule(ids)


@pytest.mark.parametrize("name", sorted(LEAF_CASES))
@pytest.mark.parametrize("Lq,Lk", [(13, 29), (29, 13), (17, 17), (1, 10)])
@pytest.mark.parametrize("bq,bk", BLOCKS)
def test_classify_tiles_matches_brute_force_closed_form_and_generic(name, Lq, Lk, bq, bk):
    if name == "document" and Lq > Lk:
        pytest.skip("document masks need Lq <= Lk")
    mask, rule = LEAF_CASES[name](3, Lk)
    expected = brute_force(rule, 3, Lq, Lk)
    assert_tiles_exact(mask, expected, bq, bk)  # closed form
    assert_tiles_exact(generic_tiles(mask), expected, bq, bk)  # evaluate-based path
    assert_tiles_exact(masks.dense(torch.from_numpy(expected)), expected, bq, bk)  # dense path


def test_classify_tiles_generic_matches_brute_force_many_chunks(monkeypatch):
    monkeypatch.setattr(masks, "_CHUNK_ELEMENTS", 8)  # forces one query block per chunk
    values = torch.rand(2, 3, 23, 11, generator=torch.Generator().manual_seed(1)) < 0.7
    values[0, 1, 5:10] = True  # some FULL tiles
    values[1, 2, :, 4:8] = False  # some EMPTY tiles
    for bq, bk in [(4, 4), (5, 3), (23, 11)]:
        assert_tiles_exact(masks.dense(values), values.numpy(), bq, bk)


def test_classify_tiles_padding_shape_per_batch():
    codes = masks.padding([0, 4, 9]).classify_tiles(5, 9, 2, 4)
    assert tuple(codes.shape) == (3, 1, 3, 3)
    # keys tiles [0-3], [4-7], [8]: lengths 0 -> all EMPTY; 4 -> FULL, EMPTY, EMPTY; 9 -> all FULL
    assert codes[:, 0, 0].tolist() == [[EMPTY] * 3, [FULL, EMPTY, EMPTY], [FULL] * 3]


def test_classify_tiles_causal_hand_values_lq_lt_lk():
    # Lq=4, Lk=8: queries at key positions 4..7; blocks of 2 queries x 4 keys
    codes = masks.causal().classify_tiles(4, 8, 2, 4)[0, 0].tolist()
    assert codes == [[FULL, PARTIAL], [FULL, PARTIAL]]


# ---------------------------------------------------------------------- property tests
def _leaf(draw, B, Lq, Lk):
    kinds = ["causal", "window", "prefix", "padding", "dense"] + (["document"] if Lq <= Lk else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "causal":
        return masks.causal(), causal_rule()
    if kind == "window":
        w, c = draw(st.integers(1, Lk + 2)), draw(st.booleans())
        return masks.sliding_window(w, causal=c), window_rule(w, c)
    if kind == "prefix":
        n = draw(st.integers(0, Lk + 2))
        return masks.prefix_lm(n), prefix_rule(n)
    if kind == "padding":
        lengths = draw(st.lists(st.integers(0, Lk), min_size=B, max_size=B))
        return masks.padding(lengths), padding_rule(lengths)
    if kind == "document":
        ids = draw(st.lists(st.lists(st.integers(0, 3), min_size=Lk, max_size=Lk), min_size=B, max_size=B))
        return masks.document(torch.tensor(ids)), document_rule(ids)
    bits = draw(st.lists(st.booleans(), min_size=Lq * Lk, max_size=Lq * Lk))
    values = np.array(bits, dtype=bool).reshape(1, Lq, Lk)
    return masks.dense(torch.from_numpy(values)), dense_rule(values)


@st.composite
def mask_trees(draw, B, Lq, Lk, depth=3):
    """(mask, rule): a random composition of leaves with &, | and ~."""
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return _leaf(draw, B, Lq, Lk)
    op = draw(st.sampled_from("&|~"))
    m1, r1 = draw(mask_trees(B, Lq, Lk, depth - 1))
    if op == "~":
        return ~m1, lambda *x: not r1(*x)
    m2, r2 = draw(mask_trees(B, Lq, Lk, depth - 1))
    if op == "&":
        return m1 & m2, lambda *x: r1(*x) and r2(*x)
    return m1 | m2, lambda *x: r1(*x) or r2(*x)


sizes = st.tuples(st.integers(1, 2), st.integers(1, 24), st.integers(1, 24), st.integers(1, 9), st.integers(1, 9))


@settings(max_examples=settings.default.max_examples * 3 // 2, deadline=None)
@given(sizes=sizes, data=st.data())
def test_mask_leaf_matches_loops_random_sizes(sizes, data):
    B, Lq, Lk, bq, bk = sizes
    mask, rule = _leaf(data.draw, B, Lq, Lk)
    expected = brute_force(rule, B, Lq, Lk)
    assert_dense_equals(mask, expected)
    assert_tiles_exact(mask, expected, bq, bk)  # leaves classify exactly


@settings(max_examples=settings.default.max_examples * 3 // 2, deadline=None)
@given(sizes=sizes, data=st.data())
def test_mask_composite_matches_loops_random_trees(sizes, data):
    B, Lq, Lk, bq, bk = sizes
    mask, rule = data.draw(mask_trees(B, Lq, Lk))
    expected = brute_force(rule, B, Lq, Lk)
    assert_dense_equals(mask, expected)
    assert_tiles_sound(mask, expected, bq, bk)  # combinators may say PARTIAL for a uniform tile
    assert_tiles_exact(generic_tiles(mask), expected, bq, bk)  # the generic path is exact


# ---------------------------------------------------------------------- docstring picture
def test_causal_docstring_picture_matches_to_dense():
    doc = masks.causal.__doc__
    header = next(line for line in doc.splitlines() if line.count("Lq=") == 2)
    split = header.index("Lq=", header.index("Lq=") + 1)  # column where the right picture starts
    sizes = [tuple(map(int, s)) for s in re.findall(r"Lq=(\d+), Lk=(\d+)", header)]
    pictures = [[], []]
    for line in doc.splitlines():
        for side, part in enumerate((line[:split], line[split:])):
            row = re.match(r"\s*q(\d+)\s+([01](?: [01])*)", part)
            if row:
                assert int(row.group(1)) == len(pictures[side])
                pictures[side].append([int(x) for x in row.group(2).split()])
    for (Lq, Lk), picture in zip(sizes, pictures, strict=True):
        assert picture, "the picture has no rows"
        want = brute_force(causal_rule(), 1, Lq, Lk)[0, 0, : len(picture)].astype(int).tolist()
        assert picture == want


# ---------------------------------------------------------------------- constructor errors
@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: masks.padding(torch.tensor([[False, True, True]])), ValueError, "padding before real tokens"),
        (lambda: masks.padding(torch.tensor([2.0, 3.0])), ValueError, r"integer .* got dtype torch.float32"),
        (lambda: masks.padding([2, -1]), ValueError, r"lengths must be >= 0, got \[2, -1\]"),
        (lambda: masks.padding(torch.tensor([True, False])), ValueError, r"\(B, Lk\).*got shape \(2,\)"),
        (lambda: masks.document(torch.tensor([0.0, 1.0])), ValueError, r"ids must be integers.*torch.float32"),
        (lambda: masks.document([0, 0, 1]).to_dense(3, 5), ValueError, "ids cover 3 positions .* length 5"),
        (lambda: masks.document([0, 0, 1]).to_dense(5, 3), ValueError, r"Lq must be <= Lk, got Lq=5, Lk=3"),
        (lambda: masks.sliding_window(0), ValueError, "window must be a positive int, got 0"),
        (lambda: masks.sliding_window(2.5), ValueError, "window must be a positive int, got 2.5"),
        (lambda: masks.sliding_window(True), ValueError, "window must be a positive int, got True"),
        (lambda: masks.prefix_lm(-1), ValueError, r"prefix must be an int >= 0, got -1"),
        (lambda: masks.dense(torch.zeros(2, 2)), TypeError, r"expected a bool tensor .* got torch.float32"),
        (lambda: masks.dense(torch.ones(3, dtype=torch.bool)), ValueError, r"got \(3,\)"),
        (lambda: masks.dense(torch.ones(2, 3, dtype=torch.bool)).to_dense(2, 4), ValueError, r"Lq=2, Lk=4"),
        (lambda: masks.causal() & 3, TypeError, "other must be .* got int"),
        (lambda: masks.padding(["a"]), TypeError, r"masks.padding\(\): lengths_or_mask must be integer .*got \['a'\]"),
        (lambda: masks.padding([2.5]), TypeError, r"masks.padding\(\): lengths_or_mask must be integer .*got \[2.5\]"),
        (lambda: masks.padding([20]).to_dense(1, 8), ValueError,
         r"masks.padding\(\): lengths count the real keys .*at most Lk=8, got a length of 20"),
        (lambda: masks.padding([20]).classify_tiles(1, 8, 4, 4), ValueError, "at most Lk=8, got a length of 20"),
        (lambda: masks.document(["x", "y"]), TypeError, r"masks.document\(\): ids must be integer .*got \['x', 'y'\]"),
        (lambda: masks.Mask(), TypeError, r"masks.Mask\(\) is the abstract base class .*masks.causal\(\)"),
    ],
)  # fmt: skip
def test_mask_constructors_raise_clear_errors_bad_input(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_padding_longer_than_keys_in_attention_raises_named_error():
    q = k = v = torch.zeros(1, 1, 8, 4)
    with pytest.raises(ValueError, match="masks.padding.*at most Lk=8, got a length of 20"):
        attnkit.functional.attention(q, k, v, masks.padding([20]))


def test_mask_subclass_without_evaluate_says_what_to_implement():
    class Half(masks.Mask):
        pass

    with pytest.raises(NotImplementedError, match=r"Half.evaluate\(q_idx, k_idx, Lq, Lk\) is not implemented"):
        Half().to_dense(2, 2)


# ---------------------------------------------------------------------- None means "no mask"
@pytest.mark.parametrize("make", [lambda: masks.causal(), lambda: masks.padding([2, 3]),
                                  lambda: masks.sliding_window(2) | masks.prefix_lm(1)])  # fmt: skip
def test_mask_algebra_with_none_none_means_every_pair_may_attend(make):
    m = make()
    expected = m.to_dense(3, 4)
    for combined in (m & None, None & m):  # "allowed by m and by nothing else": m
        assert torch.equal(combined.to_dense(3, 4), expected)
    assert (m | None) is None and (None | m) is None  # "allowed by m or by anything": no mask


def test_mask_and_none_in_attention_equals_mask_alone():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 4, generator=g) for _ in range(3))
    out = attnkit.functional.attention(q, k, v, None & masks.causal())
    allowed = torch.arange(5)[None, :] <= torch.arange(5)[:, None]  # hand-written causal
    s = (q @ k.transpose(-1, -2) / 2).masked_fill(~allowed, float("-inf"))  # scale 1/sqrt(4)
    assert torch.allclose(out, s.softmax(-1) @ v, atol=1e-6)


# ---------------------------------------------------------------------- device
@pytest.mark.parametrize(
    "make",
    [lambda: masks.padding([2, 3]), lambda: masks.padding(torch.tensor([[True, False, False, False]] * 2)),
     lambda: masks.document([[0, 0, 1, 1], [0, 1, 1, 2]]), lambda: masks.causal() & masks.padding([1, 4]),
     lambda: ~masks.document([0, 0, 1, 1]) | masks.padding([3, 3])],
    ids=["padding", "padding_bool", "document", "causal&padding", "~document|padding"],
)  # fmt: skip
def test_mask_tensors_follow_the_inputs_device_meta(make):
    """Index tensors live on the CPU; a mask evaluated for inputs on another device moves them there.

    The meta device stands in for a GPU: indexing a CPU tensor with meta indices fails here on CPU.
    """
    m = make()
    q_idx = torch.arange(3, device="meta")[:, None]  # (tq, 1)
    k_idx = torch.arange(4, device="meta")[None, :]  # (1, tk)
    assert m.evaluate(q_idx, k_idx, 3, 4).device.type == "meta"
    assert m.to_dense(3, 4, device="meta").device.type == "meta"


def test_attention_reference_on_meta_inputs_with_cpu_padding_mask():
    q = k = v = torch.empty(2, 2, 4, 8, device="meta")
    out = attnkit.functional.attention(q, k, v, masks.padding([2, 4]) & masks.causal(), backend="reference")
    assert out.device.type == "meta" and out.shape == (2, 2, 4, 8)


# ---------------------------------------------------------------------- doctests
DOCTEST_MODULES = ["attnkit.masks", "attnkit.functional"] + [
    f"attnkit.functional.{m.name}" for m in pkgutil.iter_modules(attnkit.functional.__path__)
]


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_docstring_examples_run_module(name):
    result = doctest.testmod(importlib.import_module(name), verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples failed in {name}"
