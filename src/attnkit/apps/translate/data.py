"""Parallel corpora with fixed, seeded train/valid/test splits — made or found on this machine.

Three sources, named by a *spec* string (:func:`load_corpus`):

* ``"numbers-dates"`` (default): English numbers and dates and their German, French,
  Spanish or Italian forms, generated with ``num2words`` and ``babel``
  (:mod:`.numbers_dates`). The test split holds numbers and years never seen in training.
* ``"gettext"``: real human translations from the system's ``.mo`` message catalogs,
  cleaned (:mod:`.catalogs`).
* ``"tsv:PATH"``: your own file, one ``source<TAB>target`` pair per line.

Every text is normalized the same way (Unicode NFC, runs of whitespace -> one space,
stripped), so the tokenizer round-trips it exactly. Splits are disjoint by source
sentence: a source in the test split appears nowhere in training.

Example:
    >>> corpus = load_corpus("numbers-dates", "en-de", size=200, seed=0)
    >>> len(corpus.train) + len(corpus.valid) + len(corpus.test)
    200
    >>> corpus.summary().splits[0].name
    'train'
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from pathlib import Path

from .catalogs import read_catalog_pairs
from .corpus import Corpus, CorpusSummary, Pair, SplitSummary, normalize_text
from .numbers_dates import generate_numbers_dates

# Pair, Corpus, CorpusSummary, SplitSummary and normalize_text live in .corpus (below every
# source, so none imports another); they are re-exported here, where users load corpora.
__all__ = [
    "Pair",
    "Corpus",
    "CorpusSummary",
    "SplitSummary",
    "CORPORA",
    "load_corpus",
    "parse_pair",
    "normalize_text",
    "split_pairs",
    "read_tsv",
    "write_tsv",
]

CORPORA = ("numbers-dates", "gettext", "tsv:PATH")  #: the specs load_corpus() understands


# ---------------------------------------------------------------------- loading
def parse_pair(pair: str, fn: str = "load_corpus()") -> tuple[str, str]:
    """``"en-de"`` -> ``("en", "de")``, with a teaching error otherwise.

    Example:
        >>> parse_pair("en-fr")
        ('en', 'fr')
    """
    parts = pair.split("-") if isinstance(pair, str) else []
    if len(parts) != 2 or not all(re.fullmatch(r"[A-Za-z]{2,3}(_[A-Za-z]{2})?", p) for p in parts):
        raise ValueError(
            f"{fn}: pair must look like 'en-de' (source-target language codes), got {pair!r}"
        )
    return parts[0], parts[1]


def load_corpus(
    spec: str = "numbers-dates",
    pair: str | None = None,
    *,
    seed: int = 0,
    size: int | None = None,
    locale_root: str | Path | None = None,
) -> Corpus:
    """Load (or generate) a parallel corpus and split it, deterministically for a ``seed``.

    Args:
        spec: ``"numbers-dates"``, ``"gettext"`` or ``"tsv:PATH"``.
        pair: ``"en-de"`` style; default ``"en-de"`` (for a TSV: ``"src-tgt"``, a label only).
        seed: seed of the generator and of the split.
        size: numbers-dates: pairs to generate (default 20000); other corpora: keep at
            most this many pairs (a seeded sample), e.g. for quick experiments.
        locale_root: gettext: where the ``<lang>/LC_MESSAGES/*.mo`` catalogs live
            (default ``/usr/share/locale``).

    Example:
        >>> load_corpus("wikipedia")
        Traceback (most recent call last):
        ...
        ValueError: load_corpus(): spec must be one of ('numbers-dates', 'gettext', 'tsv:PATH'), got 'wikipedia'
    """
    if not isinstance(spec, str):
        raise TypeError(f"load_corpus(): spec must be a str such as 'numbers-dates', got {type(spec).__name__}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 3):
        raise ValueError(f"load_corpus(): size must be an int >= 3 (pairs for three splits), got {size!r}")
    if spec == "numbers-dates":
        src, tgt = parse_pair(pair or "en-de")
        return generate_numbers_dates(src, tgt, seed=seed, size=20000 if size is None else size)
    if spec == "gettext":
        src, tgt = parse_pair(pair or "en-de")
        pairs, found = read_catalog_pairs(src, tgt, root=locale_root)
        return _split_corpus(spec, src, tgt, pairs, seed, size, f"{found}; random split by source sentence")
    if spec.startswith("tsv:"):
        path = spec[len("tsv:"):]
        if not path:
            raise ValueError("load_corpus(): spec 'tsv:' needs a path, e.g. 'tsv:data/en-de.tsv'")
        src, tgt = parse_pair(pair or "src-tgt")
        pairs = read_tsv(path)
        return _split_corpus(spec, src, tgt, pairs, seed, size, f"{len(pairs)} lines of {path}; random split")
    raise ValueError(f"load_corpus(): spec must be one of {CORPORA}, got {spec!r}")


def _split_corpus(spec, src, tgt, pairs: list[Pair], seed: int, size: int | None, note: str) -> Corpus:
    if size is not None and len(pairs) > size:
        pairs = random.Random(seed + 1).sample(pairs, size)
    train, valid, test = split_pairs(pairs, seed=seed)
    return Corpus(spec, src, tgt, train, valid, test, seed, note)


def split_pairs(
    pairs: Iterable[Pair],
    *,
    seed: int = 0,
    valid_fraction: float = 0.05,
    test_fraction: float = 0.05,
    max_eval: int = 2000,
) -> tuple[tuple[Pair, ...], tuple[Pair, ...], tuple[Pair, ...]]:
    """Deduplicate by source sentence (first wins), shuffle with ``seed`` and cut three splits.

    Valid and test each get ``fraction`` of the pairs, at least 1 and at most ``max_eval``.

    Example:
        >>> train, valid, test = split_pairs([(str(i), str(-i)) for i in range(100)], seed=0)
        >>> len(train), len(valid), len(test)
        (90, 5, 5)
    """
    unique: dict[str, str] = {}
    for source, target in pairs:
        unique.setdefault(source, target)
    items = sorted(unique.items())  # independent of the input order
    if len(items) < 3:
        raise ValueError(
            f"split_pairs(): need at least 3 distinct source sentences for train/valid/test, got {len(items)}"
        )
    random.Random(seed).shuffle(items)
    n_test = min(max(1, round(len(items) * test_fraction)), max_eval)
    n_valid = min(max(1, round(len(items) * valid_fraction)), max_eval)
    test, valid, train = items[:n_test], items[n_test : n_test + n_valid], items[n_test + n_valid :]
    return tuple(train), tuple(valid), tuple(test)


# ---------------------------------------------------------------------- TSV files
def read_tsv(path: str | Path, *, max_errors_shown: int = 5) -> list[Pair]:
    """Read ``source<TAB>target`` lines; blank lines are skipped, text is normalized.

    Every malformed line is reported at once (line numbers, what was wrong, a hint).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.tsv"
        >>> _ = p.write_text("one\\teins\\n\\ntwo\\tzwei\\n", encoding="utf-8")
        >>> read_tsv(p)
        [('one', 'eins'), ('two', 'zwei')]
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise FileNotFoundError(
            f"read_tsv(): {str(path)!r} {what}; expected a UTF-8 text file with one source<TAB>target pair per line"
        )
    pairs: list[Pair] = []
    errors: list[str] = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            pair, error = _parse_tsv_line(raw)
            if error:
                errors.append(f"line {number}: {error}")
            elif pair:
                pairs.append(pair)
    if errors:
        shown = "; ".join(errors[:max_errors_shown])
        more = f" (and {len(errors) - max_errors_shown} more)" if len(errors) > max_errors_shown else ""
        raise ValueError(
            f"read_tsv(): {str(path)!r} has {len(errors)} malformed line(s): {shown}{more}. Each line must be "
            "source<TAB>target (exactly one tab, both sides non-empty, UTF-8)"
        )
    if not pairs:
        raise ValueError(f"read_tsv(): {str(path)!r} holds no pairs; expected source<TAB>target lines")
    return pairs


def _parse_tsv_line(raw: bytes) -> tuple[Pair | None, str | None]:
    """``(pair, None)``, ``(None, None)`` for a blank line, or ``(None, error)``."""
    try:
        line = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 (byte {e.start})"
    if not line.strip():
        return None, None
    fields = line.split("\t")
    if len(fields) != 2:
        return None, f"expected 2 tab-separated columns, found {len(fields)}"
    source, target = normalize_text(fields[0]), normalize_text(fields[1])
    if not source or not target:
        return None, f"empty {'source' if not source else 'target'}"
    return (source, target), None


def write_tsv(path: str | Path, pairs: Iterable[Pair]) -> Path:
    """Write pairs as ``source<TAB>target`` lines, atomically (readable by :func:`read_tsv`)."""
    from ...checkpoint import write_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, "".join(f"{s}\t{t}\n" for s, t in pairs))
