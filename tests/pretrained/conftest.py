"""Shared by the GGUF tests: writing a little Llama GGUF file the way llama.cpp's converter does.

``write_gguf`` is a fixture (not an importable helper) so that tests/test_packaging.py's import scan
does not take a sibling test module for an undeclared package.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest

from attnkit.nn import TransformerLM

#: GGUF tensor kind -> attnkit's module path inside ``decoder.layers.{i}``
LAYER = {"attn_norm": "norm1", "attn_q": "self_attn.w_q", "attn_k": "self_attn.w_k", "attn_v": "self_attn.w_v",
         "attn_output": "self_attn.w_o", "ffn_norm": "norm3", "ffn_gate": "feed_forward.w_gate",
         "ffn_up": "feed_forward.w_up", "ffn_down": "feed_forward.w_down"}  # fmt: skip


def llama_cpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """convert_hf_to_gguf.py's permute of W^Q / W^K rows: rotate_half rows -> interleaved rows, per head."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _add_model(writer: gguf.GGUFWriter, model: TransformerLM) -> None:
    cfg = model.config
    writer.add_block_count(cfg.num_decoder_layers)
    writer.add_context_length(cfg.max_len)
    writer.add_embedding_length(cfg.d_model)
    writer.add_feed_forward_length(cfg.d_ff)
    writer.add_head_count(cfg.num_heads)
    writer.add_head_count_kv(cfg.num_kv_heads)
    writer.add_rope_freq_base(cfg.rope_base)
    writer.add_layer_norm_rms_eps(cfg.norm_eps)
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state["embed.tokens.weight"])
    writer.add_tensor("output_norm.weight", state["decoder.norm.weight"])
    if not cfg.tie_embeddings:
        writer.add_tensor("output.weight", state["lm_head.weight"])
    for i in range(cfg.num_decoder_layers):
        for kind, ours in LAYER.items():
            w = state[f"decoder.layers.{i}.{ours}.weight"]
            heads = {"attn_q": cfg.num_heads, "attn_k": cfg.num_kv_heads}.get(kind)
            writer.add_tensor(f"blk.{i}.{kind}.weight", w if heads is None else llama_cpp_permute(w, heads))


def _add_tokenizer(writer: gguf.GGUFWriter, tokens: list[str], merges: list[str], template: str) -> None:
    """A GPT-2 style BPE tokenizer whose first two tokens are control tokens (eos = 0) and a chat template."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types([3, 3] + [1] * (len(tokens) - 2))
    writer.add_eos_token_id(0)
    writer.add_chat_template(template)


def _write(path: Path, model: TransformerLM | None = None, *, arch: str = "llama",
           tokenizer: tuple[list[str], list[str], str] | None = None) -> Path:  # fmt: skip
    writer = gguf.GGUFWriter(str(path), arch)
    if model is not None:
        _add_model(writer, model)
    if tokenizer is not None:
        _add_tokenizer(writer, *tokenizer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


@pytest.fixture
def write_gguf() -> Callable[..., Path]:
    """``write_gguf(path, model=None, *, arch="llama", tokenizer=(tokens, merges, template)) -> path``."""
    return _write


@pytest.fixture
def permute() -> Callable[[np.ndarray, int], np.ndarray]:
    """llama.cpp's permute of W^Q / W^K rows (what the loader must undo)."""
    return llama_cpp_permute
