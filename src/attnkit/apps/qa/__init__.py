"""Question answering: MiniLM retrieval + SmolLM2 answers (``attnkit qa``).

* :func:`answer` — ``answer(question, contexts=None) -> Answer``: retrieval-augmented
  with contexts, closed-book without;
* :func:`evaluate` — exact match, token F1 and retrieval accuracy on questions built
  from CLDR facts (``babel``), beside random-sentence and most-frequent-answer baselines;
* :mod:`~attnkit.apps.qa.metrics` — SQuAD normalization, ``exact_match``, ``f1_score``.

Example:
    >>> from attnkit.apps.qa import exact_match
    >>> exact_match("the Euro", ["Euro"])
    1.0
"""

from ..._lazy import lazy_exports

__all__ = [
    "answer",
    "Answer",
    "evaluate",
    "QAReport",
    "Scores",
    "build_questions",
    "Question",
    "exact_match",
    "f1_score",
    "normalize_answer",
    "retrieve",
    "split_passages",
    "Evidence",
    "Passage",
]

#: public name -> the module that defines it; imported on first use, so `attnkit ... --help` needs no torch
__getattr__, __dir__ = lazy_exports(__name__, {
    "answer": ".core",
    "Answer": ".core",
    "evaluate": ".evaluate",
    "QAReport": ".evaluate",
    "Scores": ".evaluate",
    "build_questions": ".facts",
    "Question": ".facts",
    "exact_match": ".metrics",
    "f1_score": ".metrics",
    "normalize_answer": ".metrics",
    "retrieve": ".retrieval",
    "split_passages": ".retrieval",
    "Evidence": ".retrieval",
    "Passage": ".retrieval",
})
