"""MultiHeadAttention against independent oracles: a per-head float64 loop, torch's nn.MultiheadAttention."""

import math

import pytest
import torch
from torch import nn

from attnkit import masks
from attnkit.nn import KVCache, MultiHeadAttention, RotaryEmbedding, masks_from_torch


def _head_projection(inp, weight, bias, i, d):
    """Head i of a projection, ``inp W_i^T + b_i`` with rows i*d .. (i+1)*d; bias is 0.0 for a layer without one."""
    return inp @ weight[i * d : (i + 1) * d].T + (bias[i * d : (i + 1) * d] if torch.is_tensor(bias) else 0)


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
            q = _head_projection(x[batch], W["w_q"], b["w_q"], h, dk)
            k = _head_projection(mem[batch], W["w_k"], b["w_k"], g, dk)
            v = _head_projection(mem[batch], W["w_v"], b["w_v"], g, dv)
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
    """The copied snippet unpacks nn.MultiheadAttention's (output, weights) as q, k, v and fails; ours is a tensor."""
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


def test_mha_eval_ignores_dropout_matches_oracle():
    torch.manual_seed(9)
    mha = MultiHeadAttention(2, 16, dropout=0.5).double().eval()
    x = torch.randn(1, 8, 16, dtype=torch.float64)
    torch.testing.assert_close(mha(x), _oracle(mha, x), atol=1e-12, rtol=0)


def test_mha_train_dropout_is_unbiased_around_oracle():
    """Inverted dropout on the attention weights keeps E[output] = the eval output (the output is linear in P).

    The mean of N training passes must sit within 5 standard errors of the float64 oracle, and
    single passes must differ from it (dropout acts).
    """
    torch.manual_seed(9)
    mha = MultiHeadAttention(2, 16, dropout=0.5).double().train()
    x = torch.randn(1, 6, 16, dtype=torch.float64)
    with torch.no_grad():
        runs = torch.stack([mha(x) for _ in range(3000)])  # (N, 1, 6, 16)
    expected = _oracle(mha, x)
    stderr = runs.std(dim=0) / math.sqrt(runs.shape[0])
    assert ((runs.mean(dim=0) - expected).abs() <= 5 * stderr + 1e-12).all()
    assert ((runs - expected).abs().amax(dim=(1, 2, 3)) > 1e-6).all()


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


# ---------------------------------------------------------------------------
# a failed call leaves the KV cache as it was
# ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "bad",
    [
        dict(mask=masks.dense(torch.ones(1, 1, 1, 9, dtype=torch.bool))),  # rejected by attention() after projecting
        dict(attn_bias=torch.zeros(1, 1, 1, 9, dtype=torch.float64)),
    ],
    ids=["mask-shape", "bias-shape"],
)
def test_mha_failed_call_leaves_kv_cache_unchanged(bad):
    torch.manual_seed(11)
    mha = MultiHeadAttention(2, 16, dropout=0.0).double().eval()
    x = torch.randn(1, 5, 16, dtype=torch.float64)
    cache, fresh = KVCache(), KVCache()
    mha(x[:, :3], mask=masks.causal(), cache=cache)
    mha(x[:, :3], mask=masks.causal(), cache=fresh)
    with pytest.raises(ValueError):
        mha(x[:, 3:4], cache=cache, **bad)
    assert cache.length == 3
    step = mha(x[:, 3:4], cache=cache)
    torch.testing.assert_close(step, mha(x[:, 3:4], cache=fresh), atol=0, rtol=0)
    torch.testing.assert_close(step, _oracle(mha, x[:, :4])[:, 3:], atol=1e-12, rtol=0)


