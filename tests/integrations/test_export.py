"""torch.export: MultiHeadAttention, TransformerLM and the translation Transformer export with a dynamic
sequence length, with padding masks, and with the tiled backend at static lengths; the exported
program run at other lengths equals eager, which is itself checked against the float64 reference."""

import pytest
import torch
from torch import nn
from torch.export import Dim, export

from attnkit import masks
from attnkit.functional.reference import reference_attention
from attnkit.nn import MultiHeadAttention, Transformer, TransformerConfig, TransformerLM

L = Dim("L", min=2, max=1024)  # beyond tiled's and sdpa's length thresholds: nothing may fix the length


class Masked(nn.Module):
    """``mha(x, mask)`` with a mask built inside forward (the way a model builds it)."""

    def __init__(self, mha: MultiHeadAttention, make_mask):
        super().__init__()
        self.mha, self.make_mask = mha, make_mask

    def forward(self, x, lengths):
        return self.mha(x, mask=self.make_mask(lengths))


def mha_oracle(mha: MultiHeadAttention, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """The module's three steps by hand in float64, with the float64 reference (independent of dispatch)."""
    m = mha.double()
    x = x.double()
    B, Lx, _ = x.shape
    q = m.w_q(x).view(B, Lx, m.num_heads, m.d_k).transpose(1, 2)  # (B, L, H*d) -> (B, H, L, d)
    G = m.num_heads // m.num_kv_heads
    k, v = (w(x).view(B, Lx, m.num_kv_heads, m.d_k).transpose(1, 2).repeat_interleave(G, 1) for w in (m.w_k, m.w_v))
    out = reference_attention(q, k, v, masks.dense(allowed))[0]  # (B, H, L, d)
    out = m.w_o(out.transpose(1, 2).reshape(B, Lx, -1))  # (B, L, H*d) -> (B, L, d_model)
    mha.float()
    return out


@pytest.mark.parametrize("backend", ["auto", "sdpa"])
def test_multi_head_attention_exports_with_dynamic_length_and_padding(backend):
    torch.manual_seed(0)
    mha = MultiHeadAttention(4, 16, num_kv_heads=2, backend=backend).eval()
    model = Masked(mha, lambda lengths: masks.padding(lengths) & masks.causal())
    x, lengths = torch.randn(2, 10, 16), torch.tensor([10, 4])
    program = export(model, (x, lengths), dynamic_shapes=({1: L}, None))
    for Lx, lens in ((10, [10, 4]), (23, [5, 23]), (3, [0, 3])):
        x, lengths = torch.randn(2, Lx, 16), torch.tensor(lens)
        got = program.module()(x, lengths)
        torch.testing.assert_close(got, model(x, lengths), rtol=0, atol=1e-6)
        idx = torch.arange(Lx)
        allowed = (idx[None, :] < lengths[:, None])[:, None, None] & (idx[None, :] <= idx[:, None])  # (B, 1, L, L)
        torch.testing.assert_close(got.double(), mha_oracle(mha, x, allowed), rtol=0, atol=1e-5)


def tiny_lm(backend="auto"):
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=31, d_model=16, num_heads=4, num_kv_heads=2, d_ff=32, num_encoder_layers=0,
                            num_decoder_layers=2, positional="rotary", backend=backend)  # fmt: skip
    return TransformerLM(cfg).eval()


def test_transformer_lm_exports_with_dynamic_length():
    lm = tiny_lm()
    program = export(lm, (torch.randint(0, 31, (2, 10)),), dynamic_shapes=({1: L},))
    for length in (10, 17, 600):  # 600: tiled's territory in eager (Lq * Lk above TILED_MIN_PAIRS)
        ids = torch.randint(0, 31, (2, length))
        torch.testing.assert_close(program.module()(ids), lm(ids), rtol=0, atol=1e-5)


def test_translation_transformer_exports_with_dynamic_lengths_and_padding():
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=31, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=1,
                            num_decoder_layers=1, positional="sinusoidal")  # fmt: skip
    mt = Transformer(cfg).eval()
    src, tgt = torch.randint(3, 31, (2, 10)), torch.randint(3, 31, (2, 6))
    program = export(mt, (src, tgt), dynamic_shapes=({1: Dim("S", max=512)}, {1: Dim("T", max=512)}))
    for S, T in ((10, 6), (13, 9), (4, 2)):
        src, tgt = torch.randint(3, 31, (2, S)), torch.randint(3, 31, (2, T))
        src[1, S // 2 :] = cfg.pad_id  # right padding
        src[0, 0] = cfg.pad_id  # and padding at the front (a dense mask in eager)
        tgt[1, T // 2 :] = cfg.pad_id
        torch.testing.assert_close(program.module()(src, tgt), mt(src, tgt), rtol=0, atol=1e-5)


def test_tiled_backend_exports_at_static_length():
    lm = tiny_lm(backend="tiled")
    window = nn.Module()
    window.forward = lambda ids: lm(ids, masks.sliding_window(3) | masks.prefix_lm(2))  # type: ignore[method-assign]
    ids = torch.randint(0, 31, (2, 10))
    for model in (lm, window):
        program = export(model, (ids,))
        other = torch.randint(0, 31, (2, 10))
        torch.testing.assert_close(program.module()(other), model(other), rtol=0, atol=1e-6)
    padded = Masked(MultiHeadAttention(4, 16, backend="tiled").eval(), masks.padding)
    x = torch.randn(2, 10, 16)
    program = export(padded, (x, torch.tensor([10, 4])))
    for lens in ([10, 4], [3, 0]):
        torch.testing.assert_close(program.module()(x, torch.tensor(lens)), padded(x, torch.tensor(lens)),
                                   rtol=0, atol=1e-6)  # fmt: skip


def test_tiled_backend_at_a_dynamic_length_says_what_to_do():
    mha = MultiHeadAttention(2, 8, backend="tiled").eval()
    with pytest.raises(ValueError, match="torch.export needs them static"):
        export(mha, (torch.randn(1, 6, 8),), dynamic_shapes=({1: L},))


def test_padding_from_a_bool_mask_exports_whatever_side_the_padding_is_on():
    """masks.padding(bool (B, L)) checks right padding in eager mode; a traced graph cannot, so it uses the
    bool tensor as a dense mask: the exported program is right for left padding too."""
    torch.manual_seed(0)
    model = Masked(MultiHeadAttention(2, 8).eval(), masks.padding)
    x, real = torch.randn(2, 6, 8), torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    program = export(model, (x, real), dynamic_shapes=({1: L}, {1: L}))
    left = torch.tensor([[False, False, True, True, True], [True] * 5])  # left padding: eager refuses it
    x5 = torch.randn(2, 5, 8)
    allowed = left[:, None, None, :].expand(2, 1, 5, 5)  # (B, 1, L, L)
    torch.testing.assert_close(program.module()(x5, left).double(), mha_oracle(model.mha, x5, allowed),
                               rtol=0, atol=1e-5)  # fmt: skip
