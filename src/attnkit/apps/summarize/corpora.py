"""Evaluation corpora made of human-written summaries already on this machine.

* ``"manpages"``: ``/usr/share/man/man[1-8]`` (gzip'd roff, English pages only). The
  document is the DESCRIPTION section, the reference the one-line summary of the
  NAME section (``ls \\- list directory contents``).
* ``"docstrings"``: the Python standard library's sources, read with :mod:`ast`
  (nothing is imported). The document is a docstring's body, the reference its
  first line (PEP 257 summary line); one docstring is drawn per file.

Sampling is deterministic: the files are sorted, shuffled with ``random.Random(seed)``
and read until ``limit`` usable examples are found. Each example belongs to the
``"dev"`` split (CRC-32 of its id divisible by 5, about 20%) or ``"test"``, so
settings tuned on dev are scored on documents they never saw.

Usable means: a reference of at least ``MIN_REFERENCE_WORDS`` words and a document
of ``MIN_SENTENCES`` to ``MAX_SENTENCES`` candidate sentences
(at least ``MIN_WORDS`` words each). References repeated verbatim
(the same page installed twice) are kept once, and at most ``MAX_PER_FAMILY`` man
pages come from one tool (its name up to the first ``-``, ``_`` or ``.``: on this
machine 16,631 of 17,847 pages in man1 are ``gcloud_*``).

Example:
    >>> examples = load_corpus("docstrings", limit=2, seed=0)
    >>> len(examples), all(e.reference and e.document for e in examples)
    (2, True)
"""

from __future__ import annotations

import ast
import gzip
import random
import re
import sysconfig
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .core import MIN_WORDS
from .roff import name_summary, parse_sections, to_text
from .text import split_sentences, words

__all__ = ["Example", "load_corpus", "CORPORA", "split_of", "MAN_ROOT"]

MAN_ROOT = Path("/usr/share/man")  #: where the man pages live
MIN_REFERENCE_WORDS = 3  # shorter references ("ls") say too little to score
MIN_SENTENCES = 3  # a document needs a choice of sentences
MAX_SENTENCES = 60  # longer documents (whole manuals) are left out, not cut
MAX_PER_FAMILY = 2  # man pages of one tool (16k of the 18k are gcloud_*) would otherwise swamp the sample
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "turtledemo"}


@dataclass(frozen=True)
class Example:
    """One document with its human-written summary."""

    id: str  # where it comes from: "man1/ls.1.gz" or "json/decoder.py:42"
    document: str  # the text to summarize
    reference: str  # the human summary (one line)
    sentences: tuple[str, ...]  # the document split into sentences


def split_of(example_id: str) -> str:
    """``"dev"`` for about a fifth of the ids (CRC-32 divisible by 5), else ``"test"``."""
    return "dev" if zlib.crc32(example_id.encode()) % 5 == 0 else "test"


def load_corpus(name: str, *, limit: int = 100, seed: int = 0, split: str | None = None) -> list[Example]:
    """Up to ``limit`` examples of corpus ``name`` (``"manpages"``/``"docstrings"``), ``split`` dev/test/None."""
    if name not in CORPORA:
        raise ValueError(f"load_corpus(): corpus must be one of {sorted(CORPORA)}, got {name!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"load_corpus(): limit must be a positive int, got {limit!r}")
    if split not in (None, "dev", "test"):
        raise ValueError(f"load_corpus(): split must be 'dev', 'test' or None (both), got {split!r}")
    corpus = CORPORA[name]
    files = corpus.files()
    if not files:
        raise FileNotFoundError(f"load_corpus(): no {name} found on this machine ({_where(name)})")
    random.Random(seed).shuffle(files)
    out, seen, families = [], set(), Counter[str]()
    for file in files:
        if families[corpus.family(file)] >= MAX_PER_FAMILY:
            continue
        example = corpus.read(file, seed)
        if example is None or (split and split_of(example.id) != split) or example.reference.lower() in seen:
            continue
        seen.add(example.reference.lower())
        families[corpus.family(file)] += 1
        out.append(example)
        if len(out) == limit:
            break
    return out


# ---------------------------------------------------------------------- man pages
def _man_files() -> list[Path]:
    return sorted(p for d in sorted(MAN_ROOT.glob("man[1-8]")) for p in d.glob("*.gz"))


def _read_man_page(path: Path, seed: int) -> Example | None:
    try:
        page = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
    except (OSError, EOFError, zlib.error):
        return None
    if page.lstrip().startswith(".so "):  # a link to another page
        return None
    sections = parse_sections(page)
    if "NAME" not in sections or "DESCRIPTION" not in sections:
        return None
    reference = name_summary(sections["NAME"])
    name = path.name.split(".")[0]
    document = to_text(sections["DESCRIPTION"], name=name)
    return _example(f"{path.parent.name}/{path.name}", document, reference)


# ---------------------------------------------------------------------- docstrings
def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if not _SKIP_DIRS & set(p.relative_to(root).parts[:-1]))


def _read_docstrings(path: Path, seed: int) -> Example | None:
    root = Path(sysconfig.get_paths()["stdlib"])
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return None
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            example = _docstring_example(node, str(path.relative_to(root)))
            if example is not None:
                found.append(example)
    if not found:
        return None
    return random.Random(f"{seed}:{path.name}").choice(found)


def _docstring_example(node, file_id: str) -> Example | None:
    doc = ast.get_docstring(node, clean=True)
    if not doc:
        return None
    summary, _, body = doc.partition("\n\n")
    if "\n" in summary.strip():  # the summary must be one line (PEP 257)
        return None
    return _example(f"{file_id}:{getattr(node, 'lineno', 1)}", body, summary.strip())


# ---------------------------------------------------------------------- shared
def _example(example_id: str, document: str, reference: str | None) -> Example | None:
    if not reference or len(words(reference)) < MIN_REFERENCE_WORDS:
        return None
    sentences = split_sentences(document)
    usable = [s for s in sentences if len(words(s)) >= MIN_WORDS]
    if not MIN_SENTENCES <= len(usable) <= MAX_SENTENCES:
        return None
    return Example(example_id, document.strip(), reference, tuple(sentences))


def _where(name: str) -> str:
    return str(MAN_ROOT / "man[1-8]") if name == "manpages" else sysconfig.get_paths()["stdlib"]


def _man_family(path: Path) -> str:
    """``gcloud_container_describe.1.gz`` -> ``gcloud``: pages of one tool share a family."""
    return re.split(r"[-_.]", path.name, maxsplit=1)[0].lower()


@dataclass(frozen=True)
class _Corpus:
    files: Callable[[], list[Path]]  # every candidate file, sorted
    read: Callable[[Path, int], Example | None]  # file, seed -> an example or None (unusable)
    family: Callable[[Path], str]  # at most MAX_PER_FAMILY examples per family


CORPORA: dict[str, _Corpus] = {
    "manpages": _Corpus(_man_files, _read_man_page, _man_family),  # DESCRIPTION -> NAME summary
    "docstrings": _Corpus(_stdlib_files, _read_docstrings, str),  # docstring body -> first line; one per file
}