def test_mha_failed_first_cross_attention_call_leaves_static_cache_empty():
    torch.manual_seed(12)
    mha = MultiHeadAttention(2, 16, dropout=0.0).double().eval()
    x, mem = torch.randn(1, 1, 16, dtype=torch.float64), torch.randn(1, 4, 16, dtype=torch.float64)
    cache = KVCache(static=True)
    with pytest.raises(ValueError):
        mha(x, mem, mem, masks.dense(torch.ones(1, 1, 1, 7, dtype=torch.bool)), cache=cache)
    assert cache.length == 0
    torch.testing.assert_close(mha(x, mem, mem, cache=cache), _oracle(mha, x, mem), atol=1e-12, rtol=0)


def test_kv_cache_append_wrong_head_dim_raises_before_mutating():
    cache = KVCache()
    cache.append(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"holds \(Hkv, d_k, d_v\) = \(2, 4, 4\) but got \(2, 5, 4\)"):
        cache.append(torch.zeros(1, 2, 1, 5), torch.zeros(1, 2, 1, 4))
    assert cache.length == 3


# ---------------------------------------------------------------------------
# errors that teach
# ---------------------------------------------------------------------------

def test_mha_forward_float64_input_into_float32_module_names_dtypes():
    mha = MultiHeadAttention(2, 16)
    with pytest.raises(TypeError, match=r"query has dtype torch.float64 but the module's weights are torch.float32"):
        mha(torch.randn(1, 3, 16, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"key has dtype torch.float64"):
        mha(torch.randn(1, 3, 16), torch.randn(1, 4, 16, dtype=torch.float64))


def test_mha_forward_autocast_mixed_dtypes_still_run():
    mha = MultiHeadAttention(2, 16, dropout=0.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert mha(torch.randn(1, 3, 16)).shape == (1, 3, 16)


def test_mha_forward_torch_style_float_mask_in_key_slot_points_to_masks_from_torch():
    mha = MultiHeadAttention(2, 16)
    with pytest.raises(TypeError, match=r"float32 tensor of shape \(10, 10\).*attnkit Mask objects or bool tensors"
                                        r".*attnkit.nn.masks_from_torch"):
        mha(torch.randn(1, 10, 16), torch.zeros(10, 10))


def test_mha_forward_float_mask_keyword_points_to_masks_from_torch():
    mha = MultiHeadAttention(2, 16)
    with pytest.raises(TypeError, match=r"mask is a torch.float32 tensor.*masks_from_torch"):
        mha(torch.randn(1, 10, 16), mask=torch.zeros(10, 10))


def test_mha_float_mask_converted_with_masks_from_torch_matches_torch():
    torch.manual_seed(13)
    ref = nn.MultiheadAttention(16, 2, batch_first=True, dtype=torch.float64).eval()
    mha = MultiHeadAttention.from_torch(ref).eval()
    x = torch.randn(1, 10, 16, dtype=torch.float64)
    float_mask = torch.zeros(10, 10, dtype=torch.float64).masked_fill(torch.ones(10, 10).triu(1).bool(), float("-inf"))
    mask, bias = masks_from_torch(float_mask)
    expected, _ = ref(x, x, x, attn_mask=float_mask)
    torch.testing.assert_close(mha(x, mask=mask, attn_bias=bias), expected, atol=1e-12, rtol=0)


def test_mha_backend_unknown_lists_registry_names():
    from attnkit.functional.dispatch import BACKENDS

    names = ", ".join(f"'{n}'" for n in sorted(BACKENDS))
    with pytest.raises(ValueError, match=r"backend must be one of \['auto', " + names + r"\], got 'flash'"):
        MultiHeadAttention(2, 16, backend="flash")


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(bias="yes"), TypeError, "bias must be True or False, got 'yes'"),
        (dict(alibi=1), TypeError, "alibi must be True or False, got 1"),
        (dict(kdim=0), ValueError, "kdim must be a positive int, got 0"),
        (dict(vdim=2.5), ValueError, "vdim must be a positive int, got 2.5"),
    ],
)
def test_mha_constructor_flag_and_width_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        MultiHeadAttention(2, 16, **kwargs)
