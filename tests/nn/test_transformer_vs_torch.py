"""The encoder-decoder Transformer against an independent implementation: ``torch.nn.Transformer``.

torch's module has no embeddings, positions or output projection, so the test computes those
from the paper (section 3.4 and 3.5) in float64 itself, runs ``torch.nn.Transformer`` with the
weights copied from attnkit, and compares the logits. Everything in float64, eval mode.
"""

import math

import pytest
import torch
from torch import nn

from attnkit.nn import Transformer, TransformerConfig

PAD = 0
pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")  # torch's note on norm_first=True


def _sinusoid(length: int, d_model: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...) (paper 3.5), float64."""
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    i = torch.arange(0, d_model, 2, dtype=torch.float64)[None]
    angle = pos / 10000.0 ** (i / d_model)  # (L, d/2)
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)  # (L, d/2, 2) -> (L, d)


def _copy_attention(dst: nn.MultiheadAttention, src) -> None:
    dst.in_proj_weight.copy_(torch.cat([src.w_q.weight, src.w_k.weight, src.w_v.weight]))  # (3d, d)
    dst.in_proj_bias.copy_(torch.cat([src.w_q.bias, src.w_k.bias, src.w_v.bias]))  # (3d,)
    dst.out_proj.weight.copy_(src.w_o.weight)
    dst.out_proj.bias.copy_(src.w_o.bias)


def _copy_norm(dst: nn.LayerNorm, src: nn.LayerNorm) -> None:
    dst.weight.copy_(src.weight)
    dst.bias.copy_(src.bias)


def _copy_feedforward(dst, src) -> None:
    for mine, theirs in ((src.w_1, dst.linear1), (src.w_2, dst.linear2)):
        theirs.weight.copy_(mine.weight)
        theirs.bias.copy_(mine.bias)


def _torch_twin(model: Transformer) -> nn.Transformer:
    cfg = model.config
    ref = nn.Transformer(
        cfg.d_model, cfg.num_heads, cfg.num_encoder_layers, cfg.num_decoder_layers, cfg.d_ff, dropout=0.0,
        layer_norm_eps=cfg.norm_eps, batch_first=True, norm_first=cfg.norm_first, dtype=torch.float64,
    )  # fmt: skip
    with torch.no_grad():
        for theirs, mine in zip(ref.encoder.layers, model.encoder.layers, strict=True):
            _copy_attention(theirs.self_attn, mine.self_attn)
            _copy_feedforward(theirs, mine.feed_forward)
            _copy_norm(theirs.norm1, mine.norm1)
            _copy_norm(theirs.norm2, mine.norm2)
        for theirs, mine in zip(ref.decoder.layers, model.decoder.layers, strict=True):
            _copy_attention(theirs.self_attn, mine.self_attn)
            _copy_attention(theirs.multihead_attn, mine.cross_attn)
            _copy_feedforward(theirs, mine.feed_forward)
            for n in ("norm1", "norm2", "norm3"):
                _copy_norm(getattr(theirs, n), getattr(mine, n))
        if cfg.norm_first:  # pre-LN: both end each stack with a norm
            _copy_norm(ref.encoder.norm, model.encoder.norm)
            _copy_norm(ref.decoder.norm, model.decoder.norm)
        else:  # post-LN: torch still adds a final norm per stack; the paper (and attnkit) has none
            ref.encoder.norm, ref.decoder.norm = None, None
    return ref.eval()


def _embed(model: Transformer, ids: torch.Tensor) -> torch.Tensor:
    """Paper 3.4: E[ids] * sqrt(d_model), plus the sinusoids of 3.5 (tied source/target embedding)."""
    E = model.src_embed.tokens.weight.detach()  # (V, d)
    d = E.shape[1]
    return E[ids] * math.sqrt(d) + _sinusoid(ids.shape[1], d)[None]  # (B, L, d)


def _randomize(model: nn.Module) -> None:
    """Norm gains/biases and projection biases off their 1/0 defaults, so a swapped norm or bias is seen."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-LN", "post-LN"])
def test_transformer_matches_torch_transformer_with_copied_weights_float64(norm_first):
    """attnkit's Transformer(src, tgt) = generator(torch.nn.Transformer(embed(src), embed(tgt), masks)).

    Masks: causal target self-attention; source padding (right-padded and left-padded rows, so
    both the structured and the dense padding mask are used) on encoder self-attention and on
    cross-attention; target padding (right-padded row) on decoder self-attention. Structure that
    differs is handled outside the compared part: torch has no embeddings, positions or output
    projection (computed here from the paper, tied weights), and with norm_first=False torch adds
    a final LayerNorm per stack that the paper's post-LN layout (and attnkit) does not have, so
    those two are removed from the torch model.
    """
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=23, d_model=16, num_heads=4, d_ff=40, num_encoder_layers=2,
                            num_decoder_layers=2, dropout=0.0, norm_first=norm_first, pad_id=PAD)  # fmt: skip
    model = Transformer(cfg).double().eval()
    _randomize(model)
    ref = _torch_twin(model)
    src = torch.randint(3, 23, (3, 7))
    src[1, 4:] = PAD  # right padding
    src[2, :2] = PAD  # left padding
    tgt = torch.randint(3, 23, (3, 5))
    tgt[0, 3:] = PAD  # right padding of the target

    T = tgt.shape[1]
    causal = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)  # torch: True = may NOT attend
    src_pad, tgt_pad = src == PAD, tgt == PAD  # torch: True = padding
    hidden = ref(_embed(model, src), _embed(model, tgt), tgt_mask=causal, src_key_padding_mask=src_pad,
                 tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad)  # (B, T, d)  # fmt: skip
    expected = hidden @ model.generator.weight.detach().T  # (B, T, d) @ (d, V) -> (B, T, V)

    got = model(src, tgt)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


def test_transformer_vs_torch_detects_a_planted_difference():
    """The comparison is sharp: dropping the source padding mask on attnkit's side changes the logits."""
    torch.manual_seed(1)
    cfg = TransformerConfig(vocab_size=23, d_model=16, num_heads=4, d_ff=40, num_encoder_layers=1,
                            num_decoder_layers=1, dropout=0.0, pad_id=PAD)  # fmt: skip
    model = Transformer(cfg).double().eval()
    _randomize(model)
    ref = _torch_twin(model)
    src = torch.randint(3, 23, (2, 6))
    src[1, 3:] = PAD
    tgt = torch.randint(3, 23, (2, 4))
    causal = torch.triu(torch.ones(4, 4, dtype=torch.bool), 1)
    expected = ref(_embed(model, src), _embed(model, tgt), tgt_mask=causal, src_key_padding_mask=src == PAD,
                   memory_key_padding_mask=src == PAD) @ model.generator.weight.detach().T  # fmt: skip
    from attnkit import masks

    unmasked = model(src, tgt, src_mask=masks.dense(torch.ones(1, 1, 1, 6, dtype=torch.bool)))
    assert (unmasked - expected).abs().max() > 1e-3
    torch.testing.assert_close(model(src, tgt), expected, atol=1e-10, rtol=1e-10)
