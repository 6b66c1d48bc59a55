"""Dense retrieval of supporting sentences with MiniLM: cosine between question and sentence.

Contexts (documents) are cut into sentences
(:func:`~attnkit.apps.summarize.text.split_sentences`); each sentence is a passage that
remembers its document. Question and passages are embedded with all-MiniLM-L6-v2
(L2-normalized), so the dot product is the cosine similarity.

Example:
    >>> passages = split_passages({"a.txt": "Paris is in France. Cats purr.", "b.txt": "Rome is in Italy."})
    >>> [e.passage.text for e in retrieve("Where is Rome?", passages, k=1)]
    ['Rome is in Italy.']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from ..summarize.text import split_sentences

__all__ = ["Passage", "Evidence", "split_passages", "retrieve", "as_contexts"]


@dataclass(frozen=True)
class Passage:
    """One sentence of a context document."""

    text: str  # the sentence
    source: str  # the document's name (file name, or "context 0", "context 1", ...)
    index: int  # position of the sentence in its document


@dataclass(frozen=True)
class Evidence:
    """A retrieved passage and how well it matches the question."""

    passage: Passage  # the sentence
    score: float  # cosine similarity to the question, in [-1, 1]

    def to_dict(self) -> dict:
        return {"text": self.passage.text, "source": self.passage.source, "index": self.passage.index,
                "score": round(self.score, 4)}  # fmt: skip


def as_contexts(contexts: Sequence[str] | Mapping[str, str] | str) -> dict[str, str]:
    """Documents by name: a mapping is kept, a list is named ``"context 0"``, ``"context 1"``, ..."""
    if isinstance(contexts, str):
        contexts = [contexts]
    if isinstance(contexts, Mapping):
        named = dict(contexts)
    else:
        named = {f"context {i}": text for i, text in enumerate(contexts)}
    bad = [name for name, text in named.items() if not isinstance(text, str)]
    if bad:
        raise TypeError(f"contexts must hold strings (document texts), but {bad[0]!r} is {type(named[bad[0]]).__name__}")
    return named


def split_passages(contexts: Sequence[str] | Mapping[str, str] | str) -> list[Passage]:
    """Every sentence of every document, in order."""
    return [Passage(s, name, i) for name, text in as_contexts(contexts).items()
            for i, s in enumerate(split_sentences(text))]  # fmt: skip


def retrieve(question: str, passages: Sequence[Passage], *, k: int = 3, encoder=None) -> list[Evidence]:
    """The ``k`` passages most similar to ``question``, best first."""
    from ..summarize.models import sentence_encoder

    if not passages:
        return []
    encoder = encoder or sentence_encoder()
    q = encoder.encode([question])  # (1, 384)
    p = encoder.encode([x.text for x in passages])  # (N, 384)
    scores = (p @ q[0]).tolist()  # (N, 384) @ (384,) -> (N,)
    best = sorted(range(len(passages)), key=lambda i: -scores[i])[:k]
    return [Evidence(passages[i], scores[i]) for i in best]
