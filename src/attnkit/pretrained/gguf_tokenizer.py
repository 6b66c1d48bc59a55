"""The tokenizer and chat template embedded in a GGUF file, without ``transformers``.

A GGUF has no ``tokenizer.json``: it stores llama.cpp's description of the
tokenizer as metadata (``tokenizer.ggml.*``). For ``tokenizer.ggml.model ==
"gpt2"`` (byte-level BPE: GPT-2, SmolLM, Llama 3, ...) :func:`tokenizer_from_gguf`
rebuilds it with the ``tokenizers`` library:

* model: BPE over the file's ``tokens`` (ids = positions) and ``merges``;
* pre-tokenizer: chosen by ``tokenizer.ggml.pre`` as llama.cpp does (SmolLM and
  StarCoder isolate every digit before the GPT-2 split, Llama 3 uses its own regex);
* control tokens (``token_type == 3``, e.g. ``<|im_start|>``) become special tokens
  matched whole; user-defined ones (4) plain added tokens;
* decoder: byte-level.

:class:`ChatTemplate` renders ``tokenizer.chat_template`` (Jinja) in jinja2's
immutable sandbox, as ``transformers``' ``apply_chat_template`` does: the
template comes from the file and is treated as untrusted code.

Example:
    >>> template = ChatTemplate("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\\n{% endfor %}")
    >>> template.render([{"role": "user", "content": "Hi"}], add_generation_prompt=False)
    '<|user|>Hi\\n'
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

__all__ = ["tokenizer_from_gguf", "ChatTemplate", "Message"]

logger = logging.getLogger("attnkit.pretrained")

Message = dict[str, str]  #: ``{"role": "system" | "user" | "assistant", "content": str}``

_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_DIGITS_FIRST = ("smollm", "starcoder", "refact", "codeshell", "command-r", "exaone", "minerva")
_LLAMA3 = ("llama3", "llama-v3", "llama-bpe", "smaug-bpe", "falcon3", "dbrx")
_GPT2 = ("gpt2", "default", "gpt-2", None)


def tokenizer_from_gguf(metadata: dict[str, Any]) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` equal to the byte-level BPE tokenizer a GGUF describes.

    Args:
        metadata: ``GGUFFile.metadata`` (needs ``tokenizer.ggml.tokens`` and ``merges``).

    Example:
        >>> meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["<s>", "a", "b", "ab"],
        ...         "tokenizer.ggml.merges": ["a b"], "tokenizer.ggml.token_type": [3, 1, 1, 1]}
        >>> tokenizer_from_gguf(meta).encode("ab<s>a").ids
        [3, 0, 1]
    """
    kind = metadata.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(
            f"tokenizer_from_gguf(): tokenizer.ggml.model is {kind!r}; attnkit builds byte-level BPE ('gpt2') "
            "tokenizers, as in SmolLM, GPT-2 and Llama 3 (sentencepiece 'llama' vocabularies are not supported yet)"
        )
    tokens = _byte_level_spelling(list(metadata["tokenizer.ggml.tokens"]))
    merges = [tuple(merge.split(" ")) for merge in metadata.get("tokenizer.ggml.merges", [])]
    bpe = models.BPE(vocab={token: i for i, token in enumerate(tokens)}, merges=merges, fuse_unk=False)
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = _pre_tokenizer(metadata.get("tokenizer.ggml.pre"))
    tokenizer.decoder = decoders.ByteLevel()
    _add_control_tokens(tokenizer, tokens, metadata.get("tokenizer.ggml.token_type") or [])
    bos = metadata.get("tokenizer.ggml.bos_token_id")
    if metadata.get("tokenizer.ggml.add_bos_token") and bos is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{tokens[bos]} $A", pair=f"{tokens[bos]} $A $B", special_tokens=[(tokens[bos], bos)]
        )
    return tokenizer


def _pre_tokenizer(pre: str | None):
    """The split llama.cpp applies for ``tokenizer.ggml.pre`` (then bytes -> printable characters)."""
    if pre in _DIGITS_FIRST:  # llama.cpp: "\p{N}" first, then the GPT-2 regex
        return pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        )
    if pre in _LLAMA3:
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    if pre not in _GPT2:
        logger.warning("tokenizer_from_gguf(): unknown tokenizer.ggml.pre %r; splitting text with GPT-2's regex", pre)
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def _add_control_tokens(tokenizer: Tokenizer, tokens: list[str], token_types: list[int]) -> None:
    """Control tokens become special (never split, dropped by ``skip_special_tokens``), user-defined ones added."""
    typed = list(zip(tokens, token_types, strict=True))
    control = [AddedToken(t, special=True, normalized=False) for t, k in typed if k == _CONTROL]
    user = [AddedToken(t, special=False, normalized=False) for t, k in typed if k == _USER_DEFINED]
    if control:
        tokenizer.add_special_tokens(control)
    if user:
        tokenizer.add_tokens(user)


def _byte_level_spelling(tokens: list[str]) -> list[str]:
    """Tokens spelled with raw characters (outside GPT-2's byte alphabet) respelled byte by byte."""
    spelling = _bytes_to_unicode()
    alphabet = set(spelling.values())
    return [t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8")) for t in tokens]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte], extra = chr(256 + extra), extra + 1
    return chars


class ChatTemplate:
    """A Jinja chat template rendered in jinja2's immutable sandbox.

    ``render(messages, add_generation_prompt=True, **variables)`` returns the prompt
    text; ``variables`` fill names such as ``bos_token``. Rendering matches
    ``transformers``' ``apply_chat_template(..., tokenize=False)``: same Jinja
    options (``trim_blocks``, ``lstrip_blocks``, loop controls), ``tojson``,
    ``raise_exception`` and ``strftime_now``.

    Example:
        >>> ChatTemplate("{{ messages[0]['content'] | upper }}").render([{"role": "user", "content": "hi"}])
        'HI'
    """

    def __init__(self, source: str) -> None:
        if not isinstance(source, str) or not source:
            raise ValueError(f"ChatTemplate(): source must be a non-empty Jinja template string, got {source!r}")
        self.source = source
        self._template = _sandbox().from_string(source)

    def render(self, messages: list[Message], *, add_generation_prompt: bool = True, **variables: Any) -> str:
        _check_messages(messages)
        return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt, **variables)

    def __repr__(self) -> str:
        return f"ChatTemplate({self.source[:40]!r}...)"


def _sandbox():
    try:
        import jinja2
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as error:
        raise ImportError("ChatTemplate: chat templates need jinja2; install it with `pip install jinja2`") from error
    if tuple(int(p) for p in jinja2.__version__.split(".")[:3] if p.isdigit()) < (3, 1, 6):
        raise ImportError(
            f"ChatTemplate: jinja2 {jinja2.__version__} has known sandbox escapes and a chat template from a "
            "model file is untrusted code; upgrade with `pip install -U 'jinja2>=3.1.6'`"
        )

    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
    return env


def _check_messages(messages) -> None:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise TypeError(
            f"ChatTemplate.render(): messages must be a non-empty list of {{'role': ..., 'content': ...}} dicts, "
            f"got {type(messages).__name__}"
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or "content" not in message:
            raise TypeError(
                f"ChatTemplate.render(): messages[{i}] must be a dict with 'role' and 'content', got {message!r}; "
                "e.g. {'role': 'user', 'content': 'Hello'}"
            )
