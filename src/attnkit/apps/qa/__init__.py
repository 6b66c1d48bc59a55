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

from .core import Answer, answer
from .evaluate import QAReport, Scores, evaluate
from .facts import Question, build_questions
from .metrics import exact_match, f1_score, normalize_answer
from .retrieval import Evidence, Passage, retrieve, split_passages

__all__ = ["answer", "Answer", "evaluate", "QAReport", "Scores", "build_questions", "Question", "exact_match",
           "f1_score", "normalize_answer", "retrieve", "split_passages", "Evidence", "Passage"]
