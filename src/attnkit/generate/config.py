"""``GenerationConfig``: how to pick the next token, validated once.

Example:
    >>> GenerationConfig(strategy="sample", max_new_tokens=20, top_p=0.9).top_p
    0.9
    >>> GenerationConfig(strategy="sample", temperature=0.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: GenerationConfig: temperature must be a float > 0, got 0.0; temperature -> 0 is greedy decoding, ...
"""

from __future__ import annotations

import dataclasses
from dataclasses import InitVar, dataclass

__all__ = ["GenerationConfig", "STRATEGIES"]

STRATEGIES = ("greedy", "beam", "sample")


@dataclass(frozen=True)
class GenerationConfig:
    """Options of :func:`attnkit.generate.generate`; the fields of other strategies are ignored."""

    strategy: str = "greedy"  # greedy | beam | sample
    max_new_tokens: int = 32  # tokens generated after the prompt (or after BOS), EOS included
    eos_id: int | None = None  # token that ends a row; None = model.config.eos_id
    ignore_eos: bool = False  # True: EOS is an ordinary token, every row gets max_new_tokens tokens
    beam_size: int = 4  # beam search: live hypotheses kept per input row
    length_penalty: float = 0.6  # beam search: GNMT alpha, score = log P / ((5 + len) / 6) ** alpha
    num_return: int = 1  # beam search: hypotheses returned per input row (<= beam_size)
    temperature: float = 1.0  # sampling: divide the logits by it (< 1 sharper, > 1 flatter)
    top_k: int | None = None  # sampling: keep only the k most likely tokens; None = all
    top_p: float | None = None  # sampling: nucleus, the smallest set of tokens with mass >= top_p
    seed: int | None = None  # sampling: seed of a private torch.Generator; None = torch's global RNG
    no_repeat_ngram_size: int = 0  # every strategy: n > 0 forbids any n-gram to occur twice in a row's tokens; 0 = off
    # every strategy: CTRL penalty theta on tokens already seen (> 1 discourages); 1 = off
    repetition_penalty: float = 1.0
    _owner: InitVar[str] = "GenerationConfig"  # name used in error messages (the calling function)

    def __post_init__(self, _owner: str) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"{_owner}: strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        _int(_owner, "max_new_tokens", self.max_new_tokens, 1, "generation needs at least one new token")
        _int(_owner, "beam_size", self.beam_size, 1, "beam_size=1 is greedy search; use strategy='greedy'")
        _int(_owner, "num_return", self.num_return, 1, "ask for at least one hypothesis per row")
        if self.num_return > self.beam_size:
            raise ValueError(
                f"{_owner}: num_return={self.num_return} must be <= beam_size={self.beam_size}; "
                "beam search keeps beam_size hypotheses, raise beam_size to return more"
            )
        if self.eos_id is not None:
            _int(_owner, "eos_id", self.eos_id, 0, "pass a token id, or ignore_eos=True to never stop early")
        if self.top_k is not None:
            _int(_owner, "top_k", self.top_k, 1, "top_k=None keeps every token; top_k=1 is greedy")
        if self.seed is not None:
            _int(_owner, "seed", self.seed, 0, "use a non-negative int, e.g. seed=0")
        _int(_owner, "no_repeat_ngram_size", self.no_repeat_ngram_size, 0,
             "0 is off; 3 forbids repeating any three-token sequence (a common choice for summaries)")
        _float(_owner, "repetition_penalty", self.repetition_penalty, "1.0 is off; 1.2 as in CTRL")
        if not self.repetition_penalty > 0:
            raise ValueError(
                f"{_owner}: repetition_penalty must be > 0, got {self.repetition_penalty!r}; 1.0 is off, values "
                "above 1 discourage tokens already seen (CTRL uses 1.2), values below 1 favour them"
            )
        _float(_owner, "temperature", self.temperature, "temperature -> 0 is greedy decoding, use strategy='greedy'")
        _float(_owner, "length_penalty", self.length_penalty, None)
        if not self.temperature > 0:
            raise ValueError(
                f"{_owner}: temperature must be a float > 0, got {self.temperature!r}; "
                "temperature -> 0 is greedy decoding, use strategy='greedy'"
            )
        if self.top_p is not None:
            _float(_owner, "top_p", self.top_p, None)
            if not 0.0 < self.top_p <= 1.0:
                raise ValueError(
                    f"{_owner}: top_p must be in (0, 1], got {self.top_p!r}; top_p=0.9 keeps the most likely "
                    "tokens that together carry 90% of the probability, top_p=1 (or None) keeps all"
                )

    def replace(self, _owner: str = "GenerationConfig.replace()", **changes) -> GenerationConfig:
        """A copy with some fields changed (validated again); unknown names raise ``TypeError``."""
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise TypeError(f"{_owner}: unknown option(s) {unknown}; GenerationConfig fields are {field_names()}")
        return dataclasses.replace(self, _owner=_owner, **changes)


def field_names() -> list[str]:
    """The option names of :class:`GenerationConfig`."""
    return [f.name for f in dataclasses.fields(GenerationConfig)]


def _int(owner: str, name: str, value, minimum: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}; {hint}")


def _float(owner: str, name: str, value, hint: str | None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        extra = f"; {hint}" if hint else ""
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}{extra}")
