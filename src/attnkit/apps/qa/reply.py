"""From a chat model's reply to a short answer: drop the restated question.

Small instruct models often answer in a full sentence that repeats the question
("The French name for Chad is Tchad."). :func:`short_answer` keeps the first line
and, when the sentence is ``<restated question> is <answer>`` or ``<answer> is
<restated question>`` — the restated side made only of the question's words and
a few function words, within the clause around the verb — keeps the answer side. Anything else
is returned as it is (minus a final period and quotes). The evaluation reports
scores on both the raw reply and this short answer.

Example:
    >>> short_answer("The French name for Chad is Tchad.", "What is the French name for Chad?")
    'Tchad'
    >>> short_answer("Mongolian is the official language of Mongolia.", "What is an official language of Mongolia?")
    'Mongolian'
    >>> short_answer("Euro", "Which currency is used in Austria?")
    'Euro'
"""

from __future__ import annotations

import re

__all__ = ["short_answer", "first_line"]

_COPULA = re.compile(r"\b(?:is|are|was|were)(?: (?:called|known as|named|written as))?\b", re.IGNORECASE)
_FUNCTION_WORDS = frozenset("the a an of in for to on at by and its their own answer".split())
_QUESTION_WORDS = frozenset("what which who whom whose where when how why is are was were does do did".split())
_WORD = re.compile(r"\w+", re.UNICODE)


def first_line(reply: str) -> str:
    """The first non-empty line of ``reply``, stripped."""
    return next((line.strip() for line in reply.strip().splitlines() if line.strip()), "")


def short_answer(reply: str, question: str) -> str:
    """The answer part of ``reply`` to ``question`` (see the module docstring)."""
    line = first_line(reply)
    asked = {w.lower() for w in _WORD.findall(question)}
    for m in _COPULA.finditer(line):
        before, after = line[: m.start()].split(",")[-1], line[m.end() :].split(",")[0]  # within one clause
        if _restates(before, asked) and after.strip():
            return _clean(after)
        if _restates(after, asked) and before.strip():
            return _clean(before)
    return _clean(line)


def _restates(text: str, asked: set[str]) -> bool:
    """Only words of the question (or function words), and at least one content word of it."""
    words = [w.lower() for w in _WORD.findall(text)]
    content = [w for w in words if w not in _FUNCTION_WORDS and w not in _QUESTION_WORDS]
    return bool(content) and all(w in asked or w in _FUNCTION_WORDS for w in words)


def _clean(text: str) -> str:
    return text.strip().rstrip(".!").strip().strip("\"'“”‘’`").strip()
