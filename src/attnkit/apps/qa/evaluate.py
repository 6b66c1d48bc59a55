"""Score question answering on the CLDR question set: exact match, token F1, retrieval accuracy.

For each question of :func:`~attnkit.apps.qa.facts.build_questions` (its document
among distractors):

* **retrieval accuracy** — the top retrieved sentence is the supporting sentence or
  contains a gold answer (``recall@k``: one of the ``top_k`` does);
* **EM / F1** — SQuAD-normalized (:mod:`~attnkit.apps.qa.metrics`) of SmolLM2's answer
  from the retrieved sentences: the short answer (:func:`~attnkit.apps.qa.reply.short_answer`)
  and, as ``"attnkit, raw reply"``, the first line of the reply as generated.

Baselines beside them: a **random sentence** of the context as the retrieval, and the
**most frequent answer** of each relation in the question set as the answer (what a
system that ignores the context and the entity gets). ``closed_book=True`` also asks
SmolLM2 without context, which shows what the retrieval adds.

Example:
    >>> report = evaluate(limit=2, seed=0)  # doctest: +SKIP
    >>> sorted(report.systems)  # doctest: +SKIP
    ['attnkit', 'most frequent answer', 'random sentence']
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from .facts import Question, build_questions
from .metrics import exact_match, f1_score, normalize_answer
from .reply import first_line
from .retrieval import Evidence, split_passages

__all__ = ["evaluate", "QAReport", "Scores"]


@dataclass(frozen=True)
class Scores:
    """Mean scores of one system (0..1); None where the system does not do that part."""

    exact_match: float | None  # SQuAD exact match
    f1: float | None  # SQuAD token F1
    retrieval_at_1: float | None  # top sentence supports the answer
    retrieval_at_k: float | None  # one of the top_k sentences does


@dataclass(frozen=True)
class QAReport:
    """What :func:`evaluate` measured."""

    n: int  # questions
    seed: int  # question sampling seed
    distractors: int  # distractor documents per question
    top_k: int  # sentences retrieved into the prompt
    systems: dict[str, Scores]  # "attnkit", "random sentence", "most frequent answer" (+ "closed-book")
    by_relation: dict[str, dict[str, float]]  # attnkit EM/F1/retrieval@1 per relation
    predictions: tuple[dict, ...] = field(default=())  # per question: id, question, answers, prediction, top passage

    def to_dict(self, *, with_predictions: bool = False) -> dict:
        """Plain types, ready for ``json.dumps``."""
        out = {"n": self.n, "seed": self.seed, "distractors": self.distractors, "top_k": self.top_k,
               "systems": {k: vars(v) for k, v in self.systems.items()}, "by_relation": self.by_relation}  # fmt: skip
        return out | ({"predictions": list(self.predictions)} if with_predictions else {})


def supports(evidence: Evidence, q: Question) -> bool:
    """The passage is the supporting sentence or states a gold answer."""
    text = normalize_answer(evidence.passage.text)
    return evidence.passage.text == q.support or any(f" {normalize_answer(a)} " in f" {text} " for a in q.answers)


def evaluate(
    *,
    limit: int = 50,
    seed: int = 0,
    distractors: int = 4,
    top_k: int = 3,
    closed_book: bool = False,
    encoder=None,
    chat=None,
    progress: Callable[[int, int], None] | None = None,
) -> QAReport:
    """Answer ``limit`` CLDR questions (see the module docstring) and score them."""
    from .core import answer

    questions = build_questions(limit=limit, seed=seed, distractors=distractors)
    rng = random.Random(seed)
    rows, predictions = [], []
    for i, q in enumerate(questions):
        got = answer(q.question, list(q.contexts), top_k=top_k, encoder=encoder, chat=chat)
        alone = answer(q.question, None, encoder=encoder, chat=chat) if closed_book else None
        row, prediction = _score(q, got, alone, rng)
        rows.append(row)
        predictions.append(prediction)
        if progress:
            progress(i + 1, len(questions))
    systems = _systems(rows, questions, closed_book)
    return QAReport(len(questions), seed, distractors, top_k, systems, _by_relation(rows), tuple(predictions))


def _score(q: Question, got, alone, rng: random.Random) -> tuple[dict, dict]:
    """Scores of one question (a row) and what was predicted (for the JSON report)."""
    evidence, passages = got.evidence, split_passages(list(q.contexts))
    raw = first_line(got.reply)
    row = {"relation": q.relation, "em": exact_match(got.text, q.answers), "f1": f1_score(got.text, q.answers),
           "raw_em": exact_match(raw, q.answers), "raw_f1": f1_score(raw, q.answers),
           "r1": float(supports(evidence[0], q)), "rk": float(any(supports(e, q) for e in evidence)),
           "random": float(supports(Evidence(rng.choice(passages), 0.0), q))}  # fmt: skip
    prediction = {"id": q.id, "question": q.question, "answers": list(q.answers), "prediction": got.text,
                  "reply": got.reply, "top_passage": evidence[0].passage.text}  # fmt: skip
    if alone is not None:
        row |= {"cb_em": exact_match(alone.text, q.answers), "cb_f1": f1_score(alone.text, q.answers)}
        prediction["closed_book"] = alone.text
    return row, prediction


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def _systems(rows: list[dict], questions: list[Question], closed_book: bool) -> dict[str, Scores]:
    frequent = _most_frequent_answers(questions)
    guess = [frequent[q.relation] for q in questions]
    guessed = list(zip(guess, questions, strict=True))
    systems = {
        "attnkit": Scores(_mean(r["em"] for r in rows), _mean(r["f1"] for r in rows), _mean(r["r1"] for r in rows),
                          _mean(r["rk"] for r in rows)),
        "attnkit, raw reply": Scores(_mean(r["raw_em"] for r in rows), _mean(r["raw_f1"] for r in rows), None, None),
        "random sentence": Scores(None, None, _mean(r["random"] for r in rows), None),
        "most frequent answer": Scores(_mean(exact_match(g, q.answers) for g, q in guessed),
                                       _mean(f1_score(g, q.answers) for g, q in guessed), None, None),
    }  # fmt: skip
    if closed_book:
        em, f1 = _mean(r["cb_em"] for r in rows), _mean(r["cb_f1"] for r in rows)
        systems["closed-book SmolLM2"] = Scores(em, f1, None, None)
    return systems


def _most_frequent_answers(questions: list[Question]) -> dict[str, str]:
    """Per relation, the gold answer that occurs most often (ties: alphabetical)."""
    counts: dict[str, Counter] = {}
    for q in questions:
        counts.setdefault(q.relation, Counter()).update(set(q.answers))
    return {rel: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for rel, c in counts.items()}


def _by_relation(rows: list[dict]) -> dict[str, dict[str, float]]:
    out = {}
    for rel in sorted({r["relation"] for r in rows}):
        mine = [r for r in rows if r["relation"] == rel]
        out[rel] = {"n": len(mine), "exact_match": _mean(r["em"] for r in mine), "f1": _mean(r["f1"] for r in mine),
                    "retrieval_at_1": _mean(r["r1"] for r in mine)}  # fmt: skip
    return out
