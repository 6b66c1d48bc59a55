"""The tiled backend's fused paths against the float64 reference: packed documents as segments
(:mod:`attnkit.functional._segments`) and short sliding windows (:mod:`attnkit.functional._windows`).

The oracle is ``reference_attention`` in float64 (scores, softmax, weighted sum, and
``logsumexp`` of the scores); gradients come from autograd through it. Segments run the
forward and backward passes of ``masks.document`` (and ``& masks.causal()``) through torch's
fused CPU flash kernel; windows run the forward pass, and the tiled backward pass takes
their ``(out, lse)``.

Shape legend: B batch, H heads, L length, D head dim.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit import masks
from attnkit.functional import Alibi, _segments, alibi_slopes, attention, explain, tiled_attention
from attnkit.functional.reference import reference_attention
from attnkit.functional.tiled import TiledCall


def randn(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)


def ids_of(lengths: list[int]) -> torch.Tensor:
    """Document ids of packed documents of these lengths: ``[0]*lengths[0] + [1]*lengths[1] + ...``."""
    return torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))  # (L,)


def check_against_reference(q, k, v, mask, atol):
    """Output, lse and the three gradients of tiled_attention against the float64 reference."""
    out, lse = tiled_attention(q, k, v, mask)
    q64, k64, v64 = (t.detach().double().requires_grad_(True) for t in (q, k, v))
    ref, _, ref_lse = reference_attention(q64, k64, v64, mask)
    torch.testing.assert_close(out.double(), ref, atol=atol, rtol=0)
    torch.testing.assert_close(lse.double(), ref_lse, atol=atol, rtol=0)
    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    got = torch.autograd.grad(out, (q, k, v), dout.to(out.dtype))
    want = torch.autograd.grad(ref, (q64, k64, v64), dout)
    for name, a, b in zip("qkv", got, want, strict=True):
        torch.testing.assert_close(a.double(), b, atol=atol * 10, rtol=0, msg=f"d{name}")


@pytest.fixture
def any_length(monkeypatch):
    """Segments for documents of any length (the default skips packings of very short documents)."""
    monkeypatch.setattr(_segments, "MIN_MEAN_LENGTH", 1)


# How a piece's forward pass runs: "grouped" = the three steps on groups of sequences (the default for short
# sequences), with groups of one sequence or of many; "kernel" = torch's fused kernel (the default for long ones).
FORWARDS = {"grouped": {"SHORT_PAIRS": 1 << 30, "GROUP_BYTES": 1 << 20},
            "grouped one by one": {"SHORT_PAIRS": 1 << 30, "GROUP_BYTES": 1},
            "kernel": {"SHORT_PAIRS": 0}}  # fmt: skip


def forward_by(mp: pytest.MonkeyPatch, how: str) -> None:
    for name, value in FORWARDS[how].items():
        mp.setattr(_segments, name, value)


@settings(deadline=None)  # the first example pays torch's warm-up
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    B=st.integers(1, 2),
    H=st.integers(1, 3),
    causal=st.booleans(),
    per_row=st.booleans(),
    how=st.sampled_from(sorted(FORWARDS)),
)
def test_segments_match_the_reference_for_any_packing(lengths, B, H, causal, per_row, how):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_segments, "MIN_MEAN_LENGTH", 1)
        forward_by(mp, how)
        L = sum(lengths)
        ids = ids_of(lengths)
        if per_row and B > 1:  # the second row packs the same length differently: one document
            ids = torch.stack([ids, torch.zeros(L, dtype=torch.long)])  # (B, L)
        mask = masks.document(ids) & masks.causal() if causal else masks.document(ids)
        q, k, v = randn(B, H, L, 8, seed=1), randn(B, H, L, 8, seed=2), randn(B, H, L, 8, seed=3)
        assert TiledCall.build(q, k, mask, Dv=8).segments is not None  # the path under test runs
        check_against_reference(q, k, v, mask, atol=1e-12)


def test_one_run_over_everything_is_returned_without_a_copy_and_matches(any_length):
    q, k, v = randn(2, 3, 96, 16, seed=1), randn(2, 3, 96, 16, seed=2), randn(2, 3, 96, 16, seed=3)
    mask = masks.document(torch.arange(96) // 24)  # 4 documents of 24: one run
    plan = TiledCall.build(q, k, mask, Dv=16).segments
    assert plan is not None and plan.pieces == (_segments.Piece(0, 2, 0, 24, 0, 24, 4),)
    check_against_reference(q, k, v, mask, atol=1e-12)


def test_float32_error_is_within_float32_round_off():
    L = 1024  # the benchmark's case: 8 documents of 128, default threshold
    q, k, v = (randn(1, 8, L, 64, seed=s, dtype=torch.float32) for s in (1, 2, 3))
    mask = masks.document(torch.arange(L) // 128)
    assert TiledCall.build(q, k, mask, Dv=64).segments is not None
    check_against_reference(q, k, v, mask, atol=2e-6)


@pytest.mark.parametrize(
    "lengths,short",
    [([128] * 8, True), ([64] * 3 + [128] * 2, True), ([129] * 2, False), ([256, 64], False)],
    ids=["8 x 128", "mixed short", "2 x 129", "256 + 64"],
)
def test_short_sequences_take_the_grouped_steps_and_long_ones_the_kernel(lengths, short, monkeypatch):
    """Pieces of at most 128 x 128 pairs skip the kernel (it splits them into blocks of 32 queries); a
    packing with a longer document runs that one through the kernel, the others grouped."""
    seen = []
    grouped = _segments._forward_short
    monkeypatch.setattr(_segments, "_forward_short", lambda *a: seen.append(a[3].lq) or grouped(*a))
    L = sum(lengths)
    q, k, v = (randn(1, 2, L, 8, seed=s) for s in (1, 2, 3))
    mask = masks.document(ids_of(lengths))
    check_against_reference(q, k, v, mask, atol=1e-12)
    assert sorted(set(seen)) == sorted({n for n in lengths if n * n <= 128 * 128})
    assert bool(seen) == (short or any(n <= 128 for n in lengths))


def test_float32_grouped_steps_are_within_float32_round_off():
    """The grouped steps' lse (``max - log(largest weight)``) against the float64 reference, causal too."""
    q, k, v = (randn(2, 4, 512, 64, seed=s, dtype=torch.float32) for s in (1, 2, 3))
    for mask in (masks.document(torch.arange(512) // 64), masks.document(torch.arange(512) // 100) & masks.causal()):
        check_against_reference(q, k, v, mask, atol=2e-6)


def test_grouped_steps_run_in_and_out_of_inference_mode_and_in_threads():
    """Their reused scratch buffer: one made under inference_mode is not written outside it, and each
    thread has its own (two threads at once give each its own correct result)."""
    q, k, v = (randn(2, 3, 256, 16, seed=s) for s in (1, 2, 3))
    mask = masks.document(torch.arange(256) // 64) & masks.causal()
    ref, _, _ = reference_attention(q, k, v, mask)
    with torch.inference_mode():
        torch.testing.assert_close(attention(q, k, v, mask), ref, atol=1e-12, rtol=0)
    check_against_reference(q, k, v, mask, atol=1e-12)  # outside inference mode, with gradients
    with torch.inference_mode():
        torch.testing.assert_close(attention(q, k, v, mask), ref, atol=1e-12, rtol=0)
    inputs = [(randn(1, 4, 512, 8, seed=s), masks.document(torch.arange(512) // n)) for s, n in ((4, 32), (5, 128))]
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda a: [attention(a[0], a[0], a[0], a[1]) for _ in range(20)], inputs))
    for (x, mask), got in zip(inputs, outs, strict=True):
        want, _, _ = reference_attention(x, x, x, mask)
        for out in got:
            torch.testing.assert_close(out, want, atol=1e-12, rtol=0)


def test_auto_runs_packed_documents_through_segments_and_agrees():
    L = 1024
    q, k, v = (randn(1, 2, L, 16, seed=s) for s in (1, 2, 3))
    mask = masks.document(torch.arange(L) * 5 // L)  # 5 documents of 204-205 positions
    out = attention(q, k, v, mask)
    ref, _, _ = reference_attention(q, k, v, mask)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)


def test_a_loss_on_lse_too_gets_exact_gradients(any_length):
    """With ``lse`` in the loss the fused backward op (which takes no lse gradient) is not used."""
    q, k, v = randn(2, 2, 90, 8, seed=1), randn(2, 2, 90, 8, seed=2), randn(2, 2, 90, 8, seed=3)
    mask = masks.document(torch.arange(90) // 30) & masks.causal()
    out, lse = tiled_attention(q, k, v, mask)
    ref, _, ref_lse = reference_attention(q, k, v, mask)
    got = torch.autograd.grad(out.sum() + (lse * lse).sum(), (q, k, v))
    want = torch.autograd.grad(ref.sum() + (ref_lse * ref_lse).sum(), (q, k, v))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=0)


# ---------------------------------------------------------------------- key padding
@settings(deadline=None)
@given(
    lengths=st.lists(st.integers(1, 60), min_size=1, max_size=4),
    Lq=st.integers(1, 70),
    H=st.integers(1, 3),
    causal=st.booleans(),
    how=st.sampled_from(sorted(FORWARDS)),
)
def test_key_padding_pieces_match_the_reference(lengths, Lq, H, causal, how):
    B, Lk = len(lengths), 60
    if causal:
        Lq = Lk  # padding & causal runs as pieces only when Lq == Lk (alignment)
    mask = masks.padding(lengths) & masks.causal() if causal else masks.padding(lengths)
    q, k, v = randn(B, H, Lq, 8, seed=1), randn(B, H, Lk, 8, seed=2), randn(B, H, Lk, 8, seed=3)
    plan = TiledCall.build(q, k, mask, Dv=8).segments
    assert plan is not None and plan.what == "padding"  # the path under test runs
    with pytest.MonkeyPatch.context() as mp:
        forward_by(mp, how)
        check_against_reference(q, k, v, mask, atol=1e-12)


@pytest.mark.parametrize(
    "mask",
    [
        masks.padding([50, 30, 30]),
        masks.padding([60, 41, 60]) & masks.causal(),
    ],
    ids=["padding", "causal padding"],
)
def test_grouped_query_heads_run_as_pieces_and_match(mask):
    """4 query heads share 2 key heads: the fused kernel takes them as they are (no copy of K per head)."""
    q, k, v = randn(3, 4, 60, 8, seed=1), randn(3, 2, 60, 8, seed=2), randn(3, 2, 60, 8, seed=3)
    assert TiledCall.build(q, k, mask, Dv=8).segments is not None
    check_against_reference(q, k, v, mask, atol=1e-12)


def test_batch_rows_of_equal_length_share_one_call():
    mask = masks.padding([50, 30, 30, 50])
    plan = _call(mask, B=4, Lq=40, Lk=60).segments
    assert plan is not None and [(p.b0, p.b1, p.lk) for p in plan.pieces] == [(0, 1, 50), (1, 3, 30), (3, 4, 50)]


@pytest.mark.parametrize(
    "why,mask,kw",
    [
        ("a row with no real key", masks.padding([5, 0]), {"B": 2}),
        ("padding & causal with Lq != Lk", masks.padding([200]) & masks.causal(), {"Lq": 100}),
    ],
)
def test_padding_pieces_are_not_used_where_they_do_not_apply(why, mask, kw):
    assert _call(mask, **kw).segments is None, why


def _call(mask, *, B=1, H=2, Hkv=2, Lq=256, Lk=256, D=8, Dv=8, dtype=torch.float64, **kw):
    q = torch.zeros(B, H, Lq, D, dtype=dtype)
    k = torch.zeros(B, Hkv, Lk, D, dtype=dtype)
    return TiledCall.build(q, k, mask, Dv=Dv, **kw)


DOCS = masks.document(torch.arange(256) // 64)


@pytest.mark.parametrize(
    "why,mask,kw",
    [
        ("a document in two places", masks.document((torch.arange(256) // 64) % 2), {}),
        ("grouped-query heads (measured no faster for documents)", DOCS, {"H": 4, "Hkv": 2}),
        ("values narrower than keys", DOCS, {"Dv": 4}),
        ("half precision", DOCS, {"dtype": torch.float16}),
        ("a bias", DOCS, {"bias": Alibi(alibi_slopes(2))}),
        ("dropout", DOCS, {"dropout_p": 0.1}),
        ("tile sizes given", DOCS, {"block_q": 32, "block_k": 32}),
        ("fewer queries than keys", DOCS, {"Lq": 100}),
        ("not a document mask", masks.sliding_window(16), {}),
        ("documents of 4 positions on average", masks.document(torch.arange(256) // 4), {}),
    ],
)
def test_segments_are_not_used_where_they_do_not_apply(why, mask, kw):
    assert _call(mask, **kw).segments is None, why


def test_where_segments_do_not_apply_the_tiled_loop_still_agrees():
    q, k, v = randn(1, 4, 256, 8, seed=1), randn(1, 2, 256, 8, seed=2), randn(1, 2, 256, 8, seed=3)
    mask = masks.document((torch.arange(256) // 64) % 2)  # documents 0 and 1 each in two places
    out, _ = tiled_attention(q, k, v, mask)
    ref, _, _ = reference_attention(q, k, v, mask)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)


# ---------------------------------------------------------------------- short sliding windows (._windows)
@settings(deadline=None)
@given(
    L=st.integers(1, 300),
    W=st.integers(1, 120),
    causal=st.booleans(),
    B=st.integers(1, 2),
    H=st.integers(3, 5),  # >= 3 (batch row, head) pairs: too few blocks for bands at L <= 300 (._bands)
)
def test_short_sliding_windows_match_the_reference(L, W, causal, B, H):
    mask = masks.sliding_window(W, causal=causal)
    q, k, v = randn(B, H, L, 8, seed=1), randn(B, H, L, 8, seed=2), randn(B, H, L, 8, seed=3)
    call = TiledCall.build(q, k, mask, Dv=8)
    assert (call.windows is not None) == (W < L)  # the path under test runs wherever the window skips keys
    check_against_reference(q, k, v, mask, atol=1e-12)


def test_windows_run_where_bands_do_not_and_not_where_they_do():
    short, long = _call(masks.sliding_window(256), H=8, Hkv=8, Lq=1024, Lk=1024, D=64, Dv=64, dtype=torch.float32), \
        _call(masks.sliding_window(256), H=8, Hkv=8, Lq=4096, Lk=4096, D=64, Dv=64, dtype=torch.float32)  # fmt: skip
    assert short.windows is not None and long.windows is None  # 4096: 64 blocks of 64, bands (._bands)


def test_float32_window_error_is_within_float32_round_off():
    q, k, v = (randn(1, 8, 1024, 64, seed=s, dtype=torch.float32) for s in (1, 2, 3))
    mask = masks.sliding_window(256)
    assert TiledCall.build(q, k, mask, Dv=64).windows is not None
    check_against_reference(q, k, v, mask, atol=2e-6)


@pytest.mark.parametrize(
    "why,kw",
    [
        ("grouped-query heads", {"H": 4, "Hkv": 2}),
        ("values narrower than keys", {"Dv": 4}),
        ("half precision", {"dtype": torch.bfloat16}),
        ("a bias", {"bias": Alibi(alibi_slopes(2))}),
        ("dropout", {"dropout_p": 0.1}),
        ("tile sizes given", {"block_q": 32, "block_k": 32}),
        ("fewer queries than keys", {"Lq": 100}),
    ],
)
def test_windows_are_not_used_where_they_do_not_apply(why, kw):
    assert _call(masks.sliding_window(16), **kw).windows is None, why


# ---------------------------------------------------------------------- explain() says which path runs
@pytest.mark.parametrize(
    "mask,L,says",
    [
        (masks.document(torch.arange(1024) // 128), 1024, "forward: 8 packed documents as 1 grouped bmm-softmax"),
        (masks.document(torch.arange(1024) // 256), 1024, "forward: 4 packed documents as 1 call of torch's fused"),
        (masks.document(torch.tensor([0] * 64 + [1] * 64 + [2] * 896)), 1024,
         "3 packed documents as 1 grouped bmm-softmax-bmm pass and 1 call of torch's fused CPU flash kernel, "),
        (masks.document(ids_of([64, 96, 200, 664])), 1024,
         "4 packed documents as 2 grouped bmm-softmax-bmm passes and 2 calls of torch's fused CPU flash kernel, "),
        (masks.sliding_window(256), 1024, "forward: the first 256 rows as causal attention, then blocks of 32 "
                                          "queries over windows of 287 keys"),
        (masks.sliding_window(100, causal=False), 1024, "forward: blocks of 32 queries over windows of 230 keys"),
        (masks.sliding_window(256), 4096, "query blocks in bands of 64x64"),
        (masks.padding([600]), 1024, "forward: only the real keys of each batch row as 1 call of torch's fused"),
        (masks.prefix_lm(100), 1024, "forward and backward: blocks of 128 queries"),
    ],
)
def test_explain_says_how_tiled_runs_the_call(mask, L, says):
    q = torch.zeros(1, 8, L, 64)
    e = explain(q, q, q, mask, backend="tiled")
    assert e.how is not None and says in e.how and f"  how: {e.how}" in str(e)


def test_explain_has_no_how_line_for_other_backends():
    q = torch.zeros(1, 8, 256, 64)
    e = explain(q, q, q, masks.causal())
    assert e.backend == "sdpa" and e.how is None and "how:" not in str(e)


@pytest.mark.parametrize(
    "mask",
    [
        masks.document(torch.arange(200) // 50),
        masks.document(torch.tensor([0] * 70 + [1] * 70 + [2] * 60)) & masks.causal(),
        masks.sliding_window(40),
        masks.sliding_window(30, causal=False),
        masks.padding([150, 90]),
    ],
    ids=["documents", "causal documents", "window", "two-sided window", "padding"],
)
@pytest.mark.parametrize("how", sorted(FORWARDS))
def test_fused_paths_take_inputs_in_any_layout(mask, how, any_length, monkeypatch):
    """q, k, v as transposes of (B, L, H, D) tensors (what a module's projections give)."""
    forward_by(monkeypatch, how)
    x = [randn(2, 200, 3, 16, seed=s) for s in (1, 2, 3)]  # (B, L, H, D) each
    q, k, v = (t.transpose(1, 2) for t in x)  # (B, H, L, D), not contiguous
    call = TiledCall.build(q, k, mask, Dv=16)
    assert call.segments is not None or call.windows is not None
    out = attention(q, k, v, mask, backend="tiled")
    ref, _, _ = reference_attention(q, k, v, mask)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    dout = randn(2, 200, 3, 16, seed=4).detach().transpose(1, 2)  # (B, H, L, D), not contiguous
    for a, b in zip(torch.autograd.grad(out, x, dout), torch.autograd.grad(ref, x, dout), strict=True):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=0)
