"""The ``numbers-dates`` corpus: English numbers and dates -> German, French, Spanish or Italian.

Generated on the spot, no download: cardinals and ordinals with ``num2words``
(``"two hundred and forty-one"`` -> ``"zweihunderteinundvierzig"``), dates with
``babel`` in five formats (``"Friday, March 5, 2021"`` -> ``"Freitag, 5. März 2021"``,
``"3/5/2021"`` -> ``"5.3.2021"``, ``"March 2021"`` -> ``"März 2021"``, ...). A date whose
English text two formats share but translate differently ("May 6, 1985") is left out.

**Held-out values.** The score must measure generalization, not memory, so the split
is made on *values*, before any sentence is generated: a seeded 10% of the numbers
21..9999 and 10% of the years 1900..2099 belong to the test split only, another 5%
to the valid split only. A test number is never seen in training, as a cardinal or
as an ordinal; a test year never appears in a training date. Numbers 0..20 (the
irregular words every other number is built from) are always in training.

Sizes: ``size`` pairs in total, 90% train / 5% valid / 5% test, each split 40%
cardinals, 20% ordinals, 40% dates (fewer when a split runs out of distinct values).

Example:
    >>> corpus = generate_numbers_dates("en", "fr", seed=0, size=100)
    >>> len(corpus.train), len(corpus.valid), len(corpus.test)
    (90, 5, 5)
    >>> held = held_out_values(seed=0)
    >>> sorted(held["numbers"]["test"])[:1] != sorted(held["numbers"]["valid"])[:1]
    True
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable

from .corpus import Corpus, Pair, normalize_text

__all__ = ["TARGET_LOCALES", "generate_numbers_dates", "held_out_values", "DATE_FORMATS"]

TARGET_LOCALES = {"de": "de_DE", "fr": "fr_FR", "es": "es_ES", "it": "it_IT"}  #: target language -> babel locale
SOURCE_LOCALE = "en_US"
NUMBERS = range(0, 10000)  # cardinals and ordinals up to 9999
ALWAYS_TRAIN = range(0, 21)  # irregular atoms ("zwölf", "seize"): never held out
YEARS = range(1900, 2100)  # years of the generated dates
DATE_FORMATS = ("medium", "long", "full", "yMMMM", "yMd")  # babel format names, then skeletons
HOLD_OUT = (("test", 0.10), ("valid", 0.05))  # fraction of the values reserved for each split
SPLIT_SHARES = (("valid", 0.05), ("test", 0.05))  # fraction of the pairs in each evaluation split
KIND_SHARES = (("cardinal", 0.4), ("ordinal", 0.2))  # the rest are dates


def held_out_values(seed: int = 0) -> dict[str, dict[str, set[int]]]:
    """Which numbers and years belong to each split: ``{"numbers"|"years": {split: set}}``.

    Example:
        >>> held = held_out_values(seed=0)
        >>> len(held["years"]["test"]), len(held["years"]["valid"]), len(held["years"]["train"])
        (20, 10, 170)
    """
    numbers = _assign([n for n in NUMBERS if n not in ALWAYS_TRAIN], random.Random(f"numbers:{seed}"))
    numbers["train"] |= set(ALWAYS_TRAIN)
    return {"numbers": numbers, "years": _assign(list(YEARS), random.Random(f"years:{seed}"))}


def _assign(values: list[int], rng: random.Random) -> dict[str, set[int]]:
    rng.shuffle(values)
    out, start = {}, 0
    for split, fraction in HOLD_OUT:
        n = round(len(values) * fraction)
        out[split] = set(values[start : start + n])
        start += n
    out["train"] = set(values[start:])
    return out


def generate_numbers_dates(source: str, target: str, *, seed: int = 0, size: int = 20000) -> Corpus:
    """Generate ``size`` pairs ``source -> target`` (source must be ``"en"``) in held-out splits."""
    if source != "en" or target not in TARGET_LOCALES:
        pairs = ", ".join(f"en-{t}" for t in TARGET_LOCALES)
        raise ValueError(
            f"load_corpus('numbers-dates'): pair {source}-{target} is not available; choose one of {pairs}"
        )
    held = held_out_values(seed)
    counts = _split_counts(size)
    rng = random.Random(f"pairs:{seed}")
    splits = {
        split: tuple(_generate_split(target, held["numbers"][split], held["years"][split], n, rng))
        for split, n in counts.items()
    }
    note = (
        f"held out: {len(held['numbers']['test'])} numbers and {len(held['years']['test'])} years only in test, "
        f"{len(held['numbers']['valid'])} numbers and {len(held['years']['valid'])} years only in valid "
        f"(numbers 0..{NUMBERS[-1]}, years {YEARS[0]}..{YEARS[-1]})"
    )
    return Corpus("numbers-dates", source, target, splits["train"], splits["valid"], splits["test"], seed, note)


def _split_counts(size: int) -> dict[str, int]:
    evaluation = {split: max(1, round(size * share)) for split, share in SPLIT_SHARES}
    return {"train": size - sum(evaluation.values()), **evaluation}


def _generate_split(target: str, numbers: set[int], years: set[int], count: int, rng: random.Random) -> list[Pair]:
    """``count`` distinct pairs: cardinals, ordinals and dates drawn from this split's values."""
    pairs: list[Pair] = []
    pool = sorted(numbers)
    for kind, share in KIND_SHARES:
        n = min(round(count * share), len(pool))
        spell = _speller(kind)
        pairs += [(spell(v, "en"), spell(v, target)) for v in sorted(rng.sample(pool, n))]
    pairs += _dates(target, sorted(years), count - len(pairs), rng)
    rng.shuffle(pairs)
    return pairs


def _speller(kind: str) -> Callable[[int, str], str]:
    from num2words import num2words

    return lambda value, lang: num2words(value, to=kind, lang=lang)


def _dates(target: str, years: list[int], count: int, rng: random.Random) -> list[Pair]:
    """``count`` distinct date pairs (English source) with years from ``years``."""
    from babel import Locale

    src_locale, tgt_locale = Locale.parse(SOURCE_LOCALE), Locale.parse(TARGET_LOCALES[target])
    seen: dict[str, str] = {}
    attempts = 0
    while len(seen) < count and attempts < 20 * count:
        attempts += 1
        year = rng.choice(years)
        day = datetime.date(year, 1, 1) + datetime.timedelta(days=rng.randrange(365))
        fmt = rng.choice(DATE_FORMATS)
        source = _format_date(day, fmt, src_locale)
        if source not in seen and not _ambiguous(day, fmt, source, src_locale, tgt_locale):
            seen[source] = _format_date(day, fmt, tgt_locale)
    return list(seen.items())


def _ambiguous(day: datetime.date, fmt: str, source: str, src_locale, tgt_locale) -> bool:
    """True when another format writes the same English text but a different translation.

    English "medium" and "long" coincide for May ("May 6, 1985": "MMM d, y" and "MMMM d, y"),
    while German writes "06.05.1985" and "6. Mai 1985": no model could know which one the
    reference holds, so such sources are left out of every split.
    """
    target = _format_date(day, fmt, tgt_locale)
    return any(
        _format_date(day, other, src_locale) == source and _format_date(day, other, tgt_locale) != target
        for other in DATE_FORMATS
        if other != fmt
    )


def _format_date(day: datetime.date, fmt: str, locale) -> str:
    from babel.dates import format_date, format_skeleton

    text = format_date(day, fmt, locale=locale) if fmt in ("short", "medium", "long", "full") else (
        format_skeleton(fmt, day, locale=locale)
    )  # fmt: skip
    return normalize_text(text)  # babel uses narrow no-break spaces in some locales
