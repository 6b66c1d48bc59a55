"""``answer(question, contexts)``: retrieval-augmented question answering, or closed-book without contexts.

With contexts: the documents are split into sentences, the ``top_k`` sentences most
similar to the question (MiniLM cosine, :mod:`~attnkit.apps.qa.retrieval`) are put in
the prompt as numbered context, and SmolLM2-135M-Instruct answers from them through
its chat template (greedy decoding). Two worked examples (with their own context)
precede the question, and the best sentence comes *last*, next to the question: the
135M model leans on what it read most recently. Measured on 15 CLDR questions
(seed 2): best-first EM/F1 0.20/0.31 with 2 sentences and 0.27/0.27 with 3;
best-last 0.40/0.51 with 2 and 0.47/0.52 with 3 (the default); one sentence 0.47/0.47.

Without contexts the question goes to the model alone (closed-book). If the prompt
would not fit the model's context window, the least similar sentences are dropped;
a question that alone does not fit is an error.

Example:
    >>> context = "Rome is the capital of Italy. Paris is in France."
    >>> a = answer("What is the capital of Italy?", [context])  # doctest: +SKIP
    >>> a.text, a.evidence[0].passage.text  # doctest: +SKIP
    ('Rome', 'Rome is the capital of Italy.')
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from .reply import short_answer
from .retrieval import Evidence, PassageIndex, split_passages

__all__ = ["Answer", "answer", "answer_many", "messages", "SYSTEM_GROUNDED", "SYSTEM_CLOSED_BOOK"]

SYSTEM_GROUNDED = ("You answer questions using only the given context. Reply with the answer alone: "
                   "a name, number or short phrase, not a sentence.")  # fmt: skip
SYSTEM_CLOSED_BOOK = ("You answer questions. Reply with the answer alone: "
                      "a name, number or short phrase, not a sentence.")  # fmt: skip
# Two worked examples (few-shot) teach the small model the expected form: the answer alone.
_EXAMPLE_CONTEXT = ("The tallest mountain of Peru is Huascarán.", "Lima is the capital of Peru.",
                    "Peruvians call their currency the sol.")  # fmt: skip
_EXAMPLES = (("What is the capital of Peru?", "Lima"), ("Which mountain is the highest in Peru?", "Huascarán"))
_RESERVED = 64  # tokens kept free for the reply when fitting the prompt into the context


@dataclass(frozen=True)
class Answer:
    """An answer and what it was grounded in."""

    question: str  # the question asked
    text: str  # the short answer, for scoring: the reply's first line without the restated question (reply.py)
    reply: str  # the model's answer as it wrote it (stripped): what `attnkit qa` prints
    evidence: tuple[Evidence, ...]  # the sentences given to the model, best first; () when closed-book
    mode: str  # "retrieval-augmented" or "closed-book"
    model: str  # the model that answered
    prompt_tokens: int  # length of the prompt the model read

    def to_dict(self) -> dict:
        """Plain types, ready for ``json.dumps``."""
        return {"question": self.question, "answer": self.reply, "short_answer": self.text, "mode": self.mode,
                "model": self.model, "prompt_tokens": self.prompt_tokens,
                "evidence": [e.to_dict() for e in self.evidence]}  # fmt: skip


def messages(question: str, evidence: Sequence[Evidence] = ()) -> list[dict[str, str]]:
    """The chat messages for ``question``, grounded in ``evidence`` when given.

    Example:
        >>> print(messages("Who?")[-1]["content"])
        Who?
    """
    if not evidence:  # no worked examples: their answers ("Lima") would leak into unrelated questions
        return [{"role": "system", "content": SYSTEM_CLOSED_BOOK}, {"role": "user", "content": question}]
    shots = [m for q, a in _EXAMPLES for m in ({"role": "user", "content": _grounded(_EXAMPLE_CONTEXT, q)},
                                                 {"role": "assistant", "content": a})]  # fmt: skip
    context = [e.passage.text for e in reversed(evidence)]  # best last: nearest the question (see module docstring)
    question_turn = {"role": "user", "content": _grounded(context, question)}
    return [{"role": "system", "content": SYSTEM_GROUNDED}, *shots, question_turn]


def _grounded(context: Sequence[str], question: str) -> str:
    numbered = "\n".join(f"[{i}] {text}" for i, text in enumerate(context, 1))
    return f"Context:\n{numbered}\n\nQuestion: {question}"


def answer(
    question: str,
    contexts: Sequence[str] | Mapping[str, str] | str | None = None,
    *,
    top_k: int = 3,
    max_new_tokens: int = 24,
    encoder=None,
    chat=None,
) -> Answer:
    """Answer ``question``, from ``contexts`` (documents: texts, or ``{name: text}``) when given.

    Args:
        question: the question.
        contexts: documents to ground the answer in; None (or empty) answers closed-book.
        top_k: sentences retrieved into the prompt.
        max_new_tokens: length limit of the answer.
        encoder, chat: models to use instead of the packaged MiniLM and SmolLM2.
    """
    _check_arguments(question, top_k, max_new_tokens)
    return next(answer_many([question], contexts, top_k=top_k, max_new_tokens=max_new_tokens, encoder=encoder,
                            chat=chat))  # fmt: skip


def answer_many(
    questions: Iterable[str],
    contexts: Sequence[str] | Mapping[str, str] | str | None = None,
    *,
    top_k: int = 3,
    max_new_tokens: int = 24,
    encoder=None,
    chat=None,
) -> Iterator[Answer]:
    """Answer each question as it comes (a lazy iterable: lines of standard input, a prompt).

    The models are loaded and the contexts split and embedded once, before the first
    question; every question then costs one question embedding and one generation.
    Arguments as in :func:`answer`; a bad question raises when its turn comes.

    Example:
        >>> questions = ["Capital of Italy?", "Capital of France?"]
        >>> answers = answer_many(questions, ["Rome is the capital of Italy."])  # doctest: +SKIP
        >>> [a.text for a in answers]  # doctest: +SKIP
        ['Rome', 'Paris']
    """
    from ..summarize.models import SMOLLM2, chat_model

    _check_arguments("?", top_k, max_new_tokens)
    chat = chat or chat_model()
    index = None
    if contexts:
        passages = split_passages(contexts)
        if not passages:
            raise ValueError("answer(): the contexts hold no sentences; give documents with some text")
        index = PassageIndex(passages, encoder=encoder)
    for question in questions:
        _check_arguments(question, top_k, max_new_tokens)
        check_question_fits(chat, question)
        evidence = index.search(question, k=top_k) if index is not None else []
        evidence, prompt_ids = _fit(chat, question, evidence)
        ids = chat.generate_ids(prompt_ids, max_new_tokens=max_new_tokens)
        reply = chat.tokenizer.decode(ids, skip_special_tokens=True).strip()
        mode = "retrieval-augmented" if index is not None else "closed-book"
        yield Answer(question, short_answer(reply, question), reply, tuple(evidence), mode, SMOLLM2, len(prompt_ids))


def check_question_fits(chat, question: str) -> None:
    """``ValueError`` if the question alone leaves no room for an answer in the model's context."""
    context = chat.model.config.max_len
    n = len(chat.prompt_ids(messages(question)))
    if n + _RESERVED > context:
        raise ValueError(
            f"answer(): the question is {n} tokens long (with the chat template), but the model reads at most "
            f"{context} tokens including the answer; shorten the question and put long material in --context files"
        )


def _fit(chat, question: str, evidence: list[Evidence]) -> tuple[list[Evidence], list[int]]:
    """Drop the weakest evidence until the prompt leaves ``_RESERVED`` tokens for the reply."""
    context = chat.model.config.max_len
    while True:
        ids = chat.prompt_ids(messages(question, evidence))
        if len(ids) + _RESERVED <= context or not evidence:
            return evidence, ids
        evidence = evidence[:-1]


def _check_arguments(question, top_k, max_new_tokens) -> None:
    if not isinstance(question, str):
        raise TypeError(f"answer(): question must be a str, got {type(question).__name__}")
    if not question.strip():
        raise ValueError("answer(): question is empty; ask something, e.g. answer('What is attention?')")
    for name, value in (("top_k", top_k), ("max_new_tokens", max_new_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"answer(): {name} must be a positive int, got {value!r}")
