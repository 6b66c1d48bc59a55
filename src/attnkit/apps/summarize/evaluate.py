"""ROUGE of one-sentence extractive summaries against human summaries found on this machine.

For each example of a corpus (:mod:`~attnkit.apps.summarize.corpora`) four systems
pick one candidate sentence (``MIN_WORDS`` words or more) of the document:

* ``lead`` — the first one (the classic, strong baseline for news and man pages);
* ``random`` — one drawn with ``random.Random(seed)``;
* ``attnkit`` — :func:`~attnkit.apps.summarize.core.extract` (MiniLM centrality, lead
  prior, MMR) with one sentence;
* ``oracle`` — the candidate with the best mean ROUGE F1 against the reference: the
  ceiling of any one-sentence extractive system on this data;
* ``abstractive`` (with ``abstractive=True``) — one sentence written by SmolLM2-135M-Instruct
  (:func:`~attnkit.apps.summarize.abstractive.generate_summary`: greedy, no repeated 3-grams),
  not limited to the document's sentences.

Scores are ROUGE-1/2/L F1 (``rouge-score``, Porter stemming), averaged over examples.
References are one line, so one extracted sentence is the fair length.

Example:
    >>> report = evaluate("docstrings", limit=3, seed=0)  # doctest: +SKIP
    >>> [s.name for s in report.systems]  # doctest: +SKIP
    ['lead', 'random', 'attnkit', 'oracle']
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass

from .core import DEFAULTS, candidates, extract
from .corpora import Example, load_corpus

__all__ = ["evaluate", "EvalReport", "SystemScore", "rouge_scorer", "SYSTEMS"]

SYSTEMS = ("lead", "random", "attnkit", "oracle")  #: always scored; "abstractive" is added on request
_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@dataclass(frozen=True)
class SystemScore:
    """Mean ROUGE F1 of one system over the examples (0..1)."""

    name: str  # "lead", "random", "attnkit", "oracle" or "abstractive"
    rouge1: float  # unigram overlap F1
    rouge2: float  # bigram overlap F1
    rougeL: float  # longest-common-subsequence F1


@dataclass(frozen=True)
class EvalReport:
    """What :func:`evaluate` measured."""

    corpus: str  # "manpages" or "docstrings"
    split: str | None  # "dev", "test" or None (both)
    seed: int  # sampling (and random baseline) seed
    n: int  # examples scored
    systems: tuple[SystemScore, ...]  # one row per system, in SYSTEMS order
    settings: dict  # extractive settings used for attnkit
    picks: tuple[dict, ...]  # per example: id, reference and each system's sentence

    def to_dict(self, *, with_picks: bool = False) -> dict:
        """Plain types, ready for ``json.dumps``."""
        out = {"corpus": self.corpus, "split": self.split, "seed": self.seed, "n": self.n, "settings": self.settings,
               "systems": [asdict(s) for s in self.systems]}  # fmt: skip
        return out | ({"picks": list(self.picks)} if with_picks else {})


def rouge_scorer():
    """ROUGE-1/2/L with the Porter stemmer (``rouge_score.rouge_scorer.RougeScorer``)."""
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(list(_ROUGE_TYPES), use_stemmer=True)


def evaluate(
    corpus: str,
    *,
    limit: int = 100,
    seed: int = 0,
    split: str | None = "test",
    encoder=None,
    settings: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
    abstractive: bool = False,
    chat=None,
) -> EvalReport:
    """Score lead, random, attnkit and oracle one-sentence summaries on ``limit`` examples.

    Args:
        corpus: ``"manpages"`` or ``"docstrings"``.
        limit: number of examples (a deterministic sample, see ``seed``).
        seed: shuffles the files and draws the random baseline.
        split: ``"test"`` (default), ``"dev"`` (for tuning ``settings``) or None (both).
        encoder: a :class:`~attnkit.pretrained.SentenceEncoder` (default: packaged MiniLM).
        settings: extractive options (``kind``, ``position_weight``, ``diversity``); defaults
            :data:`~attnkit.apps.summarize.core.DEFAULTS`.
        progress: called as ``progress(done, total)`` after each example.
        abstractive: also score SmolLM2's one-sentence summaries (one generation per example).
        chat: the :class:`~attnkit.pretrained.ChatModel` for ``abstractive`` (default: packaged SmolLM2).
    """
    settings = DEFAULTS | (settings or {})
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"evaluate(): unknown settings {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    examples = load_corpus(corpus, limit=limit, seed=seed, split=split)
    scorer, rng = rouge_scorer(), random.Random(seed)
    names = SYSTEMS + (("abstractive",) if abstractive else ())
    if abstractive and chat is None:
        from .models import chat_model

        chat = chat_model()
    totals = {name: dict.fromkeys(_ROUGE_TYPES, 0.0) for name in names}
    picks = []
    for done, example in enumerate(examples, 1):
        chosen = _pick(example, rng, scorer, encoder, settings)
        if abstractive:
            chosen["abstractive"] = _write(chat, example)
        for name, sentence in chosen.items():
            for kind, value in _f1(scorer, example.reference, sentence).items():
                totals[name][kind] += value
        picks.append({"id": example.id, "reference": example.reference} | chosen)
        if progress:
            progress(done, len(examples))
    n = max(len(examples), 1)
    systems = tuple(SystemScore(name, *(totals[name][k] / n for k in _ROUGE_TYPES)) for name in names)
    return EvalReport(corpus, split, seed, len(examples), systems, settings, tuple(picks))


def _pick(example: Example, rng: random.Random, scorer, encoder, settings: dict) -> dict[str, str]:
    """Each system's one sentence for ``example``."""
    sentences = list(example.sentences)
    pool = candidates(sentences)
    ours = extract(sentences, 1, encoder=encoder, **settings).sentences[0]
    oracle = max(pool, key=lambda i: sum(_f1(scorer, example.reference, sentences[i]).values()))
    return {"lead": sentences[pool[0]], "random": sentences[rng.choice(pool)], "attnkit": ours,
            "oracle": sentences[oracle]}  # fmt: skip


def _write(chat, example: Example) -> str:
    """SmolLM2's one-sentence summary of the example's document ("" if the document does not fit)."""
    from .abstractive import generate_summary

    try:
        return generate_summary(chat, example.document, sentences=1)
    except ValueError:  # longer than the model's context: scored as an empty summary
        return ""


def _f1(scorer, reference: str, candidate: str) -> dict[str, float]:
    scores = scorer.score(reference, candidate)
    return {kind: scores[kind].fmeasure for kind in _ROUGE_TYPES}
