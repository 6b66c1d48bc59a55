"""Head gates and head pruning: a pruned module equals the gated one with those gates at 0 (float64 oracle)."""

from __future__ import annotations

import pytest
import torch

from attnkit import masks
from attnkit.lab.importance import attention_modules, prune_model, set_gates
from attnkit.nn import MultiHeadAttention, Transformer, TransformerConfig


def _mha(**kwargs) -> MultiHeadAttention:
    torch.manual_seed(0)
    return MultiHeadAttention(dropout=0.0, **kwargs).double().eval()


@pytest.mark.parametrize("heads", [[0], [1, 3], [0, 2, 4], [5]])
@pytest.mark.parametrize("d_k,d_v", [(None, None), (3, 5)])
def test_pruned_module_equals_gated_module_with_those_gates_at_zero(heads, d_k, d_v):
    mha = _mha(num_heads=6, d_model=12, d_k=d_k, d_v=d_v)
    x = torch.randn(2, 7, 12, dtype=torch.float64)
    gates = torch.ones(6, dtype=torch.float64)
    gates[heads] = 0.0
    mha.head_gates = gates
    expected = mha(x, mask=masks.causal())
    mha.head_gates = None
    mha.prune_heads(heads)
    assert mha.num_heads == 6 - len(heads) and mha.w_q.out_features == mha.num_heads * mha.d_k
    assert mha.w_o.in_features == mha.num_heads * mha.d_v
    torch.testing.assert_close(mha(x, mask=masks.causal()), expected, rtol=0, atol=1e-12)


def test_gates_of_ones_change_nothing_and_none_is_the_default():
    mha = _mha(num_heads=4, d_model=8)
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    assert mha.head_gates is None
    plain = mha(x)
    mha.head_gates = torch.ones(4, dtype=torch.float64)
    torch.testing.assert_close(mha(x), plain, rtol=0, atol=0)


def test_gate_zeroes_exactly_one_heads_contribution_to_the_concatenation():
    """Oracle by hand: head h's output times the columns of W^O that belong to it."""
    mha = _mha(num_heads=2, d_model=4, bias=False)
    x = torch.randn(1, 3, 4, dtype=torch.float64)
    full = mha(x)
    mha.head_gates = torch.tensor([1.0, 0.0], dtype=torch.float64)
    q, k, v = (w(x).view(1, 3, 2, 2).transpose(1, 2) for w in (mha.w_q, mha.w_k, mha.w_v))  # (1, 2, 3, 2)
    p = torch.softmax(q @ k.transpose(-1, -2) / 2**0.5, dim=-1)  # (1, 2, 3, 3)
    head1 = (p @ v)[:, 1]  # (1, 3, 2)
    torch.testing.assert_close(mha(x), full - head1 @ mha.w_o.weight[:, 2:].T, rtol=0, atol=1e-12)


def test_pruned_transformer_equals_gated_transformer_float64():
    config = TransformerConfig(vocab_size=30, d_model=16, num_heads=4, d_ff=32, num_encoder_layers=2,
                               num_decoder_layers=2, dropout=0.0)  # fmt: skip
    torch.manual_seed(1)
    model = Transformer(config).double().eval()
    src, tgt = torch.randint(3, 30, (3, 6)), torch.randint(3, 30, (3, 5))
    off = [("encoder.layers.0.self_attn", 1), ("encoder.layers.1.self_attn", 0), ("encoder.layers.1.self_attn", 3),
           ("decoder.layers.0.cross_attn", 2), ("decoder.layers.1.self_attn", 0)]  # fmt: skip
    set_gates(model, off)
    expected = model(src, tgt)
    for m in attention_modules(model).values():
        m.head_gates = None
    prune_model(model, off)
    assert attention_modules(model)["encoder.layers.1.self_attn"].num_heads == 2
    torch.testing.assert_close(model(src, tgt), expected, rtol=0, atol=1e-10)


def test_pruning_refuses_grouped_query_attention_all_heads_and_bad_indices():
    with pytest.raises(ValueError, match="grouped-query attention"):
        _mha(num_heads=4, d_model=8, num_kv_heads=2).prune_heads([0])
    with pytest.raises(ValueError, match="cannot remove all 4 heads"):
        _mha(num_heads=4, d_model=8).prune_heads([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"heads must be ints in \[0, 4\)"):
        _mha(num_heads=4, d_model=8).prune_heads([4])
    with pytest.raises(ValueError, match=r"head_gates must be a float tensor of shape \(num_heads,\) = \(4,\)"):
        _mha(num_heads=4, d_model=8).head_gates = torch.ones(3)


def test_pruning_keeps_alibi_slopes_of_the_kept_heads():
    mha = MultiHeadAttention(4, 8, dropout=0.0, alibi=True)
    slopes = mha.alibi.slopes.clone()
    mha.prune_heads([1, 2])
    torch.testing.assert_close(mha.alibi.slopes, slopes[[0, 3]])
    assert mha(torch.randn(1, 3, 8)).shape == (1, 3, 8)
