"""SQuAD v1.1 answer metrics: exact match and token F1 after normalization.

Normalization (as in the official ``evaluate-v1.1.py``): lower-case, drop ASCII
punctuation, drop the articles *a*, *an*, *the*, collapse whitespace. With several
gold answers, a prediction gets the best score over them.

Example:
    >>> exact_match("The Euro.", ["euro"]), round(f1_score("Japanese yen", ["the Japanese Yen", "JPY"]), 2)
    (1.0, 1.0)
    >>> round(f1_score("the yen of Japan", ["Japanese yen"]), 2)
    0.4
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

__all__ = ["normalize_answer", "exact_match", "f1_score"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if the normalized prediction equals a normalized gold answer, else 0.0."""
    _check(answers)
    return float(any(normalize_answer(prediction) == normalize_answer(a) for a in answers))


def f1_score(prediction: str, answers: Sequence[str]) -> float:
    """Best token-overlap F1 between the prediction and a gold answer."""
    _check(answers)
    return max(_f1(normalize_answer(prediction).split(), normalize_answer(a).split()) for a in answers)


def _f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _check(answers) -> None:
    if isinstance(answers, str) or not answers:
        raise ValueError(f"answers must be a non-empty list of strings, got {answers!r}")
