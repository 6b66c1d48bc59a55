"""Transformer stacks: parameter counts, layouts, padding/packing invariance, KV-cache equivalence."""

import math

import pytest
import torch

from attnkit import masks
from attnkit.nn import TransformerConfig
from attnkit.nn.transformer import Decoder, Encoder, EncoderLayer, Transformer, TransformerLM, key_padding_mask


def _tiny(**overrides):
    base = dict(vocab_size=31, d_model=16, num_heads=4, d_ff=32, num_encoder_layers=2, num_decoder_layers=2,
                dropout=0.0)  # fmt: skip
    return TransformerConfig(**{**base, **overrides})


def _count(model):
    return sum(p.numel() for p in model.parameters())


def _paper_count(V, d, d_ff, n_enc, n_dec):
    """Parameter count written out from the paper's architecture (shared embeddings, biases, 2 or 3 norms)."""
    attn = 4 * (d * d + d)
    ffn = d * d_ff + d_ff + d_ff * d + d
    norm = 2 * d
    return V * d + n_enc * (attn + ffn + 2 * norm) + n_dec * (2 * attn + ffn + 3 * norm)


def test_transformer_paper_base_parameter_count_about_65m():
    model = Transformer(TransformerConfig.paper_base())
    assert _count(model) == _paper_count(37000, 512, 2048, 6, 6)
    assert 60e6 < _count(model) < 66e6  # the paper reports 65M (table 3)


def test_transformer_paper_big_parameter_count_about_213m():
    model = Transformer(TransformerConfig.paper_big())
    assert _count(model) == _paper_count(37000, 1024, 4096, 6, 6)
    assert 205e6 < _count(model) < 220e6  # the paper reports 213M


def test_encoder_layer_post_ln_output_is_normalized_per_token():
    """Post-LN ends every layer with LayerNorm (unit weight at init): each token has mean 0, variance 1."""
    layer = EncoderLayer(_tiny(norm_first=False)).eval()
    y = layer(torch.randn(2, 5, 16) * 7 + 3)
    torch.testing.assert_close(y.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(2, 5), atol=1e-3, rtol=0)


def test_encoder_layer_pre_ln_keeps_the_residual_path():
    """Pre-LN: with the sublayers' output projections zeroed, the layer is the identity."""
    layer = EncoderLayer(_tiny(norm_first=True)).eval()
    with torch.no_grad():
        layer.self_attn.w_o.weight.zero_(), layer.self_attn.w_o.bias.zero_()
        layer.feed_forward.w_2.weight.zero_(), layer.feed_forward.w_2.bias.zero_()
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(layer(x), x)


