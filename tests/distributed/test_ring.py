"""Tests of :mod:`attnkit.distributed.ring`: ring attention is attention over the whole sequence.

The oracle is the float64 reference attention on the full (unsharded) sequence, computed
here in the pytest process. One spawned gloo group of 3 processes on 127.0.0.1 runs every
case, since process start-up dominates the cost: the 3-rank cases on the whole group, the
2-rank cases on a subgroup of global ranks 1 and 2 (so ``group=`` and the mapping of group
ranks to global ranks are exercised too). One rank saves the gathered outputs and gradients
for the tests below to check. A world of one process (an in-process HashStore group) needs
no spawn.

Shape legend: B batch, H query heads, Hkv key/value heads, Lq/Lk global lengths, D, Dv head dims.
"""

from __future__ import annotations

import os
import socket
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from filelock import FileLock

from attnkit import masks
from attnkit.distributed import gather_sequence, merge_partial, ring_attention, shard_sequence
from attnkit.distributed._ring_plan import GlobalView, Layout, plan_steps
from attnkit.functional import attention, reference_attention


@dataclass(frozen=True)
class Case:
    """One ring attention call on a global sequence; the mask is built from (Lq, Lk)."""

    mask: Callable[[int, int], masks.Mask | None] = lambda Lq, Lk: None
    layout: str = "contiguous"
    B: int = 2
    H: int = 2
    Hkv: int = 2
    Lq: int = 12
    Lk: int = 12
    D: int = 4
    Dv: int = 4
    lse_grad: bool = False  # the loss also uses the returned lse
    empty_rows: tuple = field(default_factory=tuple)  # (b, q) rows the mask leaves empty: must be 0


def _doc_ids(Lk: int) -> torch.Tensor:
    return torch.tensor([[0] * 5 + [1] * 4 + [2] * (Lk - 9), [0] * (Lk - 3) + [1] * 3])  # (2, Lk)


def _dense(Lq: int, Lk: int) -> masks.Mask:
    values = torch.rand(2, 1, Lq, Lk, generator=torch.Generator().manual_seed(3)) < 0.4  # (2, 1, Lq, Lk)
    values[0, 0, 1] = False  # one row that may attend to nothing
    return masks.dense(values)


CASES_2 = {
    "no_mask": Case(),
    "causal": Case(lambda Lq, Lk: masks.causal()),
    "sliding_window": Case(lambda Lq, Lk: masks.sliding_window(3)),
    "sliding_window_bidirectional": Case(lambda Lq, Lk: masks.sliding_window(4, causal=False)),
    "document": Case(lambda Lq, Lk: masks.document(_doc_ids(Lk))),
    "padding": Case(lambda Lq, Lk: masks.padding([7, 12])),
    "prefix_lm": Case(lambda Lq, Lk: masks.prefix_lm(5)),
    "causal_and_document": Case(lambda Lq, Lk: masks.causal() & masks.document(_doc_ids(Lk))),
    "causal_and_padding_empty_batch": Case(
        lambda Lq, Lk: masks.causal() & masks.padding([0, 9]), empty_rows=tuple((0, i) for i in range(12))
    ),
    "not_causal": Case(lambda Lq, Lk: ~masks.causal(), empty_rows=((0, 11), (1, 11))),
    "window_or_prefix": Case(lambda Lq, Lk: masks.sliding_window(2) | masks.prefix_lm(2)),
    "dense": Case(_dense, empty_rows=((0, 1),)),
    "gqa_causal": Case(lambda Lq, Lk: masks.causal(), H=4, Hkv=2, Dv=3),
    "cross_lengths_causal": Case(lambda Lq, Lk: masks.causal(), Lq=8, Lk=12),
    "more_queries_than_keys_causal": Case(lambda Lq, Lk: masks.causal(), Lq=12, Lk=8,
                                          empty_rows=tuple((b, i) for b in (0, 1) for i in range(4))),  # fmt: skip
    "causal_lse_grad": Case(lambda Lq, Lk: masks.causal(), lse_grad=True),
    "zigzag_no_mask": Case(layout="zigzag"),
    "zigzag_causal": Case(lambda Lq, Lk: masks.causal(), layout="zigzag"),
    "zigzag_causal_and_document": Case(lambda Lq, Lk: masks.causal() & masks.document(_doc_ids(Lk)), layout="zigzag"),
    "zigzag_gqa_padding": Case(lambda Lq, Lk: masks.padding([0, 5]), layout="zigzag", H=4, Hkv=1,
                               empty_rows=tuple((0, i) for i in range(12))),  # fmt: skip
    "zigzag_cross_lengths_causal": Case(lambda Lq, Lk: masks.causal(), layout="zigzag", Lq=8, Lk=12),
}
CASES_3 = {
    "causal": Case(lambda Lq, Lk: masks.causal()),
    "gqa_sliding_window": Case(lambda Lq, Lk: masks.sliding_window(3), H=4, Hkv=2),
    "causal_and_padding_empty_batch": Case(
        lambda Lq, Lk: masks.causal() & masks.padding([0, 9]), empty_rows=tuple((0, i) for i in range(12))
    ),
    "zigzag_causal_and_document": Case(lambda Lq, Lk: masks.causal() & masks.document(_doc_ids(Lk)), layout="zigzag"),
}


