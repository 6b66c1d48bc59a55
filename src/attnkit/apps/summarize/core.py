"""``summarize(text)``: extractive (MiniLM centrality + MMR) or abstractive (SmolLM2) summaries.

Extractive (default): the text is cut into sentences
(:func:`~attnkit.apps.summarize.text.split_sentences`), those of at least
``MIN_WORDS`` words are embedded with all-MiniLM-L6-v2, ranked by centrality with a
small lead prior and picked with MMR (:mod:`~attnkit.apps.summarize.extractive`),
then printed in their original order. Abstractive: SmolLM2-135M-Instruct writes the
summary from the whole text (:mod:`~attnkit.apps.summarize.abstractive`).

Example:
    >>> text = ("Transformers rely on self-attention. The weather was nice that day. "
    ...         "Self-attention relates every token to every other token. "
    ...         "Attention weights are a softmax over scaled dot products.")
    >>> summarize(text, sentences=2).indices  # the weather (sentence 1) is left out
    (0, 2)
"""

from __future__ import annotations

from dataclasses import dataclass

from .extractive import CENTRALITIES, relevance, select
from .text import split_sentences, words

__all__ = ["Summary", "summarize", "candidates", "extract", "MIN_WORDS", "DEFAULTS"]

MIN_WORDS = 4  #: shorter pieces (headings, option names) are never picked
METHODS = ("extractive", "abstractive")
_KIND, _POSITION_WEIGHT, _DIVERSITY = "degree", 0.2, 0.3  # typed defaults of the parameters below
#: extractive settings, tuned on the dev split
DEFAULTS = {"kind": _KIND, "position_weight": _POSITION_WEIGHT, "diversity": _DIVERSITY}


@dataclass(frozen=True)
class Summary:
    """A summary and where it came from."""

    text: str  # the summary, sentences joined by spaces
    sentences: tuple[str, ...]  # its sentences (extractive: copied from the source, in source order)
    indices: tuple[int, ...]  # extractive: positions of those sentences among the source sentences; abstractive: ()
    scores: tuple[float, ...]  # extractive: relevance (centrality + lead prior) of each picked sentence; else ()
    method: str  # "extractive" or "abstractive"
    source_sentences: int  # sentences found in the source text
    model: str  # the model that ranked or wrote it

    def to_dict(self) -> dict:
        """Plain types, ready for ``json.dumps``."""
        return {
            "method": self.method, "model": self.model, "text": self.text, "sentences": list(self.sentences),
            "indices": list(self.indices), "scores": [round(s, 4) for s in self.scores],
            "source_sentences": self.source_sentences,
        }  # fmt: skip


def summarize(
    text: str,
    *,
    sentences: int = 3,
    ratio: float | None = None,
    method: str = "extractive",
    diversity: float = _DIVERSITY,
    encoder=None,
    chat=None,
    max_new_tokens: int | None = None,
) -> Summary:
    """Summarize ``text`` in ``sentences`` sentences (or ``ratio`` of its sentences).

    Args:
        text: the document (plain text).
        sentences: how many sentences to keep (extractive) or ask for (abstractive).
        ratio: instead of ``sentences``, keep this fraction of the source sentences
            (``0 < ratio <= 1``, at least one).
        method: ``"extractive"`` (MiniLM) or ``"abstractive"`` (SmolLM2).
        diversity: MMR trade-off in ``[0, 1]``; 0 ignores redundancy.
        encoder, chat: models to use instead of the packaged defaults
            (:func:`~attnkit.apps.summarize.models.sentence_encoder`, ``chat_model``).
        max_new_tokens: abstractive generation budget (default 48 per sentence).
    """
    _check_arguments(text, sentences, ratio, method)
    if isinstance(diversity, bool) or not isinstance(diversity, (int, float)) or not 0 <= diversity <= 1:
        raise ValueError(f"summarize(): diversity must be in [0, 1] (0 = no redundancy penalty), got {diversity!r}")
    source = split_sentences(text)
    k = _count(len(source), sentences, ratio)
    if method == "abstractive":
        from .abstractive import generate_summary
        from .models import SMOLLM2, chat_model

        chat = chat or chat_model()
        written = generate_summary(chat, text, sentences=k, max_new_tokens=max_new_tokens)
        return Summary(written, tuple(split_sentences(written)), (), (), method, len(source), SMOLLM2)
    return extract(source, k, encoder=encoder, diversity=diversity)


def candidates(sentences: list[str]) -> list[int]:
    """Indices of the sentences a summary may use: ``MIN_WORDS`` words or more (all, if none is that long)."""
    keep = [i for i, s in enumerate(sentences) if len(words(s)) >= MIN_WORDS]
    return keep or list(range(len(sentences)))


def extract(
    source: list[str], k: int, *, encoder=None, diversity: float = _DIVERSITY,
    kind: str = _KIND, position_weight: float = _POSITION_WEIGHT,
) -> Summary:  # fmt: skip
    """The extractive :class:`Summary` of the already-split ``source`` sentences."""
    from .models import MINILM, sentence_encoder

    if kind not in CENTRALITIES:
        raise ValueError(f"extract(): kind must be one of {CENTRALITIES}, got {kind!r}")
    pool = candidates(source)
    embeddings = (encoder or sentence_encoder()).encode([source[i] for i in pool])  # (n, 384)
    local = select(embeddings, k, kind=kind, position_weight=position_weight, diversity=diversity)
    scores = relevance(embeddings, kind=kind, position_weight=position_weight)
    picked = tuple(pool[i] for i in local)
    chosen = tuple(source[i] for i in picked)
    return Summary(" ".join(chosen), chosen, picked, tuple(float(scores[i]) for i in local), "extractive",
                   len(source), MINILM)  # fmt: skip


def _count(n: int, sentences: int, ratio: float | None) -> int:
    if ratio is not None:
        return max(1, round(ratio * n))
    return sentences


def _check_arguments(text, sentences, ratio, method) -> None:
    if not isinstance(text, str):
        raise TypeError(f"summarize(): text must be a str, got {type(text).__name__}; read files with read_text()")
    if not text.strip():
        raise ValueError("summarize(): text is empty; there is nothing to summarize")
    if method not in METHODS:
        raise ValueError(f"summarize(): method must be one of {METHODS}, got {method!r}")
    if isinstance(sentences, bool) or not isinstance(sentences, int) or sentences < 1:
        raise ValueError(f"summarize(): sentences must be a positive int, got {sentences!r}")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1):
        raise ValueError(f"summarize(): ratio must be a fraction in (0, 1], e.g. 0.2, got {ratio!r}")
