"""Question answering: MiniLM retrieval + SmolLM2 answers (``attnkit qa``).

* :func:`answer` — ``answer(question, contexts=None) -> Answer``: retrieval-augmented
  with contexts, closed-book without;
* :func:`evaluate` — exact match, token F1 and retrieval accuracy on questions built
  from CLDR facts (``babel``), beside random-sentence and most-frequent-answer baselines;
* :mod:`~attnkit.apps.qa.metrics` — SQuAD normalization, ``exact_match``, ``f1_score``.

Example:
    >>> from attnkit.apps.qa import exact_match, normalize_answer
    >>> exact_match("the Euro", ["Euro"])
    1.0
    >>> normalize_answer("The  Euro!")  # SQuAD normalization: case, punctuation, articles, spaces
    'euro'

    What :func:`answer` returns (an :class:`Answer` with its :class:`Evidence`, each a
    retrieved :class:`Passage`), built here by hand:

    >>> from attnkit.apps.qa import Answer, Evidence, Passage, Question, QAReport, Scores
    >>> passage = Passage("Rome is the capital of Italy.", source="capitals.txt", index=0, line=1)
    >>> a = Answer("Capital of Italy?", "Rome", "Rome.", (Evidence(passage, 0.82),),
    ...            "retrieval-augmented", "SmolLM2-135M-Instruct", 61)
    >>> a.text, a.evidence[0].passage.source, a.evidence[0].to_dict()["score"]
    ('Rome', 'capitals.txt', 0.82)

    What :func:`evaluate` scores: :class:`Question` objects, summed up in a :class:`QAReport`
    of :class:`Scores` per system (None where a system does not do that part):

    >>> q = Question("IT:capital", "What is the capital of Italy?", ("Rome",), "capital",
    ...              ("Rome is the capital of Italy.",), 0, "Rome is the capital of Italy.")
    >>> exact_match(a.text, q.answers)
    1.0
    >>> systems = {"attnkit": Scores(1.0, 1.0, 1.0, 1.0), "random sentence": Scores(None, None, 0.0, None)}
    >>> report = QAReport(n=1, seed=0, distractors=0, top_k=3, systems=systems, by_relation={})
    >>> report.systems["random sentence"].exact_match is None
    True
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