def _inputs(name: str, c: Case) -> dict[str, torch.Tensor]:
    """The full-sequence float64 inputs of a case, identical in every process."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    shapes = {"q": (c.B, c.H, c.Lq, c.D), "k": (c.B, c.Hkv, c.Lk, c.D), "v": (c.B, c.Hkv, c.Lk, c.Dv),
              "dout": (c.B, c.H, c.Lq, c.Dv), "dlse": (c.B, c.H, c.Lq)}  # fmt: skip
    return {n: torch.randn(s, generator=g, dtype=torch.float64) for n, s in shapes.items()}


# ---------------------------------------------------------------------- spawned workers (module level: picklable)
def _run_case(name: str, c: Case, group=None) -> dict[str, torch.Tensor]:
    """Shard, run the ring forward and backward, gather: what the tests compare to the reference."""
    full = _inputs(name, c)
    local = {n: shard_sequence(t, 2, group, layout=c.layout).detach() for n, t in full.items()}
    q, k, v = (local[n].requires_grad_() for n in ("q", "k", "v"))
    out, lse = ring_attention(q, k, v, c.mask(c.Lq, c.Lk), group=group, layout=c.layout, return_lse=True)
    loss = (out * local["dout"]).sum() + ((lse * local["dlse"]).sum() if c.lse_grad else 0)
    loss.backward()
    results = {"out": out, "lse": lse, "dq": q.grad, "dk": k.grad, "dv": v.grad}
    return {n: gather_sequence(t, 2, group, layout=c.layout) for n, t in results.items()}


def _error_messages(group) -> dict[str, str]:
    """Errors every rank of the group raises together (so the ring stays in step)."""
    messages = {}
    q = torch.randn(1, 1, 6 - dist.get_rank(group) % 2, 4)  # group ranks hold different lengths
    try:
        ring_attention(q, q, q, group=group)
    except ValueError as e:
        messages["unequal_shards"] = str(e)
    q = torch.randn(1, 1, 4, 4)
    try:
        ring_attention(q, q, q, masks.document(torch.zeros(4, dtype=torch.long)), group=group)  # one shard's ids
    except ValueError as e:
        messages["local_mask"] = str(e)
    return messages


def _save(results: dict, path: str) -> None:
    torch.save(results, path + ".tmp")
    os.replace(path + ".tmp", path)  # atomic: a failed run leaves no results file


def _worker(rank: int, port: int, root: str) -> None:
    """Global ranks 0..2 run CASES_3 on the world; ranks 1, 2 run CASES_2 on a subgroup.

    The subgroup's rank 0 is global rank 1, so a mix-up of group and global ranks shows up.
    """
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=3,
                            timeout=timedelta(seconds=60))  # fmt: skip
    try:
        pair = dist.new_group([1, 2])  # every rank takes part in creating it
        three = {"cases": {name: _run_case(name, c) for name, c in CASES_3.items()}}
        if rank == 0:
            _save(three, os.path.join(root, "world3.pt"))
        if rank in (1, 2):
            two = {"cases": {name: _run_case(name, c, pair) for name, c in CASES_2.items()}}
            two["errors"] = _error_messages(pair)
            if rank == 1:
                _save(two, os.path.join(root, "world2.pt"))
        dist.barrier()  # rank 0 hosts the store: it stays until the pair is done
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def spawned(request, tmp_path_factory) -> dict[int, dict]:
    """Results per world size (2 and 3) from one spawned group of 3 processes.

    Under pytest-xdist the workers share the run directory and a file lock, so the group
    is spawned once per test run, not once per worker.
    """
    shared = hasattr(request.config, "workerinput")  # an xdist worker: basetemp is <run>/popen-gwN
    root = tmp_path_factory.getbasetemp().parent if shared else tmp_path_factory.mktemp("ring")
    root = root / "ring_attention"
    root.mkdir(exist_ok=True)
    with FileLock(str(root / "spawn.lock")):
        if not (root / "world2.pt").exists():
            mp.start_processes(_worker, args=(_free_port(), str(root)), nprocs=3, join=True, start_method="spawn")
    return {w: torch.load(root / f"world{w}.pt", weights_only=True) for w in (2, 3)}


# ---------------------------------------------------------------------- the oracle
def _reference(name: str, c: Case) -> dict[str, torch.Tensor]:
    """Float64 reference attention on the full sequence, and its gradients by autograd."""
    full = _inputs(name, c)
    q, k, v = (full[n].clone().requires_grad_() for n in ("q", "k", "v"))
    out, _, lse = reference_attention(q, k, v, c.mask(c.Lq, c.Lk))
    loss = (out * full["dout"]).sum() + ((lse * full["dlse"]).sum() if c.lse_grad else 0)
    loss.backward()
    return {"out": out.detach(), "lse": lse.detach(), "dq": q.grad, "dk": k.grad, "dv": v.grad}


def _assert_matches_reference(name: str, c: Case, got: dict[str, torch.Tensor]) -> None:
    want = _reference(name, c)
    for n in ("out", "lse", "dq", "dk", "dv"):
        assert not got[n].isnan().any(), f"{name}: ring {n} has NaN"
        torch.testing.assert_close(got[n], want[n], rtol=1e-10, atol=1e-10, msg=lambda m, n=n: f"{name}: {n}: {m}")
    for b, i in c.empty_rows:  # rows the mask leaves empty: output and query gradient exactly 0
        assert want["lse"][b, :, i].eq(float("-inf")).all(), f"{name}: case lists ({b}, {i}) as empty but it is not"
        assert got["out"][b, :, i].eq(0).all() and got["dq"][b, :, i].eq(0).all()


@pytest.mark.parametrize("name", list(CASES_2))
def test_ring_attention_two_ranks_matches_reference(spawned, name):
    _assert_matches_reference(name, CASES_2[name], spawned[2]["cases"][name])


@pytest.mark.parametrize("name", list(CASES_3))
def test_ring_attention_three_ranks_matches_reference(spawned, name):
    _assert_matches_reference(name, CASES_3[name], spawned[3]["cases"][name])


def test_ring_attention_unequal_shards_raises_clear_error(spawned):
    msg = spawned[2]["errors"]["unequal_shards"]
    assert "same shape" in msg and "rank 1: q (1, 1, 5, 4)" in msg and "masks.padding" in msg


def test_ring_attention_mask_of_one_shard_raises_clear_error(spawned):
    msg = spawned[2]["errors"]["local_mask"]
    assert "whole sequence" in msg and "Lk=8" in msg


# ---------------------------------------------------------------------- one process, no spawn
@pytest.fixture
def world1(monkeypatch):
    if dist.is_initialized():
        pytest.skip("a default process group already exists in this process")
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("name", ["causal_and_document", "zigzag_causal", "gqa_causal", "dense"])
def test_ring_attention_one_rank_matches_reference(world1, name):
    _assert_matches_reference(name, CASES_2[name], _run_case(name, CASES_2[name]))


def test_ring_attention_one_rank_gradcheck_causal_window(world1):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = masks.causal() & masks.sliding_window(3)
    assert torch.autograd.gradcheck(lambda q, k, v: ring_attention(q, k, v, mask, return_lse=True), (q, k, v))


def test_shard_sequence_zigzag_odd_length_raises_clear_error(world1):
    with pytest.raises(ValueError, match=r"length 3 along dim 2.*2 equal chunks.*pad the sequence to a multiple of 2"):
        shard_sequence(torch.zeros(1, 1, 3, 4), 2, layout="zigzag")


def test_ring_attention_unknown_layout_raises_clear_error(world1):
    q = torch.zeros(1, 1, 4, 2)
    with pytest.raises(ValueError, match=r"layout must be one of \('contiguous', 'zigzag'\), got 'striped'"):
        ring_attention(q, q, q, layout="striped")


def test_ring_attention_head_dim_mismatch_names_ring_attention(world1):
    with pytest.raises(ValueError, match=r"^ring_attention\(\): k has 3 features per head but q has 4"):
        ring_attention(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 3), torch.zeros(1, 1, 4, 3))


def test_ring_attention_without_process_group_says_how_to_init():
    if dist.is_initialized():
        pytest.skip("a default process group already exists in this process")
    q = torch.zeros(1, 1, 4, 2)
    with pytest.raises(RuntimeError, match=r"not initialized.*init_process_group.*group="):
        ring_attention(q, q, q)


# ---------------------------------------------------------------------- pieces, no process group
def test_merge_partial_of_key_halves_equals_attention_over_all_keys():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, 5, 3, generator=g, dtype=torch.float64) for _ in range(3))
    mask = masks.causal()  # row 0 sees only key 0: the second half is empty for rows 0..2
    halves = [GlobalView(mask, torch.arange(5), torch.arange(a, b), 5, 5) for a, b in ((0, 3), (3, 5))]
    o1, l1 = attention(q, k[:, :, :3], v[:, :, :3], halves[0], return_lse=True)
    o2, l2 = attention(q, k[:, :, 3:], v[:, :, 3:], halves[1], return_lse=True)
    out, lse = merge_partial(o1, l1, o2, l2)
    want, _, want_lse = reference_attention(q, k, v, mask)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(lse, want_lse)


def test_merge_partial_of_two_empty_rows_is_zero_not_nan():
    empty = torch.full((1, 1, 2), float("-inf"))
    out, lse = merge_partial(torch.zeros(1, 1, 2, 3), empty, torch.zeros(1, 1, 2, 3), empty)
    assert out.eq(0).all() and lse.eq(float("-inf")).all()


@pytest.mark.parametrize("layout", ["contiguous", "zigzag"])
@pytest.mark.parametrize("make", [masks.causal, lambda: masks.sliding_window(3, causal=False),
                                  lambda: masks.document([0, 0, 0, 1, 1, 1, 1, 2]) & masks.causal()])  # fmt: skip
def test_global_view_equals_slice_of_global_mask(layout, make):
    mask, lay = make(), Layout(layout, 2)
    dense = mask.to_dense(8, 8)[0, 0]  # (Lq, Lk)
    for rq in range(2):
        for rk in range(2):
            qp, kp = lay.positions(rq, 4), lay.positions(rk, 4)
            got = GlobalView(mask, qp, kp, 8, 8).to_dense(4, 4)[0, 0]  # (lq, lk)
            assert torch.equal(got, dense[qp][:, kp]), (rq, rk)


def test_plan_steps_contiguous_causal_skips_future_blocks_and_unmasks_past_ones():
    steps = plan_steps(masks.causal(), Layout("contiguous", 4), rank=1, lq=3, lk=3)
    assert [(s.src, s.visit, s.mask is None) for s in steps] == [
        (1, True, False),  # diagonal block: masked
        (0, True, True),  # past block: every pair may attend
        (3, False, True),  # future blocks: skipped
        (2, False, True),
    ]


def test_plan_steps_zigzag_causal_visits_every_block_half():
    steps = plan_steps(masks.causal(), Layout("zigzag", 4), rank=1, lq=4, lk=4)
    assert all(s.visit and s.mask is not None for s in steps)  # balanced: each block partly visible


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ring_attention_one_rank_low_precision_error_at_most_twice_reference_error(world1, dtype):
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 2, 12, 8, generator=g, dtype=torch.float64) for _ in range(3))
    mask = masks.causal() & masks.document(_doc_ids(12))
    want = reference_attention(q, k, v, mask)[0]  # float64 oracle
    got = ring_attention(q.to(dtype), k.to(dtype), v.to(dtype), mask)
    ref_err = (reference_attention(q.to(dtype), k.to(dtype), v.to(dtype), mask)[0].double() - want).abs().max()
    assert got.dtype == dtype
    assert (got.double() - want).abs().max() <= 2 * ref_err + 1e-6
