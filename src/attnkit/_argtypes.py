"""Argument types shared by the ``attnkit`` subcommands: bad values are refused by argparse, naming the flag.

``attnkit summarize --sentences 0`` then says
``argument --sentences: expected an integer >= 1, got '0'`` instead of an error
from deep inside the library.

Example:
    >>> positive_int("3"), nonnegative_int("0"), positive_float("0.5"), unit_interval("1")
    (3, 0, 0.5, 1.0)
    >>> positive_int("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected an integer >= 1, got '0'
"""

from __future__ import annotations

import argparse
import math

__all__ = ["positive_int", "nonnegative_int", "positive_float", "unit_interval", "open_unit_interval", "lengths",
           "names"]


def _number(text: str, kind: type, what: str, ok) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return int(_number(text, int, "an integer >= 1", lambda v: v >= 1))


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    return int(_number(text, int, "an integer >= 0", lambda v: v >= 0))


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _number(text, float, "a number > 0", lambda v: v > 0)


def unit_interval(text: str) -> float:
    """A number in [0, 1]."""
    return _number(text, float, "a number from 0 to 1", lambda v: 0 <= v <= 1)


def open_unit_interval(text: str) -> float:
    """A number in (0, 1]."""
    return _number(text, float, "a number in (0, 1]", lambda v: 0 < v <= 1)


def lengths(text: str) -> list[int]:
    """Sequence lengths, comma-separated, ``k`` = 1024: ``"1024,4k"`` -> ``[1024, 4096]``.

    Example:
        >>> lengths("512, 4k")
        [512, 4096]
    """
    out = []
    for token in filter(None, (t.strip().lower() for t in text.split(","))):
        try:
            value = int(token[:-1]) * 1024 if token.endswith("k") else int(token)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected sequence lengths like 512 or 4k, comma-separated, "
                                             f"got {token!r}") from None  # fmt: skip
        if value < 1:
            raise argparse.ArgumentTypeError(f"sequence lengths must be >= 1, got {token!r}")
        out.append(value)
    if not out:
        raise argparse.ArgumentTypeError(f"expected at least one sequence length, got {text!r}")
    return out


def names(text: str) -> tuple[str, ...]:
    """Comma-separated names, blanks dropped: ``"a, b,"`` -> ``("a", "b")`` (the command checks which are valid).

    Example:
        >>> names("transformer-1L, lstm-1L,")
        ('transformer-1L', 'lstm-1L')
    """
    return tuple(x.strip() for x in text.split(",") if x.strip())
