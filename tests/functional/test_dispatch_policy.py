"""backend="auto" between sdpa and tiled: the measured thresholds, stated by explain()."""

import pytest
import torch

from attnkit import masks
from attnkit.functional import explain
from attnkit.functional.dispatch import DENSE_MASK_BUDGET, PIECES_MIN_WORK, TILED_MAX_KEPT, TILED_MIN_PAIRS


def _qkv(L, Lk=None, H=8):
    q = torch.empty(1, H, L, 64)  # explain() reads shapes only; no attention is computed
    k = torch.empty(1, H, Lk or L, 64)
    return q, k, k


def test_auto_unmasked_runs_sdpa_fused_kernel():
    e = explain(*_qkv(4096))
    assert e.backend == "sdpa" and "fused kernel" in e.reasons["tiled"]


def test_auto_causal_square_runs_sdpa_is_causal():
    e = explain(*_qkv(4096), mask=masks.causal())
    assert e.backend == "sdpa" and "is_causal" in e.reasons["tiled"]


def test_auto_sliding_window_long_runs_tiled_and_says_how_much_it_skips():
    e = explain(*_qkv(4096), mask=masks.causal() & masks.sliding_window(256))
    assert e.backend == "tiled"
    kept = 2 * 128 * 4096 / 4096**2  # hand count: about two 128-key tiles per 128-query block
    assert kept <= TILED_MAX_KEPT and "keeps" in e.reasons["sdpa"]


def test_auto_short_sequence_stays_on_sdpa_below_min_pairs():
    L = int(TILED_MIN_PAIRS**0.5) // 2
    e = explain(*_qkv(L), mask=masks.sliding_window(L // 4))
    assert e.backend == "sdpa" and str(TILED_MIN_PAIRS) in e.reasons["tiled"]


def test_auto_nearly_full_mask_stays_on_sdpa():
    e = explain(*_qkv(4096), mask=masks.sliding_window(4000, causal=False))
    assert e.backend == "sdpa" and "saves too little" in e.reasons["tiled"]


@pytest.mark.parametrize(
    "L,mask",
    [
        (256, masks.document(torch.arange(256) // 64)),  # short, below TILED_MIN_PAIRS
        (4096, masks.padding([4000])),  # keeps nearly every tile
        (1024, masks.padding([1000]) & masks.causal()),
    ],
)
def test_auto_runs_documents_and_key_padding_as_pieces_on_tiled(L, mask):
    e = explain(*_qkv(L), mask=mask)
    assert e.backend == "tiled" and "pieces of plain attention" in e.reasons["sdpa"]
    assert e.how is not None and "no mask" in e.how  # the kernel or grouped matmuls, on views without a mask


@pytest.mark.parametrize("H,L", [(8, 64), (8, 96), (4, 128), (1, 128), (1, 256)])
def test_auto_tiny_document_call_stays_on_sdpa(H, L):
    """Under PIECES_MIN_WORK per piece the pieces' planning and calls cost more than sdpa's whole call."""
    assert H * L * L < PIECES_MIN_WORK
    e = explain(*_qkv(L, H=H), mask=masks.document(torch.arange(L) // (L // 2)))
    assert e.backend == "sdpa"


@pytest.mark.parametrize("H,L", [(8, 128), (2, 256), (1, 384)])
def test_auto_small_document_call_runs_as_pieces_once_the_work_pays(H, L):
    assert H * L * L >= PIECES_MIN_WORK
    e = explain(*_qkv(L, H=H), mask=masks.document(torch.arange(L) // (L // 4)))
    assert e.backend == "tiled" and "pieces of plain attention" in e.reasons["sdpa"]


@pytest.mark.parametrize("B,L,backend", [(32, 96, "sdpa"), (64, 48, "sdpa"), (16, 128, "tiled"), (4, 256, "tiled")])
def test_auto_key_padding_weighs_the_work_per_piece(B, L, backend):
    """A batch whose rows all differ in length is about one piece (one call) per row."""
    q = torch.empty(B, 8, L, 64)
    lengths = [L - b % L for b in range(B)]  # every row a different length: B pieces
    e = explain(q, q, q, mask=masks.padding(lengths))
    assert e.backend == backend, e


def test_auto_dense_mask_over_budget_runs_tiled():
    L = int((DENSE_MASK_BUDGET / 8) ** 0.5) + 1024  # 8 heads of bool > budget
    e = explain(*_qkv(L), mask=masks.causal() & masks.dense(torch.ones(1, 8, 1, 1, dtype=torch.bool)))
    assert e.backend == "tiled" and "GiB" in e.reasons["sdpa"]


def test_auto_dense_tensor_mask_runs_sdpa():
    m = torch.rand(512, 512) > 0.5
    e = explain(*_qkv(512), mask=m)
    assert e.backend == "sdpa" and "dense tensor" in e.reasons["tiled"]


def test_auto_causal_decoding_step_uses_sdpa():
    e = explain(*_qkv(1, 4096), mask=masks.causal())
    assert e.backend == "sdpa"
