"""Tests for attnkit.nn.positional against hand-written float64 oracles (math / numpy / complex)."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit.nn import positional
from attnkit.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)

FAST = settings(max_examples=25, deadline=None)


# ---------------------------------------------------------------------------
# oracles (float64, independent of the module's code path)
# ---------------------------------------------------------------------------

def sinusoid_value(pos: int, j: int, d_model: int) -> float:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(same)."""
    two_i = j - (j % 2)
    angle = pos / 10000.0 ** (two_i / d_model)
    return math.sin(angle) if j % 2 == 0 else math.cos(angle)


def sinusoid_table(offset: int, length: int, d_model: int) -> np.ndarray:
    values = [sinusoid_value(p, j, d_model) for p in range(offset, offset + length) for j in range(d_model)]
    return np.array(values, dtype=np.float64).reshape(length, d_model)


def rope_half_oracle(x: np.ndarray, pos: np.ndarray, base: float = 10000.0) -> np.ndarray:
    """Half layout via complex numbers: pair i is (x[i], x[i + D/2]); x (..., L, D), pos (..., L)."""
    d = x.shape[-1]
    theta = base ** (-np.arange(0, d, 2) / d)  # (D/2,)
    z = x[..., : d // 2] + 1j * x[..., d // 2 :]
    z = z * np.exp(1j * pos[..., None] * theta)
    return np.concatenate([z.real, z.imag], axis=-1)


def rope_interleaved_oracle(x: torch.Tensor, pos: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Interleaved layout as in Meta's llama repo: view pairs (x[2i], x[2i+1]) as complex numbers."""
    x = x.to(torch.float64)
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = pos.to(torch.float64)[..., None] * theta
    z = torch.view_as_complex(x.reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(z * torch.polar(torch.ones_like(angles), angles)).flatten(-2)


def half_to_interleaved(d: int) -> list[int]:
    """Feature permutation P with interleaved[..., k] = half[..., P[k]]: [0, D/2, 1, D/2+1, ...]."""
    return [i // 2 + (d // 2) * (i % 2) for i in range(d)]


def randn64(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------------------
# SinusoidalPositionalEncoding
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("pos, j", [(0, 0), (0, 1), (1, 0), (1, 1), (7, 4), (37, 5), (200, 10), (999, 15)])
def test_sinusoidal_encoding_matches_formula_beyond_max_len(pos, j):
    pe = SinusoidalPositionalEncoding(16, max_len=8)
    table = pe.encoding(1000, dtype=torch.float64)
    assert table.shape == (1000, 16)
    assert table[pos, j].item() == pytest.approx(sinusoid_value(pos, j, 16), abs=1e-12)


def test_sinusoidal_encoding_float32_matches_formula_beyond_max_len():
    pe = SinusoidalPositionalEncoding(10, max_len=4)
    table = pe.encoding(300)
    assert table.dtype == torch.float32
    np.testing.assert_allclose(table.numpy(), sinusoid_table(0, 300, 10), atol=1e-6)


@FAST
@given(
    d_model=st.integers(1, 24),
    length=st.integers(0, 40),
    offset=st.integers(0, 3000),
    max_len=st.none() | st.integers(0, 50),
)
def test_sinusoidal_forward_adds_formula_random_shapes(d_model, length, offset, max_len):
    pe = SinusoidalPositionalEncoding(d_model, max_len=max_len)
    x = randn64(2, length, d_model)
    out = pe(x, offset=offset)
    expected = x.numpy() + sinusoid_table(offset, length, d_model)[None]
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-12)


def test_sinusoidal_forward_offset_equals_slice_of_longer_sequence():
    pe = SinusoidalPositionalEncoding(12)
    zeros = torch.zeros(1, 30, 12)
    np.testing.assert_allclose(pe(zeros[:, 20:], offset=20).numpy(), pe(zeros)[:, 20:].numpy(), atol=0)


def test_sinusoidal_forward_odd_d_model_truncates_formula():
    pe = SinusoidalPositionalEncoding(7)
    out = pe(torch.zeros(1, 50, 7, dtype=torch.float64), offset=3)
    np.testing.assert_allclose(out[0].numpy(), sinusoid_table(3, 50, 7), atol=1e-12)


def test_sinusoidal_forward_scales_embeddings_by_sqrt_d_model():
    pe = SinusoidalPositionalEncoding(9, scale_embeddings=True)
    x = randn64(3, 5, 9)
    expected = x.numpy() * 3.0 + sinusoid_table(0, 5, 9)[None]
    np.testing.assert_allclose(pe(x).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_sinusoidal_forward_keeps_dtype_low_precision(dtype):
    pe = SinusoidalPositionalEncoding(8)
    out = pe(torch.zeros(2, 6, 8, dtype=dtype), offset=100)
    assert out.dtype == dtype
    # the float64 table rounded once to dtype: within one unit of dtype's precision (values in [-1, 1])
    np.testing.assert_allclose(out[0].double().numpy(), sinusoid_table(100, 6, 8), atol=torch.finfo(dtype).eps, rtol=0)


def test_sinusoidal_state_dict_empty_cache_not_persistent():
    pe = SinusoidalPositionalEncoding(8, max_len=64)
    pe(torch.zeros(1, 100, 8))
    assert pe.state_dict() == {}


def test_sinusoidal_forward_eval_ignores_dropout_matches_formula():
    pe = SinusoidalPositionalEncoding(8, dropout=0.5).eval()
    x = randn64(2, 5, 8, seed=4)
    np.testing.assert_allclose(pe(x, offset=7).numpy(), x.numpy() + sinusoid_table(7, 5, 8)[None], atol=1e-12, rtol=0)


def test_sinusoidal_forward_dropout_train_zeroes_some_entries():
    pe = SinusoidalPositionalEncoding(8, dropout=0.5).train()
    out = pe(torch.ones(4, 16, 8) * 5.0)
    assert (out == 0).any() and (out != 0).any()


def test_sinusoidal_forward_wrong_width_raises():
    with pytest.raises(ValueError, match=r"d_model=8.*\(2, 3, 5\)"):
        SinusoidalPositionalEncoding(8)(torch.zeros(2, 3, 5))


def test_sinusoidal_forward_negative_offset_raises():
    with pytest.raises(ValueError, match="offset must be >= 0"):
        SinusoidalPositionalEncoding(8)(torch.zeros(2, 3, 8), offset=-1)


def test_sinusoidal_init_nonpositive_d_model_raises():
    with pytest.raises(ValueError, match="d_model must be >= 1, got 0"):
        SinusoidalPositionalEncoding(0)


# ---------------------------------------------------------------------------
# LearnedPositionalEmbedding
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("offset, length", [(0, 10), (3, 4), (9, 1), (0, 0)])
def test_learned_forward_adds_weight_rows_at_offset(offset, length):
    pos = LearnedPositionalEmbedding(10, 6).double()
    x = randn64(2, length, 6)
    w = pos.weight.detach().numpy()
    expected = x.numpy() + w[offset : offset + length][None]
    np.testing.assert_allclose(pos(x, offset=offset).detach().numpy(), expected, atol=1e-15)


@pytest.mark.parametrize("offset, length", [(0, 11), (8, 3), (10, 1)])
def test_learned_forward_beyond_max_len_raises(offset, length):
    pos = LearnedPositionalEmbedding(10, 6)
    with pytest.raises(ValueError, match=rf"offset={offset}.*length={length}.*max_len=10"):
        pos(torch.zeros(1, length, 6), offset=offset)


def test_learned_forward_gradient_reaches_used_rows_only():
    pos = LearnedPositionalEmbedding(8, 4)
    pos(torch.zeros(2, 3, 4), offset=2).sum().backward()
    row_used = pos.weight.grad.abs().sum(-1) > 0
    assert row_used.tolist() == [False, False, True, True, True, False, False, False]
    np.testing.assert_allclose(pos.weight.grad[2:5].numpy(), 2.0)


def test_learned_state_dict_has_weight_key():
    pos = LearnedPositionalEmbedding(8, 4)
    assert list(pos.state_dict()) == ["weight"]
    assert pos.weight.shape == (8, 4)


def test_learned_forward_wrong_width_raises():
    with pytest.raises(ValueError, match="d_model=4"):
        LearnedPositionalEmbedding(8, 4)(torch.zeros(1, 2, 5))


# ---------------------------------------------------------------------------
# RotaryEmbedding
# ---------------------------------------------------------------------------

@FAST
@given(
    head_dim=st.sampled_from([2, 4, 6, 8, 16]),
    length=st.integers(1, 12),
    offset=st.integers(0, 5000),
    base=st.sampled_from([10000.0, 500000.0, 10.0]),
)
def test_rope_rotate_half_matches_complex_oracle_random_shapes(head_dim, length, offset, base):
    rope = RotaryEmbedding(head_dim, base=base)
    x = randn64(2, 3, length, head_dim)
    pos = np.arange(offset, offset + length, dtype=np.float64)
    np.testing.assert_allclose(rope.rotate(x, offset).numpy(), rope_half_oracle(x.numpy(), pos, base), atol=1e-12)


@FAST
@given(head_dim=st.sampled_from([2, 4, 8, 32]), length=st.integers(1, 12), offset=st.integers(0, 5000))
def test_rope_rotate_interleaved_matches_view_as_complex_oracle(head_dim, length, offset):
    rope = RotaryEmbedding(head_dim, interleaved=True)
    x = randn64(2, 3, length, head_dim)
    expected = rope_interleaved_oracle(x, torch.arange(offset, offset + length))
    torch.testing.assert_close(rope.rotate(x, offset), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_rotate_float32_matches_oracle_large_positions(interleaved):
    rope = RotaryEmbedding(64, interleaved=interleaved)
    x = randn64(1, 2, 16, 64)
    pos = torch.arange(100_000, 100_016)
    expected = rope_interleaved_oracle(x, pos) if interleaved else torch.from_numpy(
        rope_half_oracle(x.numpy(), pos.numpy().astype(np.float64))
    )
    torch.testing.assert_close(rope.rotate(x.float(), positions=pos).double(), expected, atol=2e-6, rtol=0)


@FAST
@given(m=st.integers(0, 2000), n=st.integers(0, 2000), s=st.integers(0, 2000), interleaved=st.booleans())
def test_rope_dot_product_depends_only_on_relative_position(m, n, s, interleaved):
    rope = RotaryEmbedding(16, interleaved=interleaved)
    q, k = randn64(1, 1, 1, 16, seed=1), randn64(1, 1, 1, 16, seed=2)

    def score(pq: int, pk: int) -> float:
        return (rope.rotate(q, pq) * rope.rotate(k, pk)).sum().item()

    assert score(m + s, n + s) == pytest.approx(score(m, n), abs=1e-10)


@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_rotate_preserves_norms(interleaved):
    rope = RotaryEmbedding(12, interleaved=interleaved)
    x = randn64(2, 3, 40, 12)
    out = rope.rotate(x, 123)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1), atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rope_rotate_offset_equals_slicing_positions(dtype):
    rope = RotaryEmbedding(8)
    x = randn64(2, 2, 20, 8).to(dtype)
    full = rope.rotate(x)
    torch.testing.assert_close(rope.rotate(x[:, :, 13:], 13), full[:, :, 13:], atol=0, rtol=0)


def test_rope_rotate_positions_1d_equals_offset():
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 2, 5, 8)
    torch.testing.assert_close(rope.rotate(x, positions=torch.arange(7, 12)), rope.rotate(x, 7), atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rope_rotate_positions_2d_per_batch_packed(dtype):
    rope = RotaryEmbedding(8)
    x = randn64(2, 3, 5, 8).to(dtype)
    positions = torch.tensor([[0, 1, 2, 0, 1], [4, 5, 6, 7, 8]])
    out = rope.rotate(x, positions=positions)
    expected = torch.from_numpy(rope_half_oracle(x.double().numpy(), positions.double().numpy()[:, None, :]))
    torch.testing.assert_close(out.double(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("head_dim", [2, 6, 16])
def test_rope_layouts_related_by_feature_permutation(head_dim):
    perm = half_to_interleaved(head_dim)
    x = randn64(2, 2, 9, head_dim)
    half = RotaryEmbedding(head_dim).rotate(x, 31)
    inter = RotaryEmbedding(head_dim, interleaved=True).rotate(x[..., perm], 31)
    torch.testing.assert_close(inter, half[..., perm], atol=1e-14, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_rotate_half_precision_keeps_dtype(dtype, interleaved):
    rope = RotaryEmbedding(16, interleaved=interleaved)
    x = randn64(2, 2, 10, 16).to(dtype)
    out = rope.rotate(x, 1000)
    assert out.dtype == dtype
    expected = rope_interleaved_oracle(x.double(), torch.arange(1000, 1010)) if interleaved else torch.from_numpy(
        rope_half_oracle(x.double().numpy(), np.arange(1000, 1010, dtype=np.float64))
    )
    eps = torch.finfo(dtype).eps  # one rounding of the float32 result to dtype
    torch.testing.assert_close(out.double(), expected, atol=4 * eps, rtol=eps)


def test_rope_forward_rotates_q_and_k_gqa_heads():
    rope = RotaryEmbedding(8)
    q, k = randn64(2, 4, 6, 8, seed=1), randn64(2, 2, 6, 8, seed=2)
    q_rot, k_rot = rope(q, k, offset=5)
    pos = np.arange(5, 11, dtype=np.float64)
    np.testing.assert_allclose(q_rot.numpy(), rope_half_oracle(q.numpy(), pos), atol=1e-12)
    np.testing.assert_allclose(k_rot.numpy(), rope_half_oracle(k.numpy(), pos), atol=1e-12)


def test_rope_rotate_gradient_is_inverse_rotation():
    rope = RotaryEmbedding(8)
    x = randn64(1, 1, 4, 8).requires_grad_()
    g = randn64(1, 1, 4, 8, seed=3)
    rope.rotate(x, 2).backward(g)
    pos = np.arange(2, 6, dtype=np.float64)
    np.testing.assert_allclose(x.grad.numpy(), rope_half_oracle(g.numpy(), -pos), atol=1e-12)


def test_rope_state_dict_empty_cache_not_persistent():
    rope = RotaryEmbedding(8)
    rope.rotate(torch.zeros(1, 1, 50, 8))
    assert rope.state_dict() == {}


def test_rope_rotate_after_module_half_still_accurate():
    rope = RotaryEmbedding(8)
    rope.rotate(torch.zeros(1, 1, 4, 8))
    rope.half()  # casts float buffers; the cache must be rebuilt in float32
    x = randn64(1, 1, 3, 8)
    expected = rope_half_oracle(x.numpy(), np.arange(500, 503, dtype=np.float64))
    np.testing.assert_allclose(rope.rotate(x.float(), 500).double().numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("head_dim", [1, 7, 63])
def test_rope_init_odd_head_dim_raises(head_dim):
    with pytest.raises(ValueError, match=rf"head_dim must be even, got {head_dim}"):
        RotaryEmbedding(head_dim)


def test_rope_rotate_wrong_head_dim_raises():
    with pytest.raises(ValueError, match=r"head_dim=8.*\(1, 2, 3, 6\)"):
        RotaryEmbedding(8).rotate(torch.zeros(1, 2, 3, 6))


def test_rope_rotate_float_positions_raises():
    with pytest.raises(TypeError, match="positions must be an integer tensor"):
        RotaryEmbedding(8).rotate(torch.zeros(1, 2, 3, 8), positions=torch.arange(3.0))


@pytest.mark.parametrize("shape", [(4,), (3, 3), (1, 2, 3)])
def test_rope_rotate_positions_wrong_shape_raises(shape):
    with pytest.raises(ValueError, match="positions must have shape"):
        RotaryEmbedding(8).rotate(torch.zeros(2, 2, 3, 8), positions=torch.zeros(shape, dtype=torch.long))


def test_rope_rotate_offset_and_positions_raises():
    with pytest.raises(ValueError, match="either offset=2 or positions="):
        RotaryEmbedding(8).rotate(torch.zeros(1, 2, 3, 8), 2, positions=torch.arange(3))


def test_rope_forward_length_mismatch_raises():
    with pytest.raises(ValueError, match="q has L=3 positions but k has L=5"):
        RotaryEmbedding(8)(torch.zeros(1, 2, 3, 8), torch.zeros(1, 2, 5, 8))


def test_positional_docstring_examples_run():
    torch.manual_seed(0)
    assert doctest.testmod(positional).failed == 0
