r"""The ``gettext`` corpus: real human translations from the system's ``.mo`` message catalogs.

Programs ship their user interface translated by people, as GNU gettext catalogs:
``/usr/share/locale/<lang>/LC_MESSAGES/<domain>.mo`` maps each English ``msgid`` to
the translated ``msgstr``. :func:`read_mo` parses one file (the binary format of
the GNU gettext manual, "The Format of GNU MO Files", little or big endian);
:func:`read_catalog_pairs` collects every catalog of a language and cleans it:

* **plural forms** (``msgid`` singular ``\0`` plural): singular -> ``msgstr[0]``,
  plural -> ``msgstr[1]``; message contexts (``ctxt\x04msgid``) are dropped;
* **markup and accelerators** removed: ``<b>..</b>``, ``&amp;`` entities, mnemonic
  underscores and ampersands (``_Open``, ``&File``), ``(_O)`` suffixes of CJK catalogs;
* **placeholders** (``%s``, ``%1$d``, ``%(name)s``, ``{0}``, ``{name}``, ``${var}``):
  the pair is skipped, since they are copied rather than translated;
* **length limits**: 1..``max_words`` words and at most ``max_chars`` characters per side,
  length ratio within ``max_ratio``; texts without a letter are skipped;
* **dedupe** (one target per source, the most frequent, ties by catalog order) and
  **identical** source/target, ignoring case (untranslated entries), skipped.

Example:
    >>> clean_message("_Open the <b>file</b>…")
    'Open the file…'
    >>> clean_message("Copy %s to %s") is None
    True
"""

from __future__ import annotations

import html
import re
import struct
from collections import Counter
from pathlib import Path

from .corpus import Pair, normalize_text

__all__ = ["DEFAULT_LOCALE_ROOT", "read_mo", "catalog_files", "read_catalog_pairs", "clean_message", "message_pairs"]

DEFAULT_LOCALE_ROOT = Path("/usr/share/locale")
MO_MAGIC = 0x950412DE
MAX_WORDS = 40  # per side
MAX_CHARS = 200  # per side
MAX_RATIO = 3.0  # longer / shorter side, in characters (plus a small allowance for short strings)

_PLACEHOLDER = re.compile(
    r"%(?:\d+\$)?[-+ #0']*\d*(?:\.\d+)?(?:hh|h|ll|l|L|q|j|z|t|I64|I32)?[diouxXeEfFgGaAcspn%]"  # printf
    r"|%\([^)]*\)[a-zA-Z]"  # python %(name)s
    r"|\{[^{}\s]*\}"  # {0} {name} {}
    r"|\$\{[^}]*\}|\$[A-Za-z_]\w*"  # ${var} $var
    r"|%[A-Za-z_]\w*%"  # %VAR%
)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_CJK_MNEMONIC = re.compile(r"\s*\((?:_|&)\w\)")  # "ファイル(_F)"
_MNEMONIC = re.compile(r"(?<![\w&_])[_&](?=\w)")  # "_Open", "&File" but not "snake_case" or "a&b"
_LETTER = re.compile(r"[^\W\d_]")


