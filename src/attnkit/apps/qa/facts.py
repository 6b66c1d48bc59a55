"""A question set built from real facts shipped with ``babel`` (Unicode CLDR), no download.

For each territory with a currency and an official (or de facto official)
language, CLDR gives: the currency's English name, ISO code and symbol; the
official languages' English names; each language's own name for itself
(``Deutsch``); and the territory's name in French. :func:`territory_facts` collects
them; :func:`document` writes them as a short encyclopedic paragraph, one fact per
sentence, each sentence naming the territory (or language) so it stands alone.

:func:`build_questions` draws territories with ``random.Random(seed)`` and asks one
question per territory, cycling through :data:`RELATIONS` (a territory whose answer
would repeat the question, such as a French name equal to the English one, or
repeat an earlier question's answer, such as the symbol of the Euro, is passed over:
each question tests a distinct fact); its context is the
territory's document plus ``distractors`` documents of other territories, written
from the same templates, so retrieval has to find the right entity. The question
is phrased differently from the supporting sentence.

Example:
    >>> q = build_questions(limit=1, seed=0)[0]
    >>> q.support in q.contexts[q.support_doc], len(q.contexts)
    (True, 5)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Facts", "Question", "territory_facts", "document", "build_questions", "RELATIONS"]

RELATIONS = ("currency", "language", "french_name", "symbol", "autonym")  #: the kinds of questions asked


@dataclass(frozen=True)
class Facts:
    """What CLDR says about one territory."""

    code: str  # ISO 3166 code, e.g. "JP"
    name: str  # English name, e.g. "Japan"
    currency: str  # English currency name, e.g. "Japanese Yen"
    currency_code: str  # ISO 4217 code, e.g. "JPY"
    symbol: str  # the currency's symbol in English texts, e.g. "¥" (may equal the code)
    languages: tuple[str, ...]  # English names of the official languages, e.g. ("Japanese",)
    autonym: str  # the first official language's name for itself, e.g. "日本語"
    french_name: str  # the territory's name in French, e.g. "Japon"


@dataclass(frozen=True)
class Question:
    """One question with its context documents and gold answers."""

    id: str  # "JP:currency"
    question: str  # the question text
    answers: tuple[str, ...]  # acceptable answers (SQuAD-style: the best match counts)
    relation: str  # one of RELATIONS
    contexts: tuple[str, ...]  # documents: the supporting one among distractors, shuffled
    support_doc: int  # index of the supporting document in contexts
    support: str  # the sentence that states the answer


@lru_cache(maxsize=1)
def territory_facts() -> tuple[Facts, ...]:
    """Facts of every territory with a currency and an official language, sorted by code."""
    from babel import Locale

    en, fr = Locale("en"), Locale("fr")
    out = []
    for code in sorted(en.territories):
        facts = _facts(code, en, fr)
        if facts is not None:
            out.append(facts)
    return tuple(out)


def _facts(code: str, en, fr) -> Facts | None:
    from babel import Locale, UnknownLocaleError, languages, numbers

    if not (len(code) == 2 and code.isalpha()) or code in ("EU", "EZ", "UN", "ZZ"):
        return None
    currencies = numbers.get_territory_currencies(code)
    official = [x for x in languages.get_official_languages(code, de_facto=True) if x in en.languages]
    if not currencies or not official or code not in fr.territories:
        return None
    cur = currencies[0]
    try:
        autonym = Locale.parse(official[0]).languages.get(official[0])
    except (UnknownLocaleError, ValueError):
        autonym = None
    return Facts(code, en.territories[code], numbers.get_currency_name(cur, locale="en"), cur,
                 numbers.get_currency_symbol(cur, locale="en"), tuple(en.languages[x] for x in official),
                 autonym or en.languages[official[0]], fr.territories[code])  # fmt: skip


def _sentences(f: Facts) -> dict[str, str]:
    """The document's sentences, keyed by the relation each one states."""
    langs = _join(f.languages)
    verb, noun = ("is", "the official language") if len(f.languages) == 1 else ("are", "the official languages")
    return {
        "currency": f"The currency of {f.name} is the {f.currency}, whose ISO code is {f.currency_code}.",
        "symbol": f"In {f.name}, prices in {f.currency} are written with the symbol {f.symbol}.",
        "language": f"{langs} {verb} {noun} of {f.name}.",
        "autonym": f"Speakers of {f.languages[0]} call their own language {f.autonym}.",
        "french_name": f"In the French language, {f.name} is known as {f.french_name}.",
    }


def document(f: Facts) -> str:
    """The territory's paragraph: one fact per sentence."""
    return " ".join(_sentences(f).values())


def _question(f: Facts, relation: str) -> tuple[str, tuple[str, ...]]:
    """The question text and its gold answers."""
    return {
        "currency": (f"Which currency is used in {f.name}?", (f.currency, f.currency_code)),
        "symbol": (f"What symbol stands for the {f.currency}?", (f.symbol,)),
        "language": (f"What is an official language of {f.name}?", f.languages),
        "autonym": (f"What is the native name of the {f.languages[0]} language?", (f.autonym,)),
        "french_name": (f"What is the French name for {f.name}?", (f.french_name,)),
    }[relation]


def build_questions(*, limit: int = 50, seed: int = 0, distractors: int = 4) -> list[Question]:
    """``limit`` questions, each with its document among ``distractors`` others (see module docstring)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"build_questions(): limit must be a positive int, got {limit!r}")
    if isinstance(distractors, bool) or not isinstance(distractors, int) or distractors < 0:
        raise ValueError(f"build_questions(): distractors must be an int >= 0, got {distractors!r}")
    facts = list(territory_facts())
    rng = random.Random(seed)
    order = rng.sample(facts, len(facts))
    out: list[Question] = []
    asked: set[tuple[str, tuple[str, ...]]] = set()
    for f in order:
        relation = RELATIONS[len(out) % len(RELATIONS)]
        text, answers = _question(f, relation)
        if not _informative(f, relation) or (relation, answers) in asked:
            continue  # the next territory gets this relation
        asked.add((relation, answers))
        others = rng.sample([g for g in facts if g.code != f.code], distractors)
        docs = [document(g) for g in others] + [document(f)]
        rng.shuffle(docs)
        out.append(Question(f"{f.code}:{relation}", text, answers, relation, tuple(docs),
                            docs.index(document(f)), _sentences(f)[relation]))  # fmt: skip
        if len(out) == limit:
            break
    return out


def _informative(f: Facts, relation: str) -> bool:
    """False when the answer is in the question (symbol = ISO code, autonym or French name = English name)."""
    from .metrics import normalize_answer

    if relation == "symbol":
        return f.symbol != f.currency_code and bool(normalize_answer(f.symbol))
    if relation == "autonym":
        return normalize_answer(f.autonym) != normalize_answer(f.languages[0])
    if relation == "french_name":
        return normalize_answer(f.french_name) != normalize_answer(f.name)
    return True


def _join(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
