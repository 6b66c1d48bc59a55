"""MultiHeadAttention against independent oracles: a per-head float64 loop, torch's nn.MultiheadAttention."""

import math

import pytest
import torch
from torch import nn

from attnkit import masks
from attnkit.nn import KVCache, MultiHeadAttention, RotaryEmbedding, masks_from_torch


def _oracle(mha: MultiHeadAttention, x, mem=None, allowed=None, rope_base=None):
    """Per-head loop in float64 written from the paper's formulas, reading only the module's weights."""
    mem = x if mem is None else mem
    W = {n: getattr(mha, n).weight.double() for n in ("w_q", "w_k", "w_v", "w_o")}
    b = {n: (getattr(mha, n).bias.double() if getattr(mha, n).bias is not None else 0.0) for n in W}
    x, mem = x.double(), mem.double()
    H, Hkv, dk, dv = mha.num_heads, mha.num_kv_heads, mha.d_k, mha.d_v
    Lq, Lk = x.shape[1], mem.shape[1]
    outs = []
    for batch in range(x.shape[0]):
        heads = []
        for h in range(H):
            g = h // (H // Hkv)
            q = x[batch] @ W["w_q"][h * dk : (h + 1) * dk].T + (b["w_q"][h * dk : (h + 1) * dk] if mha.w_q.bias is not None else 0)
            k = mem[batch] @ W["w_k"][g * dk : (g + 1) * dk].T + (b["w_k"][g * dk : (g + 1) * dk] if mha.w_k.bias is not None else 0)
            v = mem[batch] @ W["w_v"][g * dv : (g + 1) * dv].T + (b["w_v"][g * dv : (g + 1) * dv] if mha.w_v.bias is not None else 0)
            if rope_base is not None:
                q, k = _rope_half(q, Lk - Lq, rope_base), _rope_half(k, 0, rope_base)
            s = q @ k.T / math.sqrt(dk)
            if allowed is not None:
                s = s.masked_fill(~allowed[batch], float("-inf"))
            p = torch.softmax(s, dim=-1).nan_to_num(0.0)
            heads.append(p @ v)
        outs.append(torch.cat(heads, dim=-1) @ W["w_o"].T + b["w_o"])
    return torch.stack(outs)


def _rope_half(x, start, base):
    """RoPE in the rotate-half layout, written out with explicit angles."""
    L, d = x.shape
    pos = torch.arange(start, start + L, dtype=torch.float64)[:, None]
    inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = pos * inv[None]
    a, b = x[:, : d // 2], x[:, d // 2 :]
    return torch.cat([a * ang.cos() - b * ang.sin(), a * ang.sin() + b * ang.cos()], dim=-1)


def test_mha_classic_constructor_positional_order_and_mask_in_second_slot():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 512, 64, 64, 0.1).eval()
    x = torch.randn(2, 10, 512)
    assert mha(x).shape == (2, 10, 512)
    causal = torch.tril(torch.ones(10, 10, dtype=torch.bool))
    expected = _oracle(mha, x, allowed=causal.expand(2, 10, 10))
    torch.testing.assert_close(mha(x, masks.causal()).double(), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mha(x, causal).double(), expected, atol=1e-5, rtol=1e-5)


def test_mha_broken_snippet_pattern_is_not_needed():
    """The copied snippet unpacks nn.MultiheadAttention's (output, weights) as q, k, v and fails; ours returns a tensor."""
    torch_mha = nn.MultiheadAttention(32, 4, batch_first=True)
    with pytest.raises(ValueError):
        q, k, v = torch_mha(torch.randn(1, 3, 32), torch.randn(1, 3, 32), torch.randn(1, 3, 32))  # 2 values, not 3
    out = MultiHeadAttention(4, 32, 8, 8, 0.1)(torch.randn(1, 3, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 32)


@pytest.mark.parametrize("num_kv_heads,d_k,d_v", [(4, 8, 8), (2, 8, 12), (1, 6, 4)])
def test_mha_matches_per_head_oracle_gqa_and_unequal_dims(num_kv_heads, d_k, d_v):
    torch.manual_seed(1)
    mha = MultiHeadAttention(4, 24, d_k, d_v, 0.0, num_kv_heads=num_kv_heads).double()
    x, mem = torch.randn(3, 5, 24, dtype=torch.float64), torch.randn(3, 7, 24, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 1])
    allowed = (torch.arange(7)[None, None, :] < lengths[:, None, None]).expand(3, 5, 7)
    out = mha(x, mem, mem, masks.padding(lengths))
    torch.testing.assert_close(out, _oracle(mha, x, mem, allowed), atol=1e-10, rtol=1e-10)


def test_mha_need_weights_rows_sum_to_one_per_head():
    torch.manual_seed(2)
    mha = MultiHeadAttention(3, 12, dropout=0.0)
    out, w = mha(torch.randn(2, 6, 12), mask=masks.causal(), need_weights=True)
    assert w.shape == (2, 3, 6, 6)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 6))
    assert torch.all(w.triu(1) == 0)


@pytest.mark.parametrize("batch_first", [True, False])
def test_mha_from_torch_matches_torch_with_masks(batch_first):
    torch.manual_seed(3)
    ref = nn.MultiheadAttention(32, 4, batch_first=batch_first).eval()
    ours = MultiHeadAttention.from_torch(ref).eval()
    x, mem = torch.randn(2, 5, 32), torch.randn(2, 6, 32)
    blocked = torch.rand(5, 6) > 0.6
    blocked[:, 0] = False
    kpm = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    args = (x, mem, mem) if batch_first else (x.transpose(0, 1), mem.transpose(0, 1), mem.transpose(0, 1))
    expected, _ = ref(*args, attn_mask=blocked, key_padding_mask=kpm)
    expected = expected if batch_first else expected.transpose(0, 1)
    mask, bias = masks_from_torch(blocked, kpm)
    torch.testing.assert_close(ours(x, mem, mem, mask, attn_bias=bias), expected, atol=1e-5, rtol=1e-5)


