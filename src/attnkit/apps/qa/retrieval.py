"""Dense retrieval of supporting sentences with MiniLM: cosine between question and sentence.

Contexts (documents) are cut into sentences
(:func:`~attnkit.apps.summarize.text.split_sentences`); each sentence is a passage that
remembers its document and the 1-based line it starts on. Question and passages are
embedded with all-MiniLM-L6-v2 (L2-normalized), so the dot product is the cosine
similarity. A :class:`PassageIndex` embeds the passages once for many questions.

Example:
    >>> passages = split_passages({"a.txt": "Paris is in France. Cats purr.", "b.txt": "Rome is in Italy."})
    >>> [e.passage.text for e in retrieve("Where is Rome?", passages, k=1)]
    ['Rome is in Italy.']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..summarize.text import sentence_lines, split_sentences

__all__ = ["Passage", "Evidence", "PassageIndex", "split_passages", "retrieve", "as_contexts"]


@dataclass(frozen=True)
class Passage:
    """One sentence of a context document."""

    text: str  # the sentence
    source: str  # the document's name (file name, or "context 0", "context 1", ...)
    index: int  # position of the sentence in its document (0-based)
    line: int  # line of the document on which the sentence starts (1-based, as editors and grep -n count)


@dataclass(frozen=True)
class Evidence:
    """A retrieved passage and how well it matches the question."""

    passage: Passage  # the sentence
    score: float  # cosine similarity to the question, in [-1, 1]

    def to_dict(self) -> dict:
        return {"text": self.passage.text, "source": self.passage.source, "line": self.passage.line,
                "index": self.passage.index, "score": round(self.score, 4)}  # fmt: skip

    @property
    def location(self) -> str:
        """``source:line``, as compilers and ``grep -n`` print locations."""
        return f"{self.passage.source}:{self.passage.line}"


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
        kind = type(named[bad[0]]).__name__
        raise TypeError(f"contexts must hold strings (document texts), but {bad[0]!r} is {kind}")
    return named


def split_passages(contexts: Sequence[str] | Mapping[str, str] | str) -> list[Passage]:
    """Every sentence of every document, in order.

    Example:
        >>> [(p.text, p.line) for p in split_passages({"a.txt": "Title\\n\\nOne. Two."})]
        [('Title', 1), ('One.', 3), ('Two.', 3)]
    """
    passages = []
    for name, text in as_contexts(contexts).items():
        sentences = split_sentences(text)
        lines = sentence_lines(text, sentences)
        passages += [Passage(s, name, i, line) for i, (s, line) in enumerate(zip(sentences, lines, strict=True))]
    return passages


class PassageIndex:
    """Passages embedded once; :meth:`search` ranks them for one question at a time.

    Example:
        >>> index = PassageIndex(split_passages(["Paris is in France. Rome is in Italy."]))
        >>> [e.passage.text for e in index.search("Where is Paris?", k=1)]
        ['Paris is in France.']
    """

    def __init__(self, passages: Sequence[Passage], *, encoder=None):
        from ..summarize.models import sentence_encoder

        self.passages = list(passages)
        self.encoder = encoder or sentence_encoder()
        self.embeddings = self.encoder.encode([x.text for x in self.passages])  # (N, 384)

    def search(self, question: str, k: int = 3) -> list[Evidence]:
        """The ``k`` passages most similar to ``question``, best first."""
        if not self.passages:
            return []
        q = self.encoder.encode([question])  # (1, 384)
        scores = (self.embeddings @ q[0]).tolist()  # (N, 384) @ (384,) -> (N,)
        best = sorted(range(len(self.passages)), key=lambda i: -scores[i])[:k]
        return [Evidence(self.passages[i], scores[i]) for i in best]

    def __len__(self) -> int:
        return len(self.passages)


def retrieve(question: str, passages: Sequence[Passage], *, k: int = 3, encoder=None) -> list[Evidence]:
    """The ``k`` passages most similar to ``question``, best first."""
    if not passages:
        return []
    return PassageIndex(passages, encoder=encoder).search(question, k)