def test_transformer_padded_batch_equals_unpadded_runs():
    torch.manual_seed(0)
    model = Transformer(_tiny()).double().eval()
    srcs = [torch.tensor([5, 6, 7, 8, 9]), torch.tensor([10, 11, 12])]
    tgts = [torch.tensor([1, 13, 14, 15]), torch.tensor([1, 16])]
    pad = lambda seqs: torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=0)  # noqa: E731
    batched = model(pad(srcs), pad(tgts))
    for i, (s, t) in enumerate(zip(srcs, tgts, strict=True)):
        alone = model(s[None], t[None])
        torch.testing.assert_close(batched[i, : len(t)], alone[0], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("positional", ["rotary", "sinusoidal", "learned"])
def test_lm_packed_documents_equal_separate_runs(positional):
    torch.manual_seed(1)
    model = TransformerLM(_tiny(num_encoder_layers=0, positional=positional)).double().eval()
    docs = [torch.tensor([3, 4, 5, 6]), torch.tensor([7, 8]), torch.tensor([9, 10, 11])]
    ids = torch.cat(docs)[None]  # (1, 9)
    doc_ids = torch.cat([torch.full((len(d),), i) for i, d in enumerate(docs)])
    positions = torch.cat([torch.arange(len(d)) for d in docs])[None]
    packed = model(ids, masks.causal() & masks.document(doc_ids), positions=positions)
    separate = torch.cat([model(d[None]) for d in docs], dim=1)
    torch.testing.assert_close(packed, separate, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("positional,num_kv_heads", [("rotary", 2), ("sinusoidal", None), ("alibi", 1)])
def test_lm_kv_cache_decoding_equals_full_recompute(positional, num_kv_heads):
    torch.manual_seed(2)
    cfg = _tiny(num_encoder_layers=0, positional=positional, num_kv_heads=num_kv_heads, norm="rmsnorm")
    model = TransformerLM(cfg).double().eval()
    ids = torch.randint(3, 31, (2, 10))
    full = model(ids)
    cache = model.new_cache()
    steps = [model(ids[:, :4], cache=cache)] + [model(ids[:, t : t + 1], cache=cache) for t in range(4, 10)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-10, rtol=1e-10)


def test_lm_logits_to_keep_returns_the_last_positions_of_the_full_logits():
    torch.manual_seed(4)
    model = TransformerLM(_tiny(num_encoder_layers=0, positional="rotary")).double().eval()
    ids = torch.randint(3, 31, (2, 7))
    full = model(ids)  # (2, 7, V)
    torch.testing.assert_close(model(ids, logits_to_keep=1), full[:, -1:], atol=1e-12, rtol=0)
    torch.testing.assert_close(model(ids, logits_to_keep=3), full[:, -3:], atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="logits_to_keep must be an int >= 0"):
        model(ids, logits_to_keep=-1)


@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer_kv_cache_decoding_equals_full_recompute(norm_first):
    torch.manual_seed(3)
    model = Transformer(_tiny(norm_first=norm_first)).double().eval()
    src = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
    tgt = torch.randint(3, 31, (2, 6))
    full = model(src, tgt)
    memory_mask = key_padding_mask(src, 0)
    memory = model.encode(src)
    cache = model.new_cache()
    steps = [model.decode(tgt[:, :1], memory, memory_mask=memory_mask, cache=cache)]
    steps += [model.decode(tgt[:, t : t + 1], None, memory_mask=memory_mask, cache=cache) for t in range(1, 6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-10, rtol=1e-10)


def test_transformer_tied_embeddings_share_one_matrix():
    model = Transformer(_tiny())
    assert model.src_embed.tokens.weight is model.tgt_embed.tokens.weight is model.generator.weight


def test_transformer_untied_target_vocabulary():
    model = Transformer(_tiny(tgt_vocab_size=17, tie_embeddings=False))
    assert model(torch.tensor([[4, 5]]), torch.tensor([[1]])).shape == (1, 1, 17)


def test_embedding_scaled_by_sqrt_d_model():
    cfg = _tiny(positional="none")
    model = Transformer(cfg).eval()
    ids = torch.tensor([[4, 5]])
    expected = model.src_embed.tokens.weight[ids] * math.sqrt(16)
    torch.testing.assert_close(model.src_embed(ids), expected)


def test_key_padding_mask_right_and_left_padding():
    right = key_padding_mask(torch.tensor([[4, 5, 0], [4, 0, 0]]), 0)
    assert right.to_dense(1, 3)[:, 0, 0].tolist() == [[True, True, False], [True, False, False]]
    left = key_padding_mask(torch.tensor([[0, 4, 5]]), 0)
    assert left.to_dense(1, 3)[0, 0, 0].tolist() == [False, True, True]
    assert key_padding_mask(torch.tensor([[4, 5]]), 0) is None


def test_encoder_and_decoder_stacks_have_final_norm_only_pre_ln():
    assert Encoder(_tiny(norm_first=True)).norm is not None
    assert Encoder(_tiny(norm_first=False)).norm is None
    assert Decoder(_tiny(norm_first=False)).norm is None


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(d_model=30, num_heads=4), "d_model=30 is not divisible by num_heads=4"),
        (dict(num_kv_heads=3), "multiple of num_kv_heads=3"),
        (dict(activation="tanh"), "activation must be one of"),
        (dict(positional="xpos"), "positional must be one of"),
        (dict(dropout=1.5), r"dropout must be a float in \[0, 1\), got 1.5"),
        (dict(tgt_vocab_size=40), "tie_embeddings=True needs one shared vocabulary"),
    ],
)
def test_config_errors_name_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        _tiny(**overrides)


@pytest.mark.parametrize(
    "overrides,error,match",
    [
        (dict(dropout="0.1"), TypeError, r"dropout must be a float in \[0, 1\), got '0.1' \(str\)"),
        (dict(attention_dropout=None), TypeError, r"attention_dropout must be a float in \[0, 1\), got None"),
        (dict(norm_eps=-1), ValueError, "norm_eps must be a positive finite float, got -1"),
        (dict(norm_eps=float("nan")), ValueError, "norm_eps must be a positive finite float, got nan"),
        (dict(rope_base=0.0), ValueError, "rope_base must be a positive finite float, got 0.0"),
        (dict(norm_first="no"), TypeError, "norm_first must be True or False, got 'no'"),
        (dict(tie_embeddings=1), TypeError, "tie_embeddings must be True or False, got 1"),
        (dict(pad_id=99), ValueError, r"pad_id=99 is outside the vocabulary \[0, 31\)"),
        (dict(pad_id=-1), ValueError, r"pad_id=-1 is outside the vocabulary \[0, 31\)"),
        (dict(eos_id=31), ValueError, r"eos_id=31 is outside the vocabulary \[0, 31\)"),
        (dict(bos_id="1"), TypeError, "bos_id must be an int token id, got '1'"),
        (dict(num_decoder_layers=True), ValueError, "num_decoder_layers must be an int >= 0, got True"),
        (dict(backend="flash"), ValueError, r"backend must be one of \['auto', .*'tiled'\], got 'flash'"),
    ],
)
def test_config_rejects_bad_values_naming_field_expected_and_given(overrides, error, match):
    with pytest.raises(error, match=match):
        _tiny(**overrides)


def test_config_backend_names_come_from_dispatch_registry(monkeypatch):
    from attnkit.functional import dispatch

    monkeypatch.setitem(dispatch.BACKENDS, "extra", dispatch.BACKENDS["reference"])
    assert _tiny(backend="extra").backend == "extra"


def test_config_pad_id_checked_against_target_vocabulary_too():
    with pytest.raises(ValueError, match=r"pad_id=12 is outside the vocabulary \[0, 12\)"):
        _tiny(tgt_vocab_size=12, tie_embeddings=False, pad_id=12)


def test_config_round_trips_through_dict():
    cfg = TransformerConfig.paper_base()
    assert TransformerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown fields"):
        TransformerConfig.from_dict({**cfg.to_dict(), "n_layers": 3})


def test_transformer_requires_encoder_layers():
    with pytest.raises(ValueError, match="use TransformerLM"):
        Transformer(_tiny(num_encoder_layers=0))
