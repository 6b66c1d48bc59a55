"""The convert-once cache of GGUF chat models (attnkit.pretrained.cache).

The oracle is the direct path: ``load_llama_gguf`` reads the same GGUF file without the
cache (itself checked against transformers in test_llama.py). Tiny GGUF files written
with ``gguf.GGUFWriter`` keep every conversion under a second; each test gets its own
cache folder through ``ATTNKIT_CACHE_DIR``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch

from attnkit.nn import TransformerConfig, TransformerLM, decode_layout
from attnkit.pretrained import cache
from attnkit.pretrained.chat import ChatModel
from attnkit.pretrained.llama import load_llama_gguf

TOKENS = ["<|im_end|>", "<|im_start|>", *"abcdefghij", "ab", "cd", "abcd"]  # 15 tokens
MERGES = ["a b", "c d", "ab cd"]
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"
def _tiny_model(seed: int, tie: bool = True) -> TransformerLM:
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=len(TOKENS), d_model=32, num_heads=4, num_kv_heads=2, head_dim=8, d_ff=64,
                            num_encoder_layers=0, num_decoder_layers=2, dropout=0.0, activation="swiglu",
                            norm="rmsnorm", positional="rotary", rope_base=500.0, bias=False, scale_embeddings=False,
                            tie_embeddings=tie, max_len=64)  # fmt: skip
    return TransformerLM(cfg).eval()


@pytest.fixture
def cache_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV_VAR, str(root))
    return root


@pytest.fixture
def write_chat_gguf(write_gguf):
    """``write_chat_gguf(path, model)``: a complete little chat GGUF (weights, BPE tokenizer, chat template)."""
    return lambda path, model: write_gguf(path, model, tokenizer=(TOKENS, MERGES, TEMPLATE))


@pytest.fixture
def tiny_gguf(tmp_path, write_chat_gguf) -> Path:
    return write_chat_gguf(tmp_path / "tiny.gguf", _tiny_model(0))


IDS = torch.tensor([[2, 5, 7, 1, 12, 14, 3], [4, 4, 9, 10, 11, 0, 6]])  # (2, 7)


def _logits(model: TransformerLM) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS)  # (2, 7, V)


def _direct(path: Path) -> torch.Tensor:
    """The oracle: the GGUF read directly (no cache), same decode layout."""
    return _logits(decode_layout(load_llama_gguf(path)))


# ---------------------------------------------------------------------- same model
@pytest.mark.parametrize("tie", [True, False])
def test_cached_model_gives_the_logits_of_the_gguf_read_directly(tmp_path, cache_root, tie, write_chat_gguf):
    path = write_chat_gguf(tmp_path / "m.gguf", _tiny_model(1, tie=tie))
    first = ChatModel.from_pretrained(path)  # converts
    second = ChatModel.from_pretrained(path)  # reads the cache
    expected = _direct(path)
    assert torch.equal(_logits(first.model), expected)
    assert torch.equal(_logits(second.model), expected)
    assert (second.model.lm_head.weight is second.model.embed.tokens.weight) == tie  # the tie survives the cache
    assert second.chat_template.source == TEMPLATE
    assert second.tokenizer.encode("abcd<|im_end|>ab").ids == [14, 0, 12]  # merges and control tokens kept
    assert second.model.config == load_llama_gguf(path).config


def test_cached_weights_are_memory_mapped_in_decode_layout(tiny_gguf, cache_root):
    model = ChatModel.from_pretrained(tiny_gguf).model
    attn = model.decoder.layers[0].self_attn
    assert attn._fused_qkv.data_ptr() == attn.w_q.weight.data_ptr()  # decode_layout's fused block, restored
    entry = cache.cache_entry(tiny_gguf)
    assert entry.parent.parent == cache_root and entry.name.startswith("tiny-")
    assert sorted(p.name for p in entry.iterdir()) == [cache.META, cache.WEIGHTS, cache.TOKENIZER]


def test_second_load_does_not_read_the_gguf(tiny_gguf, cache_root, monkeypatch):
    ChatModel.from_pretrained(tiny_gguf)
    monkeypatch.setattr(cache, "_convert", lambda path: pytest.fail("converted again"))
    ChatModel.from_pretrained(tiny_gguf)


def test_cache_false_reads_the_gguf_directly(tiny_gguf, cache_root):
    chat = ChatModel.from_pretrained(tiny_gguf, cache=False)
    assert torch.equal(_logits(chat.model), _direct(tiny_gguf))
    assert not cache_root.exists()


def test_bfloat16_from_the_cache_is_the_float32_model_cast(tiny_gguf, cache_root):
    chat = ChatModel.from_pretrained(tiny_gguf, dtype=torch.bfloat16)
    assert chat.model.embed.tokens.weight.dtype == torch.bfloat16
    expected = load_llama_gguf(tiny_gguf).embed.tokens.weight.to(torch.bfloat16)
    assert torch.equal(chat.model.embed.tokens.weight, expected)


# ---------------------------------------------------------------------- invalidation
def test_changed_source_file_is_converted_again(tiny_gguf, cache_root, write_chat_gguf):
    before = _logits(ChatModel.from_pretrained(tiny_gguf).model)
    old_entry = cache.cache_entry(tiny_gguf)
    write_chat_gguf(tiny_gguf, _tiny_model(2))  # same path and size, other weights
    stat = tiny_gguf.stat()
    os.utime(tiny_gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a later mtime, even on coarse clocks
    after = _logits(ChatModel.from_pretrained(tiny_gguf).model)
    assert cache.cache_entry(tiny_gguf) != old_entry
    assert torch.equal(after, _direct(tiny_gguf)) and not torch.equal(after, before)


def _corrupt_truncate(entry: Path) -> None:
    weights = entry / cache.WEIGHTS
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _corrupt_header(entry: Path) -> None:
    weights = entry / cache.WEIGHTS
    data = bytearray(weights.read_bytes())
    data[8:24] = b"not a json head!"  # the safetensors header is JSON after an 8-byte length
    weights.write_bytes(bytes(data))


def _corrupt_meta(entry: Path) -> None:
    (entry / cache.META).write_text("{truncated", encoding="utf-8")


def _corrupt_missing_tokenizer(entry: Path) -> None:
    (entry / cache.TOKENIZER).unlink()


def _corrupt_tokenizer(entry: Path) -> None:
    path = entry / cache.TOKENIZER
    path.write_bytes(b"x" * path.stat().st_size)  # right size, not a tokenizer


def _corrupt_layout(entry: Path) -> None:
    meta = json.loads((entry / cache.META).read_text())
    meta["layout"]["parameters"]["decoder.norm.weight"][1] = 10**9  # points past the end of its storage
    (entry / cache.META).write_text(json.dumps(meta))


@pytest.mark.parametrize("corrupt", [_corrupt_truncate, _corrupt_header, _corrupt_meta, _corrupt_missing_tokenizer,
                                     _corrupt_tokenizer, _corrupt_layout])  # fmt: skip
def test_corrupt_cache_entry_is_detected_and_rebuilt(tiny_gguf, cache_root, caplog, corrupt):
    ChatModel.from_pretrained(tiny_gguf)
    entry = cache.cache_entry(tiny_gguf)
    corrupt(entry)
    with caplog.at_level(logging.WARNING, logger="attnkit.pretrained"):
        chat = ChatModel.from_pretrained(tiny_gguf)
    assert "converting tiny.gguf again" in caplog.text
    assert torch.equal(_logits(chat.model), _direct(tiny_gguf))
    meta = json.loads((entry / cache.META).read_text())
    assert (entry / cache.WEIGHTS).stat().st_size == meta["bytes"][cache.WEIGHTS]  # rebuilt whole


def test_an_unwritable_cache_still_returns_the_model(tiny_gguf, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv(cache.ENV_VAR, str(blocker))
    with caplog.at_level(logging.WARNING, logger="attnkit.pretrained"):
        chat = ChatModel.from_pretrained(tiny_gguf)
    assert "cannot write" in caplog.text and cache.ENV_VAR in caplog.text
    assert torch.equal(_logits(chat.model), _direct(tiny_gguf))


def test_no_temp_folders_are_left_behind(tiny_gguf, cache_root):
    ChatModel.from_pretrained(tiny_gguf)
    assert [p.name for p in (cache_root / "gguf").iterdir() if p.name.startswith(".")] == []


# ---------------------------------------------------------------------- where
def test_cache_dir_follows_env_var_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(cache.ENV_VAR)
    assert cache.cache_dir() == tmp_path / "xdg" / "attnkit"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG spec says: ignore relative paths
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "attnkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "attnkit"


def test_test_suite_never_uses_the_real_user_cache():
    assert Path(os.environ[cache.ENV_VAR]) != Path.home() / ".cache" / "attnkit"
    assert not str(cache.cache_dir()).startswith(str(Path.home() / ".cache"))


def test_missing_and_non_gguf_files_raise_before_touching_the_cache(tmp_path, cache_root):
    with pytest.raises(FileNotFoundError, match="no file at"):
        ChatModel.from_pretrained(tmp_path / "nope.gguf")
    (tmp_path / "x.gguf").write_text("not gguf")
    with pytest.raises(ValueError, match="is not a GGUF file"):
        ChatModel.from_pretrained(tmp_path / "x.gguf")
    assert not cache_root.exists()
