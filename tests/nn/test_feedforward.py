"""Tests for attnkit.nn.feedforward against hand-written float64 numpy formulas."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit.nn import feedforward
from attnkit.nn.feedforward import ACTIVATIONS, FeedForward, default_d_ff

FAST = settings(max_examples=20, deadline=None)
_erf = np.vectorize(math.erf)


# ---------------------------------------------------------------------------
# oracles: the formulas, in numpy float64, with the module's weights
# ---------------------------------------------------------------------------

def linear(x: np.ndarray, layer: torch.nn.Linear) -> np.ndarray:
    out = x @ layer.weight.detach().double().numpy().T
    return out if layer.bias is None else out + layer.bias.detach().double().numpy()


def act_oracle(name: str, h: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(h, 0.0)
    if name == "gelu":
        return 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))
    assert name == "gelu_tanh"
    return 0.5 * h * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h**3)))


def ffn_oracle(ffn: FeedForward, x: np.ndarray) -> np.ndarray:
    if ffn.activation == "swiglu":
        gate = linear(x, ffn.w_gate)
        return linear(gate / (1.0 + np.exp(-gate)) * linear(x, ffn.w_up), ffn.w_down)
    return linear(act_oracle(ffn.activation, linear(x, ffn.w_1)), ffn.w_2)


def randn64(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_feedforward_forward_matches_formula_float64(activation, bias):
    torch.manual_seed(0)
    ffn = FeedForward(12, 40, activation, bias=bias).double()
    x = randn64(2, 7, 12) * 3.0  # wide range: exercises both sides of every activation
    np.testing.assert_allclose(ffn(x).detach().numpy(), ffn_oracle(ffn, x.numpy()), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_feedforward_forward_matches_formula_float32(activation):
    torch.manual_seed(1)
    ffn = FeedForward(16, activation=activation)
    x = randn64(3, 5, 16)
    out = ffn(x.float()).detach().double().numpy()
    np.testing.assert_allclose(out, ffn_oracle(ffn, x.numpy()), atol=1e-5, rtol=1e-5)


def test_feedforward_gelu_exact_differs_from_tanh_approximation():
    torch.manual_seed(2)
    exact = FeedForward(4, 8, "gelu").double()
    approx = FeedForward(4, 8, "gelu_tanh").double()
    approx.load_state_dict(exact.state_dict())
    x = randn64(1, 50, 4) * 3.0
    assert not torch.allclose(exact(x), approx(x), atol=1e-6, rtol=0)


@FAST
@given(
    lead=st.lists(st.integers(1, 4), min_size=0, max_size=3),
    d_model=st.integers(1, 20),
    d_ff=st.integers(1, 33),
    activation=st.sampled_from(ACTIVATIONS),
)
def test_feedforward_forward_matches_formula_random_shapes(lead, d_model, d_ff, activation):
    ffn = FeedForward(d_model, d_ff, activation).double()
    x = randn64(*lead, d_model)
    out = ffn(x)
    assert out.shape == x.shape
    np.testing.assert_allclose(out.detach().numpy(), ffn_oracle(ffn, x.numpy()), atol=1e-12, rtol=1e-12)


# ---------------------------------------------------------------------------
# structure and defaults
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
def test_feedforward_two_matrix_names_and_shapes(activation):
    ffn = FeedForward(8, 24, activation)
    shapes = {k: tuple(v.shape) for k, v in ffn.state_dict().items()}
    assert shapes == {"w_1.weight": (24, 8), "w_1.bias": (24,), "w_2.weight": (8, 24), "w_2.bias": (8,)}


def test_feedforward_swiglu_llama_names_no_bias():
    ffn = FeedForward(8, 24, "swiglu", bias=False)
    shapes = {k: tuple(v.shape) for k, v in ffn.state_dict().items()}
    assert shapes == {"w_gate.weight": (24, 8), "w_up.weight": (24, 8), "w_down.weight": (8, 24)}


@pytest.mark.parametrize(
    "d_model, activation, expected",
    [(512, "relu", 2048), (7, "gelu", 28), (512, "swiglu", 1408), (4096, "swiglu", 10944), (8, "swiglu", 64)],
)
def test_feedforward_default_d_ff_paper_and_llama_rule(d_model, activation, expected):
    hidden = int(8 * d_model / 3)
    llama = -(-hidden // 64) * 64  # ceil to a multiple of 64
    assert expected == (llama if activation == "swiglu" else 4 * d_model)
    assert FeedForward(d_model, activation=activation).d_ff == expected
    assert default_d_ff(d_model, activation) == expected


def test_feedforward_default_d_ff_llama_7b_multiple_of_256():
    assert default_d_ff(4096, "swiglu", multiple_of=256) == 11008


# ---------------------------------------------------------------------------
# dropout and gradients
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_feedforward_train_mode_dropout_zero_matches_formula(activation):
    torch.manual_seed(5)
    ffn = FeedForward(8, 20, activation=activation, dropout=0.0).double().train()
    x = randn64(2, 3, 8, seed=5) * 2.0
    np.testing.assert_allclose(ffn(x).detach().numpy(), ffn_oracle(ffn, x.numpy()), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_feedforward_eval_mode_ignores_dropout_matches_formula(activation):
    torch.manual_seed(6)
    ffn = FeedForward(8, 20, activation=activation, dropout=0.5).double().eval()
    x = randn64(2, 3, 8, seed=6) * 2.0
    np.testing.assert_allclose(ffn(x).detach().numpy(), ffn_oracle(ffn, x.numpy()), atol=1e-12, rtol=1e-12)


def _hidden_oracle(ffn: FeedForward, x: np.ndarray) -> np.ndarray:
    """The activation fed to the second matrix (before dropout), in float64."""
    if ffn.activation == "swiglu":
        gate = linear(x, ffn.w_gate)
        return gate / (1.0 + np.exp(-gate)) * linear(x, ffn.w_up)
    return act_oracle(ffn.activation, linear(x, ffn.w_1))


@pytest.mark.parametrize("activation", ["relu", "swiglu"])
def test_feedforward_train_dropout_on_hidden_is_inverted_dropout(activation):
    """Inverted dropout (Srivastava et al., 2014) on the hidden layer.

    out = W2 (m * h / (1 - p)) + b2 with m ~ Bernoulli(1 - p).

    The oracle solves for the kept units: each output row is an affine function of the
    dropped hidden vector, so we check that out - b2 lies in {W2 (m * h) / (1 - p)} by
    recovering m by least squares from the float64 formula (d_ff < d_model keeps it exact),
    and that both kept and dropped units occur.
    """
    torch.manual_seed(3)
    p = 0.5
    ffn = FeedForward(24, 10, activation, dropout=p).double().train()
    x = randn64(4, 5, 24, seed=3)
    out = ffn(x).detach().numpy()
    second = ffn.w_down if activation == "swiglu" else ffn.w_2
    w2 = second.weight.detach().numpy()  # (d_model, d_ff)
    b2 = 0.0 if second.bias is None else second.bias.detach().numpy()
    hidden = _hidden_oracle(ffn, x.numpy())  # (..., d_ff)
    scaled, *_ = np.linalg.lstsq(w2, (out - b2).reshape(-1, 24).T, rcond=None)  # (d_ff, rows) = m * h / (1 - p)
    keep = scaled.T.reshape(hidden.shape) * (1 - p)  # m * h
    kept = np.isclose(keep, hidden, atol=1e-9)
    dropped = np.isclose(keep, 0.0, atol=1e-9)
    assert (kept | dropped).all(), "every hidden unit is either kept (scaled by 1/(1-p)) or zeroed"
    assert (kept & ~dropped).any() and (dropped & ~kept).any()


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_feedforward_backward_gradients_reach_every_parameter(activation):
    torch.manual_seed(4)
    ffn = FeedForward(6, 12, activation)
    x = torch.randn(2, 3, 6, requires_grad=True)
    ffn(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in ffn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_feedforward_gradcheck_float64(activation):
    torch.manual_seed(5)
    ffn = FeedForward(3, 5, activation).double()
    x = randn64(2, 3).requires_grad_()
    assert torch.autograd.gradcheck(ffn, (x,))


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

def test_feedforward_init_unknown_activation_lists_valid():
    with pytest.raises(ValueError, match=r"unknown activation 'tanh'.*'relu', 'gelu', 'gelu_tanh', 'swiglu'"):
        FeedForward(8, activation="tanh")


@pytest.mark.parametrize("name, kwargs", [("d_model", {"d_model": 0}), ("d_ff", {"d_model": 4, "d_ff": 0})])
def test_feedforward_init_nonpositive_width_raises(name, kwargs):
    with pytest.raises(ValueError, match=rf"{name} must be >= 1, got 0"):
        FeedForward(**kwargs)


def test_feedforward_init_float_d_ff_raises_type_error():
    with pytest.raises(TypeError, match="d_ff must be an int, got float"):
        FeedForward(4, 10.5)


@pytest.mark.parametrize("dropout", [-0.1, 1.5])
def test_feedforward_init_dropout_out_of_range_raises(dropout):
    with pytest.raises(ValueError, match=r"dropout must be a probability in \[0, 1\]"):
        FeedForward(4, dropout=dropout)


def test_feedforward_forward_wrong_width_raises():
    with pytest.raises(ValueError, match=r"d_model=8.*\(2, 3, 5\)"):
        FeedForward(8)(torch.zeros(2, 3, 5))


def test_feedforward_docstring_examples_run():
    torch.manual_seed(0)
    assert doctest.testmod(feedforward).failed == 0
