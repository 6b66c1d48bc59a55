"""The integer tile plan of position masks (functional/_tile_runs.py) gives exactly the tile codes of
``Mask.classify_tiles`` (the tensor classification, itself checked against dense masks in tests/test_masks.py),
and so the same tiled plans."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit import masks
from attnkit.functional._tile_runs import kept_fraction, tile_runs
from attnkit.functional._tiles import _finish, _group_of_codes, _tile_codes, make_plan

LEAVES = st.one_of(
    st.just(masks.causal()),
    st.builds(masks.sliding_window, st.integers(1, 40), st.booleans()),
    st.builds(masks.prefix_lm, st.integers(0, 50)),
)
POSITION_MASKS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.builds(lambda a, b: a & b, inner, inner),
        st.builds(lambda a, b: a | b, inner, inner),
        st.builds(lambda a: ~a, inner),
    ),
    max_leaves=4,
)
SIZES = st.tuples(st.integers(0, 70), st.integers(0, 70), st.integers(1, 20), st.integers(1, 20))


def runs_of_flags(flags: torch.Tensor) -> tuple:
    """Maximal runs of True in each row, as [start, end) pairs (independent of the code under test)."""
    out = []
    for row in flags.tolist():
        runs, start = [], None
        for j, flag in enumerate([*row, False]):
            if flag and start is None:
                start = j
            elif not flag and start is not None:
                runs.append((start, j))
                start = None
        out.append(tuple(runs))
    return tuple(out)


@settings(deadline=None)  # a first call on a loaded machine can take 0.5 s
@given(POSITION_MASKS, SIZES)
def test_tile_runs_equal_the_tensor_tile_codes(mask, sizes):
    Lq, Lk, bq, bk = sizes
    nq, nk = math.ceil(Lq / bq), math.ceil(Lk / bk)
    codes = mask.classify_tiles(Lq, Lk, bq, bk).reshape(nq, nk)  # (1, 1, nq, nk) -> (nq, nk)
    nonempty, full = runs_of_flags(codes != masks.EMPTY), runs_of_flags(codes == masks.FULL)
    assert tile_runs(mask, Lq, Lk, bq, bk) == tuple(zip(nonempty, full, strict=True))
    if nq and nk:
        kept = (codes != masks.EMPTY).double().mean().item()
        assert kept_fraction(mask, Lq, Lk, bq, bk) == pytest.approx(kept, rel=1e-12)


@settings(deadline=None)
@given(POSITION_MASKS, SIZES, st.integers(1, 3), st.integers(1, 3))
def test_plan_from_ints_equals_plan_from_tensor_codes(mask, sizes, B, H):
    Lq, Lk, bq, bk = sizes
    from_ints = make_plan(mask, B=B, H=H, Lq=Lq, Lk=Lk, block_q=bq, block_k=bk, budget=4096, device=None)
    codes = _tile_codes(mask, Lq, Lk, bq, bk, None)
    group = _group_of_codes(codes.flatten(0, 1), 0, B, H, Lq, Lk, bq, bk, 4096)
    assert from_ints == _finish((group,), H, bq)


def test_tile_runs_of_none_is_every_tile_full():
    assert tile_runs(None, 5, 7, 2, 3) == ((((0, 3),), ((0, 3),)),) * 3


def test_tensor_valued_masks_have_no_integer_plan():
    for mask in (masks.padding([3, 5]), masks.document([0, 0, 1]), masks.dense(torch.ones(3, 3, dtype=torch.bool)),
                 masks.causal() & masks.padding([2, 3])):  # fmt: skip
        assert tile_runs(mask, 3, 3, 2, 2) is None