# ---------------------------------------------------------------------- the .mo format
def read_mo(path: str | Path) -> dict[str, str]:
    """Parse a GNU ``.mo`` file into ``{msgid: msgstr}`` (raw strings, header entry included).

    Plural entries keep gettext's layout: ``"singular\\0plural" -> "form0\\0form1..."``;
    contexts stay as ``"context\\x04msgid"``. The charset comes from the header
    (default UTF-8).

    Example:
        >>> read_mo("/no/such.mo")
        Traceback (most recent call last):
        ...
        FileNotFoundError: read_mo(): '/no/such.mo' does not exist; expected a compiled gettext catalog (.mo)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_mo(): {str(path)!r} does not exist; expected a compiled gettext catalog (.mo)")
    data = path.read_bytes()
    endian = _endianness(data, path)
    _, count, ids_at, strs_at = struct.unpack(endian + "4I", data[4:20])
    raw: list[tuple[bytes, bytes]] = []
    for i in range(count):
        raw.append((_entry(data, endian, ids_at + 8 * i, path), _entry(data, endian, strs_at + 8 * i, path)))
    charset = _charset(dict(raw).get(b"", b""))
    return {k.decode(charset, "replace"): v.decode(charset, "replace") for k, v in raw}


def _endianness(data: bytes, path: Path) -> str:
    for endian in ("<", ">"):
        if len(data) >= 20 and struct.unpack(endian + "I", data[:4])[0] == MO_MAGIC:
            return endian
    raise ValueError(f"read_mo(): {str(path)!r} is not a .mo file (magic number 0x950412de missing); "
                     "compile .po files with msgfmt first")  # fmt: skip


def _entry(data: bytes, endian: str, at: int, path: Path) -> bytes:
    length, offset = struct.unpack(endian + "2I", data[at : at + 8])
    if offset + length > len(data):
        raise ValueError(f"read_mo(): {str(path)!r} is truncated (an entry points past the end of the file)")
    return data[offset : offset + length]


def _charset(header: bytes) -> str:
    found = re.search(rb"charset=([A-Za-z0-9_.:-]+)", header)
    name = found.group(1).decode("ascii") if found else "utf-8"
    try:
        "".encode(name)
    except LookupError:
        return "utf-8"
    return name


# ---------------------------------------------------------------------- cleaning
def clean_message(text: str) -> str | None:
    """One catalog string without markup and accelerators, or None when it should be skipped.

    Example:
        >>> clean_message("&Save As…"), clean_message("Save as (_S)"), clean_message("%d files")
        ('Save As…', 'Save as', None)
    """
    if _PLACEHOLDER.search(text):
        return None
    text = _TAG.sub("", text)
    text = html.unescape(text)
    text = _CJK_MNEMONIC.sub("", text)
    text = _MNEMONIC.sub("", text)
    text = normalize_text(text)
    if not text or not _LETTER.search(text):
        return None
    if len(text) > MAX_CHARS or len(text.split()) > MAX_WORDS:
        return None
    return text


def message_pairs(catalog: dict[str, str]) -> list[Pair]:
    """The (English, translated) pairs of one catalog, cleaned; plural forms and contexts handled."""
    pairs: list[Pair] = []
    for msgid, msgstr in catalog.items():
        if not msgid or not msgstr:
            continue  # the header, or an untranslated entry
        msgid = msgid.split("\x04", 1)[-1]  # drop the message context
        sources, targets = msgid.split("\x00"), msgstr.split("\x00")
        for source, target in zip(sources[:2], targets[:2], strict=False):
            pair = _clean_pair(source, target)
            if pair:
                pairs.append(pair)
    return pairs


def _clean_pair(source: str, target: str) -> Pair | None:
    src, tgt = clean_message(source), clean_message(target)
    if src is None or tgt is None or src.casefold() == tgt.casefold():
        return None  # untranslated (or only re-cased, as ISO language names often are)
    short, long = sorted((len(src), len(tgt)))
    if long > MAX_RATIO * short + 10:
        return None
    return src, tgt


# ---------------------------------------------------------------------- a language's catalogs
def catalog_files(lang: str, root: str | Path | None = None) -> list[Path]:
    """The ``.mo`` files of ``lang`` under ``root`` (``<root>/<lang>/LC_MESSAGES/*.mo``), sorted.

    Example:
        >>> catalog_files("xx", root="/nonexistent")
        []
    """
    root = DEFAULT_LOCALE_ROOT if root is None else Path(root)
    return sorted((root / lang / "LC_MESSAGES").glob("*.mo"))


def read_catalog_pairs(source: str, target: str, *, root: str | Path | None = None) -> tuple[list[Pair], str]:
    """All cleaned (English, ``target``) pairs of the installed catalogs, and a one-line description."""
    if source != "en":
        raise ValueError(
            f"load_corpus('gettext'): gettext catalogs translate from English; pair must be en-<lang>, "
            f"got {source}-{target}"
        )
    root = DEFAULT_LOCALE_ROOT if root is None else Path(root)
    files = catalog_files(target, root)
    if not files:
        raise FileNotFoundError(_no_catalogs_message(target, root))
    votes: dict[str, Counter] = {}
    for path in files:
        try:
            catalog = read_mo(path)
        except ValueError:
            continue  # a damaged catalog should not stop the others
        for src, tgt in message_pairs(catalog):
            votes.setdefault(src, Counter())[tgt] += 1
    pairs = [(src, counter.most_common(1)[0][0]) for src, counter in votes.items()]
    if len(pairs) < 3:
        raise ValueError(f"load_corpus('gettext'): the {len(files)} catalogs in {root / target / 'LC_MESSAGES'} "
                         f"give only {len(pairs)} usable pairs after cleaning; try another language")  # fmt: skip
    return pairs, f"{len(pairs)} pairs from {len(files)} catalogs in {root / target / 'LC_MESSAGES'}"


def _no_catalogs_message(target: str, root: Path) -> str:
    available = sorted(p.parent.parent.name for p in root.glob("*/LC_MESSAGES/*.mo")) if root.is_dir() else []
    counts = Counter(available)
    best = ", ".join(f"en-{lang} ({n})" for lang, n in counts.most_common(8))
    hint = f"installed languages with the most catalogs: {best}" if best else (
        "no catalogs are installed at all; on Debian/Ubuntu they come with the programs "
        "(e.g. apt-get install coreutils gettext) unless the image strips locales"
    )  # fmt: skip
    return f"load_corpus('gettext'): no .mo catalogs for {target!r} under {root}; {hint}"
