"""The corpus types and the text normal form that every corpus source shares.

A :class:`Corpus` is sentence pairs in three disjoint splits (train, valid, test).
The sources — :mod:`.numbers_dates` (generated), :mod:`.catalogs` (gettext) and
:mod:`.data` (TSV files, and :func:`~.data.load_corpus`, which picks a source) — all
build one and normalize every text with :func:`normalize_text`. This module sits
below them, so none of them imports another.

Example:
    >>> corpus = Corpus("toy", "en", "de", train=(("one", "eins"),), valid=(("two", "zwei"),),
    ...                 test=(("three", "drei"),))
    >>> corpus.pair, corpus.split("test")
    ('en-de', (('three', 'drei'),))
    >>> corpus.summary().splits[0].pairs
    1
"""

from __future__ import annotations

import dataclasses
import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Pair", "Corpus", "CorpusSummary", "SplitSummary", "SPLITS", "normalize_text"]

Pair = tuple[str, str]  # (source sentence, target sentence)
SPLITS = ("train", "valid", "test")
_WHITESPACE = re.compile(r"\s+")


# ---------------------------------------------------------------------- the corpus
@dataclass(frozen=True)
class SplitSummary:
    """Size and lengths of one split; lengths in whitespace-separated words."""

    name: str  # "train", "valid" or "test"
    pairs: int  # number of sentence pairs
    source_words_mean: float  # mean source length in words
    source_words_max: int  # longest source in words
    target_words_mean: float  # mean target length in words
    target_words_max: int  # longest target in words
    source_vocab: int  # distinct source words (case-sensitive)
    target_vocab: int  # distinct target words (case-sensitive)
    target_chars_mean: float  # mean target length in characters (German numbers are one long word)


@dataclass(frozen=True)
class CorpusSummary:
    """What :func:`~.data.load_corpus` produced: the CLI prints it as a table (or JSON).

    Example:
        >>> toy = Corpus("toy", "en", "de", (("one", "eins"),), (("two", "zwei"),), (("three", "drei"),))
        >>> summary = toy.summary()
        >>> isinstance(summary, CorpusSummary), summary.to_dict()["splits"][0]["target_words_max"]
        (True, 1)
    """

    corpus: str  # the spec, e.g. "numbers-dates" or "tsv:data/my.tsv"
    pair: str  # "en-de"
    seed: int  # seed of the split (and of the generator)
    note: str  # how the splits were made, e.g. which values are held out
    splits: tuple[SplitSummary, ...]  # train, valid, test
    examples: tuple[Pair, ...]  # a few training pairs, to see what the data looks like

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Corpus:
    """Sentence pairs in three disjoint splits, plus where they came from."""

    name: str  # the spec it was loaded from
    source_lang: str  # e.g. "en"
    target_lang: str  # e.g. "de"
    train: tuple[Pair, ...]  # training pairs
    valid: tuple[Pair, ...]  # validation pairs (checkpoint selection, periodic BLEU)
    test: tuple[Pair, ...]  # held-out pairs for the final score
    seed: int = 0  # seed of the split
    note: str = ""  # how the splits were made

    @property
    def pair(self) -> str:
        return f"{self.source_lang}-{self.target_lang}"

    def split(self, name: str) -> tuple[Pair, ...]:
        """The pairs of split ``name`` (train, valid or test)."""
        if name not in SPLITS:
            raise ValueError(f"Corpus.split(): name must be one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    def summary(self, examples: int = 3) -> CorpusSummary:
        """Pairs, lengths and vocabulary of each split."""
        rng = random.Random(self.seed)
        shown = tuple(rng.sample(self.train, min(examples, len(self.train))))
        stats = tuple(_split_summary(name, self.split(name)) for name in SPLITS)
        return CorpusSummary(self.name, self.pair, self.seed, self.note, stats, shown)


def _split_summary(name: str, pairs: Sequence[Pair]) -> SplitSummary:
    src = [s.split() for s, _ in pairs]
    tgt = [t.split() for _, t in pairs]
    n = max(len(pairs), 1)
    return SplitSummary(
        name=name,
        pairs=len(pairs),
        source_words_mean=round(sum(map(len, src)) / n, 2),
        source_words_max=max(map(len, src), default=0),
        target_words_mean=round(sum(map(len, tgt)) / n, 2),
        target_words_max=max(map(len, tgt), default=0),
        source_vocab=len({w for words in src for w in words}),
        target_vocab=len({w for words in tgt for w in words}),
        target_chars_mean=round(sum(len(t) for _, t in pairs) / n, 1),
    )


def normalize_text(text: str) -> str:
    """Unicode NFC, whitespace runs -> one space, stripped: the form every corpus uses.

    Example:
        >>> normalize_text("  zwei\\t Euro\\n")
        'zwei Euro'
    """
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()
