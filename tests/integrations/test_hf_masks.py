"""The "attnkit" mask function against transformers' own masks, case by case.

The oracle is transformers itself: the same ``create_*_mask`` call with the model set to
``eager`` builds the dense float mask its eager backend adds to the scores (0 = may attend),
from the same config, padding, cache and position ids. The attnkit mask, made dense, must
equal it; and where the mask function is one attnkit reads back, it must stay structured
(no dense leaf) so the tiled backend can skip tiles.

Shape legend: B batch, Lq queries, Lk keys.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")
from transformers import BertConfig, LlamaConfig, MistralConfig  # noqa: E402
from transformers import masking_utils as hf  # noqa: E402
from transformers.cache_utils import DynamicCache, StaticCache  # noqa: E402

from attnkit import masks  # noqa: E402
from attnkit.functional import explain  # noqa: E402
from attnkit.integrations.transformers import StructuredMask, register  # noqa: E402
from attnkit.masks import EMPTY  # noqa: E402

NAME = register()
D = 8  # hidden size of the fake inputs_embeds


def llama_config(**extra) -> LlamaConfig:
    return LlamaConfig(vocab_size=32, hidden_size=D, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=1, **extra)  # fmt: skip


def mistral_config(window: int = 4) -> MistralConfig:
    return MistralConfig(vocab_size=32, hidden_size=D, intermediate_size=16, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, sliding_window=window)  # fmt: skip


def both(create, config, Lq: int, Lk: int, **kwargs) -> tuple[masks.Mask | None, torch.Tensor]:
    """(attnkit's structured mask, transformers' eager mask as bool (B, 1, Lq, Lk)) for one create_* call."""
    config._attn_implementation = "eager"
    dense = create(config=config, **kwargs)
    config._attn_implementation = NAME
    ours = create(config=config, **kwargs)
    assert isinstance(ours, StructuredMask), type(ours)
    B = kwargs["inputs_embeds"].shape[0]
    expected = torch.ones(B, 1, Lq, Lk, dtype=torch.bool) if dense is None else dense == 0
    got = torch.ones(1, 1, Lq, Lk, dtype=torch.bool) if ours.mask is None else ours.mask.to_dense(Lq, Lk)
    assert torch.equal(got.expand_as(expected), expected), (ours.mask, got.int(), expected.int())
    return ours.mask, expected


def structured(mask) -> bool:
    return mask is None or "dense(" not in repr(mask)


def embeds(B: int, L: int) -> torch.Tensor:
    return torch.zeros(B, L, D)


def left_padding(B: int, L: int) -> torch.Tensor:
    pad = torch.arange(L)[None, :] >= torch.tensor([0, 3, L - 1][:B])[:, None]  # (B, L) real tokens on the right
    return pad.long()


def filled_cache(config, cache, B: int, past: int):
    """``cache`` after every layer stored ``past`` random key/value positions."""
    for layer in range(config.num_hidden_layers):
        kv = torch.randn(B, config.num_key_value_heads, past, config.head_dim or 4)
        cache.update(kv, kv, layer)
    return cache


# ---------------------------------------------------------------------- causal (Llama)
def test_causal_no_cache_left_padding_equals_eager_mask_and_stays_structured():
    mask, _ = both(hf.create_causal_mask, llama_config(), 11, 11, inputs_embeds=embeds(3, 11),
                   attention_mask=left_padding(3, 11), cache=None)  # fmt: skip
    assert structured(mask) and "causal()" in repr(mask) and "key_mask" in repr(mask)


@pytest.mark.parametrize("past,q", [(7, 1), (7, 3), (0, 5)])
def test_causal_dynamic_cache_equals_eager_mask(past, q):
    config = llama_config()
    cache = filled_cache(config, DynamicCache(config=config), 3, past) if past else DynamicCache(config=config)
    mask, _ = both(hf.create_causal_mask, config, q, past + q, inputs_embeds=embeds(3, q),
                   attention_mask=left_padding(3, past + q), cache=cache)  # fmt: skip
    assert structured(mask)


@pytest.mark.parametrize("past,q", [(0, 5), (5, 1), (5, 4)])
def test_causal_static_cache_is_aligned_top_left_and_equals_eager_mask(past, q):
    config = llama_config()
    cache = StaticCache(config=config, max_cache_len=16)
    if past:
        filled_cache(config, cache, 2, past)
    mask, _ = both(hf.create_causal_mask, config, q, 16, inputs_embeds=embeds(2, q),
                   attention_mask=left_padding(2, past + q), cache=cache)  # fmt: skip
    assert structured(mask) and (q == 1 or f"aligned(causal(), offset={past})" in repr(mask))


def test_causal_static_cache_without_padding_still_masks_unused_slots():
    config = llama_config()
    mask, expected = both(hf.create_causal_mask, config, 6, 16, inputs_embeds=embeds(1, 6), attention_mask=None,
                          cache=StaticCache(config=config, max_cache_len=16))  # fmt: skip
    assert not expected[0, 0, :, 6:].any() and structured(mask)


def test_packed_documents_from_position_ids_equal_eager_mask_and_are_a_document_mask():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 0, 1, 2]])
    mask, _ = both(hf.create_causal_mask, llama_config(), 9, 9, inputs_embeds=embeds(2, 9), attention_mask=None,
                   cache=None, position_ids=positions)  # fmt: skip
    assert structured(mask) and "document" in repr(mask)


# ---------------------------------------------------------------------- sliding window (Mistral)
@pytest.mark.parametrize("padding", [False, True])
def test_sliding_window_no_cache_equals_eager_mask(padding):
    mask, _ = both(hf.create_sliding_window_causal_mask, mistral_config(4), 13, 13, inputs_embeds=embeds(3, 13),
                   attention_mask=left_padding(3, 13) if padding else None, cache=None)  # fmt: skip
    assert structured(mask) and "sliding_window(4" in repr(mask)


@pytest.mark.parametrize("past,q", [(2, 1), (9, 1), (9, 3)])
def test_sliding_window_dynamic_cache_past_the_window_equals_eager_mask(past, q):
    config = mistral_config(4)
    cache = filled_cache(config, DynamicCache(config=config), 3, past)
    _, kv_offset = cache.get_mask_sizes(q, 0)
    Lk = cache.get_mask_sizes(q, 0)[0]
    mask, _ = both(hf.create_sliding_window_causal_mask, config, q, Lk, inputs_embeds=embeds(3, q),
                   attention_mask=left_padding(3, past + q), cache=cache)  # fmt: skip
    assert structured(mask) and (past < 4 or kv_offset > 0)


def test_sliding_window_static_cache_equals_eager_mask():
    config = mistral_config(4)
    cache = filled_cache(config, StaticCache(config=config, max_cache_len=12), 2, 2)
    Lk = cache.get_mask_sizes(3, 0)[0]
    mask, _ = both(hf.create_sliding_window_causal_mask, config, 3, Lk, inputs_embeds=embeds(2, 3),
                   attention_mask=left_padding(2, 5), cache=cache)  # fmt: skip
    assert structured(mask)


def test_sliding_window_mask_at_length_1024_leaves_most_tiles_empty_and_runs_tiled():
    mask, _ = both(hf.create_sliding_window_causal_mask, mistral_config(64), 1024, 1024,
                   inputs_embeds=embeds(1, 1024), attention_mask=None, cache=None)  # fmt: skip
    assert (mask.classify_tiles(1024, 1024, 128, 128) == EMPTY).float().mean() > 0.7
    q = k = v = torch.zeros(1, 2, 1024, 8)
    assert explain(q, k, v, mask).backend == "tiled"


# ---------------------------------------------------------------------- bidirectional (BERT) and others
def test_bidirectional_right_padding_equals_eager_mask():
    bert = BertConfig(vocab_size=32, hidden_size=D, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    padding = (torch.arange(7)[None] < torch.tensor([7, 4, 1])[:, None]).long()  # (3, 7)
    mask, _ = both(hf.create_bidirectional_mask, bert, 7, 7, inputs_embeds=embeds(3, 7), attention_mask=padding)
    assert repr(mask) == "key_mask(shape=(3, 7))"


def test_bidirectional_cross_attention_padding_equals_eager_mask():
    bert = BertConfig(vocab_size=32, hidden_size=D, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    padding = (torch.arange(9)[None] < torch.tensor([9, 2])[:, None]).long()  # (2, 9) encoder padding
    mask, _ = both(hf.create_bidirectional_mask, bert, 4, 9, inputs_embeds=embeds(2, 4), attention_mask=padding,
                   encoder_hidden_states=embeds(2, 9))  # fmt: skip
    assert structured(mask)


def test_bidirectional_sliding_window_equals_eager_mask():
    mask, _ = both(hf.create_bidirectional_sliding_window_mask, mistral_config(3), 12, 12,
                   inputs_embeds=embeds(2, 12), attention_mask=left_padding(2, 12))  # fmt: skip
    assert structured(mask) and "sliding_window(4, causal=False)" in repr(mask)


def test_unrecognized_mask_functions_fall_back_to_transformers_dense_mask_exactly():
    def every_other(batch_idx, head_idx, q_idx, kv_idx):  # a model's own overlay: not read back
        return kv_idx % 2 == 0

    mask, _ = both(hf.create_causal_mask, llama_config(), 10, 10, inputs_embeds=embeds(2, 10),
                   attention_mask=left_padding(2, 10), cache=None, or_mask_function=every_other)  # fmt: skip
    assert not structured(mask)
    chunked = llama_config(attention_chunk_size=3)
    mask, _ = both(hf.create_chunked_causal_mask, chunked, 10, 10, inputs_embeds=embeds(2, 10),
                   attention_mask=left_padding(2, 10), cache=None)  # fmt: skip
    assert not structured(mask)


# ---------------------------------------------------------------------- compositions, any offsets
COMPOSITIONS = {
    "overlay_alone": lambda: hf.sliding_window_overlay(3),
    "causal_or_overlay": lambda: hf.or_masks(hf.causal_mask_function, hf.sliding_window_overlay(2)),
    "causal_and_padding": lambda: hf.and_masks(hf.causal_mask_function,
                                               hf.padding_mask_function((torch.arange(12) % 3 != 0).expand(2, 12))),
    "bidirectional_window": lambda: hf.sliding_window_bidirectional_mask_function(2),
    "window_and_causal_reversed": lambda: hf.and_masks(hf.causal_mask_function, hf.sliding_window_overlay(4)),
}


@pytest.mark.parametrize("name", sorted(COMPOSITIONS))
@pytest.mark.parametrize("Lq,Lk,q_offset,kv_offset", [(6, 6, 0, 0), (3, 8, 5, 0), (4, 10, 0, 0), (3, 7, 6, 2)])
def test_structured_mask_equals_sdpa_mask_for_compositions_and_offsets(name, Lq, Lk, q_offset, kv_offset):
    from attnkit.integrations._hf_masks import structured_mask

    padding = (torch.arange(12)[None] >= torch.tensor([0, 2])[:, None]).long()  # (2, 12) left padding
    kwargs = dict(batch_size=2, q_length=Lq, kv_length=Lk, q_offset=q_offset, kv_offset=kv_offset,
                  mask_function=COMPOSITIONS[name](), attention_mask=padding.bool())  # fmt: skip
    want = hf.sdpa_mask(**kwargs, allow_is_causal_skip=False)  # (2, 1, Lq, Lk)
    got = structured_mask(**kwargs)
    assert structured(got)
    got = torch.ones(1, 1, Lq, Lk, dtype=torch.bool) if got is None else got.to_dense(Lq, Lk)
    assert torch.equal(got.expand_as(want), want), (got.int(), want.int())