def test_mha_from_torch_float_mask_becomes_bias():
    torch.manual_seed(4)
    ref = nn.MultiheadAttention(16, 2, batch_first=True).eval()
    ours = MultiHeadAttention.from_torch(ref).eval()
    x = torch.randn(1, 4, 16)
    float_mask = torch.randn(4, 4)
    expected, _ = ref(x, x, x, attn_mask=float_mask)
    mask, bias = masks_from_torch(float_mask)
    assert mask is None
    torch.testing.assert_close(ours(x, attn_bias=bias), expected, atol=1e-5, rtol=1e-5)


def test_mha_to_torch_round_trip_matches_within_1e5():
    torch.manual_seed(5)
    ours = MultiHeadAttention(4, 32, dropout=0.0, kdim=20, vdim=12).eval()
    theirs = ours.to_torch().eval()
    x, k, v = torch.randn(2, 5, 32), torch.randn(2, 7, 20), torch.randn(2, 7, 12)
    torch.testing.assert_close(ours(x, k, v), theirs(x, k, v)[0], atol=1e-5, rtol=1e-5)


def test_mha_to_torch_refuses_gqa_with_reason():
    with pytest.raises(ValueError, match="num_kv_heads=2"):
        MultiHeadAttention(4, 32, num_kv_heads=2).to_torch()


def test_mha_from_torch_refuses_bias_kv():
    with pytest.raises(ValueError, match="add_bias_kv"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(16, 2, add_bias_kv=True))


def test_mha_rotary_matches_explicit_rotation_oracle():
    torch.manual_seed(6)
    mha = MultiHeadAttention(2, 16, dropout=0.0, rotary=RotaryEmbedding(8)).double()
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    allowed = torch.tril(torch.ones(6, 6, dtype=torch.bool)).expand(2, 6, 6)
    expected = _oracle(mha, x, allowed=allowed, rope_base=10000.0)
    torch.testing.assert_close(mha(x, masks.causal()), expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("rotary,alibi,num_kv_heads", [(False, False, 4), (True, False, 2), (False, True, 1)])
def test_mha_kv_cache_decoding_equals_full_recompute_every_position(rotary, alibi, num_kv_heads):
    torch.manual_seed(7)
    rope = RotaryEmbedding(8) if rotary else None
    mha = MultiHeadAttention(4, 32, dropout=0.0, num_kv_heads=num_kv_heads, rotary=rope, alibi=alibi).double()
    x = torch.randn(2, 9, 32, dtype=torch.float64)
    full = mha(x, masks.causal())
    cache = KVCache()
    prefix = mha(x[:, :3], masks.causal(), cache=cache)  # a 3-token prompt, then one token at a time
    steps = [prefix] + [mha(x[:, t : t + 1], masks.causal(), cache=cache) for t in range(3, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-12, rtol=1e-12)
    assert cache.length == 9


def test_mha_static_cache_projects_memory_once():
    torch.manual_seed(8)
    mha = MultiHeadAttention(2, 16, dropout=0.0).double()
    x, mem = torch.randn(1, 4, 16, dtype=torch.float64), torch.randn(1, 5, 16, dtype=torch.float64)
    cache = KVCache(static=True)
    first = mha(x[:, :1], mem, mem, cache=cache)
    second = mha(x[:, 1:2], mem * 0, mem * 0, cache=cache)  # the memory is not read again
    torch.testing.assert_close(torch.cat([first, second], 1), mha(x[:, :2], mem, mem))


def test_kv_cache_select_batch_reorders_rows():
    cache = KVCache()
    k = torch.arange(3.0).view(3, 1, 1, 1)
    cache.append(k, k)
    cache.select_batch(torch.tensor([2, 2, 0]))
    assert cache.keys.flatten().tolist() == [2.0, 2.0, 0.0]


def test_mha_dropout_only_in_training():
    torch.manual_seed(9)
    mha = MultiHeadAttention(2, 16, dropout=0.5)
    x = torch.randn(1, 8, 16)
    mha.eval()
    torch.testing.assert_close(mha(x), mha(x))
    mha.train()
    assert not torch.allclose(mha(x), mha(x))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_heads=3, d_model=32), "not divisible by num_heads=3"),
        (dict(num_heads=4, d_model=32, num_kv_heads=3), "multiple of num_kv_heads=3"),
        (dict(num_heads=4, d_model=32, dropout=1.0), r"dropout must be a float in \[0, 1\)"),
        (dict(num_heads=0, d_model=32), "num_heads must be a positive int"),
        (dict(num_heads=4, d_model=32, rotary=RotaryEmbedding(4)), "head_dim == d_k == 8"),
    ],
)
def test_mha_constructor_errors_name_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiHeadAttention(**kwargs)


def test_mha_forward_errors_name_argument():
    mha = MultiHeadAttention(2, 16)
    with pytest.raises(ValueError, match=r"query must be \(B, L, d_model=16\), got \(3, 16\)"):
        mha(torch.randn(3, 16))
    with pytest.raises(ValueError, match=r"key must be \(B, Lk, 16\)"):
        mha(torch.randn(1, 3, 16), torch.randn(1, 3, 8))
