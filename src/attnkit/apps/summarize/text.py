"""Reading user text strictly and cutting it into sentences (shared by summarize and qa).

* :func:`read_text` — a file path or ``"-"`` (stdin) to a ``str``: UTF-8 only, decoded
  strictly; empty, binary and otherwise-encoded inputs raise a ``ValueError`` that
  says what was found and how to fix it.
* :func:`sentence_lines` — the 1-based line of the text on which each sentence starts;
* :func:`split_sentences` — a rule-based splitter (no model, no download): paragraphs
  at blank lines and list bullets, sentences at ``.``/``!``/``?`` followed by a space
  and a character that can start a sentence, except after known abbreviations
  (``e.g.``, ``Dr.``) and initials.

Example:
    >>> split_sentences("Attention is all you need. It uses e.g. dot products!\\n\\nNew paragraph")
    ['Attention is all you need.', 'It uses e.g. dot products!', 'New paragraph']
"""

from __future__ import annotations

import bisect
import os
import re
import sys
from pathlib import Path

__all__ = ["read_text", "split_sentences", "sentence_lines", "words"]

_SNIFF_BYTES = 8192  # look for NUL bytes in this many leading bytes
_ABBREVIATIONS = frozenset(
    "e.g i.e etc vs cf al fig figs eq no nos vol approx ca resp mr mrs ms dr prof st jr sr inc ltd co corp "
    "jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k".split()
)  # lower case, without the final period
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*\s+")  # end punctuation, closing quotes/brackets, then space
_BULLET = re.compile(r"^\s*(?:[-*•·]|\d{1,3}[.)])\s+")  # "- item", "* item", "1. item", "2) item"
_WORD = re.compile(r"\w+", re.UNICODE)


def read_text(source: str | os.PathLike, *, what: str = "FILE") -> str:
    """The text of file ``source`` (``"-"``: standard input), decoded as strict UTF-8.

    Raises ``ValueError`` for an empty (or whitespace-only) input, a binary file
    (NUL bytes), UTF-16/32 text and bytes that are not valid UTF-8; ``OSError``
    (e.g. ``FileNotFoundError``) when the file cannot be read. A UTF-8 byte-order
    mark is dropped.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> _ = p.write_bytes("Grüße.".encode())
        >>> read_text(p)
        'Grüße.'
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"read_text(): source must be a path or '-', got {type(source).__name__}")
    label = "standard input" if str(source) == "-" else f"{what} {str(source)!r}"
    data = sys.stdin.buffer.read() if str(source) == "-" else Path(source).read_bytes()
    return decode_strict(data, label)


def decode_strict(data: bytes, label: str = "the input") -> str:
    """``data`` as UTF-8 text, or a ``ValueError`` naming ``label`` and the fix."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or data[:4] in (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00"):
        raise ValueError(
            f"{label} is UTF-16/UTF-32 text (it starts with a byte-order mark); attnkit reads UTF-8. "
            "Convert it first, e.g. `iconv -f UTF-16 -t UTF-8 in.txt > out.txt`"
        )
    if b"\x00" in data[:_SNIFF_BYTES]:
        raise ValueError(f"{label} looks binary (it contains NUL bytes); expected a UTF-8 text file")
    try:
        text = data.decode("utf-8-sig")  # strict; -sig drops a UTF-8 byte-order mark
    except UnicodeDecodeError as e:
        bad = data[e.start : e.start + 1].hex()
        raise ValueError(
            f"{label} is not valid UTF-8 (byte 0x{bad} at offset {e.start}); expected UTF-8 text. "
            "If it is Latin-1 or another legacy encoding, convert it first, e.g. "
            "`iconv -f LATIN1 -t UTF-8 in.txt > out.txt`"
        ) from None
    if not text.strip():
        raise ValueError(f"{label} is empty (no text besides whitespace); give a file with some text")
    return text


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` in order, whitespace-normalized, empty pieces dropped.

    Paragraphs (blank lines) and list items (lines starting with ``-``, ``*``, ``1.``)
    always end a sentence; inside a paragraph, lines are joined first.

    Example:
        >>> split_sentences("Dr. Smith arrived at 3 p.m. on Monday. He left.\\n- first item\\n- second item")
        ['Dr. Smith arrived at 3 p.m. on Monday.', 'He left.', 'first item', 'second item']
    """
    if not isinstance(text, str):
        raise TypeError(f"split_sentences(): text must be a str, got {type(text).__name__}")
    out: list[str] = []
    for block in _blocks(text):
        out.extend(_split_block(block))
    return out


def sentence_lines(text: str, sentences: list[str] | None = None) -> list[int]:
    """The 1-based line number on which each sentence of ``text`` starts (as an editor counts lines).

    ``sentences`` defaults to ``split_sentences(text)``. A sentence is found again in the
    text word by word (the splitter only normalizes whitespace and drops list bullets),
    so a sentence wrapped over several lines gets the line of its first word.

    Example:
        >>> sentence_lines("Title\\n\\nFirst sentence. Second\\nsentence wraps.\\n- an item")
        [1, 3, 3, 5]
    """
    sentences = split_sentences(text) if sentences is None else sentences
    starts = [0]  # offset where each line starts, with splitlines()' idea of a line break
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    lines, cursor = [], 0
    for sentence in sentences:
        first = None
        for token in sentence.split():
            found = text.find(token, cursor)
            if found < 0:  # cannot happen for split_sentences' output; keep the last position
                break
            first = found if first is None else first
            cursor = found + len(token)
        lines.append(bisect.bisect_right(starts, first if first is not None else cursor) if starts else 1)
    return lines


def words(text: str) -> list[str]:
    """Word tokens (letters, digits, underscore), for counting.

    Example:
        >>> words("It's a dog-eat-dog world.")
        ['It', 's', 'a', 'dog', 'eat', 'dog', 'world']
    """
    return _WORD.findall(text)


def _blocks(text: str) -> list[str]:
    """Paragraphs and list items, each with its lines joined by single spaces."""
    blocks: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if not line.strip() or _BULLET.match(line):
            if current:
                blocks.append(" ".join(current))
            current = [_BULLET.sub("", line).strip()] if line.strip() else []
        else:
            current.append(line.strip())
    if current:
        blocks.append(" ".join(current))
    return [" ".join(b.split()) for b in blocks if b.strip()]


def _split_block(block: str) -> list[str]:
    pieces, start = [], 0
    for m in _BOUNDARY.finditer(block):
        if _is_boundary(block, m):
            pieces.append(block[start : m.end()].strip())
            start = m.end()
    pieces.append(block[start:].strip())
    return [p for p in pieces if p]


def _is_boundary(block: str, m: re.Match) -> bool:
    """A sentence ends at ``m`` unless the next word starts lower case or the last word is an abbreviation."""
    following = block[m.end() : m.end() + 1]
    if not following or following.islower():
        return False
    if block[m.start()] != ".":
        return True
    last = block[: m.start()].rsplit(maxsplit=1)[-1] if block[: m.start()].strip() else ""
    last = last.lstrip("(\"'“‘[").lower()
    if last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()):
        return False  # "e.g. Foo", "J. Smith"
    return not re.fullmatch(r"(?:[a-z]\.)+[a-z]", last)  # "p.m", "u.s.a"
