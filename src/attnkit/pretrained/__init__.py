"""Loaders for published checkpoints (Hugging Face folders: config.json, safetensors, tokenizer.json).

Submodules import lazily (``tokenizers``/``safetensors`` load only when a name is used).
Each loader adds its public names to :data:`_EXPORTS` (name -> submodule).

Example:
    >>> from attnkit.pretrained import SentenceEncoder
    >>> SentenceEncoder.from_pretrained().encode("hello world").shape
    torch.Size([1, 384])

    ``BertModel`` returns a :class:`BertOutput`; the SmolLM2 GGUF file is found (not read)
    with ``default_gguf_path()``:

    >>> import torch
    >>> from attnkit.pretrained import BertOutput, default_gguf_path
    >>> out = BertOutput(last_hidden_state=torch.zeros(2, 5, 384))
    >>> out.last_hidden_state.shape, out.pooler_output is None
    (torch.Size([2, 5, 384]), True)
    >>> default_gguf_path().name
    'SmolLM2-135M-Instruct.Q4_1.gguf'
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # bert.py: BERT family
    "BertConfig": "bert",
    "BertModel": "bert",
    "BertOutput": "bert",
    "SentenceEncoder": "bert",
    # llama.py, chat.py, gguf_*.py: Llama family from GGUF files (SmolLM2)
    "ChatModel": "chat",
    "load_llama_gguf": "llama",
    "llama_config_from_gguf": "llama",
    "GGUFFile": "gguf_reader",
    "default_gguf_path": "gguf_reader",
    "tokenizer_from_gguf": "gguf_tokenizer",
    "ChatTemplate": "gguf_tokenizer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'attnkit.pretrained' has no attribute {name!r}; available: {__all__}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
