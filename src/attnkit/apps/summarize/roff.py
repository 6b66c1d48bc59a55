r"""Just enough roff to read man pages as prose: sections, NAME summaries, paragraphs.

Handles the two macro packages found in ``/usr/share/man``: ``man`` (``.SH``,
``.PP``, ``.TP``, ``.B``/``.BR`` font macros; help2man, pod2man, DocBook output)
and ``mdoc`` (``.Sh``, ``.Nm``, ``.Nd``, ``.Pp``, ``.Fl``, ``.Ar``, ``.Xr``).
Paragraph macros become blank lines; no-fill blocks (``.nf``/``.fi``, ``.EX``/``.EE``,
``.Bd -literal``) are dropped as code; escapes such as ``\fB``, ``\-``, ``\(em``,
``\&`` become plain characters or nothing.

Example:
    >>> page = '.TH LS 1\n.SH NAME\nls \\- list directory contents\n.SH DESCRIPTION\n.PP\nList \\fBfiles\\fR.'
    >>> sections = parse_sections(page)
    >>> name_summary(sections["NAME"]), to_text(sections["DESCRIPTION"]).strip()
    ('list directory contents', 'List files.')
"""

from __future__ import annotations

import re

__all__ = ["parse_sections", "name_summary", "to_text", "unescape"]

_SECTION = re.compile(r'^\.S[Hh]\s+"?([^"]*)"?\s*$')
_PARAGRAPH = {"PP", "P", "LP", "TP", "IP", "HP", "sp", "br", "RS", "RE", "Pp", "Bl", "El", "It", "SS", "Ss",
              "TQ", "in", "ti", "Sh", "SH", "TH", "Dd", "Dt", "Os", "PD"}  # fmt: skip
_FONT_ALTERNATING = {"BR", "RB", "BI", "IB", "IR", "RI"}  # arguments joined without spaces
_FONT_WORDS = {"B", "I", "SM", "SB", "R"}  # arguments joined with spaces
_NOFILL_START = {"nf", "EX", "Bd"}
_NOFILL_END = {"fi", "EE", "Ed"}
_MDOC_PUNCT = set(".,:;)]?!")  # mdoc: a trailing punctuation argument attaches to the previous word
_MDOC_PREFIX = {"Fl": "-", "Xr": ""}
_MDOC_SILENT = {"Sm", "Bk", "Ek", "Ns", "Pf"}  # spacing and keep macros: no words
_SPECIALS = {"em": "—", "en": "–", "aq": "'", "cq": "'", "oq": "'", "lq": '"', "rq": '"', "dq": '"', "bu": "•",
             "co": "©", "rg": "®", "hy": "-", "mi": "-", "ti": "~", "ha": "^", "rs": "\\", "Aq": "'", "L\"": '"',
             "R\"": '"', "ga": "`", "ua": "↑", "da": "↓", "->": "→", "<-": "←", "de": "°", "tm": "™"}  # fmt: skip
_ESCAPE = re.compile(
    r"\\(?:f(?:\[[^\]]*\]|\(..|.)"  # font change
    r"|[sS][+-]?(?:\d|\(\d\d|\[\d+\])"  # size change
    r"|[mM](?:\[[^\]]*\]|\(..|.)"  # colour
    r"|[*]\[([^\]]*)\]|[*]\((..)|[*](.)"  # string variable: groups 1-3
    r"|\[([^\]]*)\]|\((..)"  # special character: groups 4-5
    r"|[NhvwXkoZlLDxbHR]'[^']*'"  # escapes with a quoted argument
    r"|[-e&|^,/%cdu ~0t\\.'`\"]|.)"  # one-character escapes (\" is a comment: cut before)
)


def parse_sections(page: str) -> dict[str, list[str]]:
    """The lines of each ``.SH``/``.Sh`` section, by upper-case title (first occurrence wins)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in page.splitlines():
        m = _SECTION.match(line)
        if m:
            title = " ".join(unescape(m[1]).split()).upper()
            current = sections.setdefault(title, []) if title not in sections else None
            continue
        if current is not None:
            current.append(line)
    return sections


def name_summary(lines: list[str]) -> str | None:
    r"""The one-line summary of a NAME section: after ``\-`` (man) or the ``.Nd`` macro (mdoc)."""
    for line in lines:
        if line.startswith(".Nd"):
            return " ".join(unescape(line[3:]).split()) or None
    text = " ".join(to_text(lines).split())
    for dash in (" - ", " — ", " – "):
        if dash in text:
            return text.split(dash, 1)[1].strip() or None
    return None


def to_text(lines: list[str], *, name: str = "") -> str:
    """Prose of roff ``lines``: paragraphs separated by blank lines, code blocks dropped.

    ``name`` replaces an argument-less mdoc ``.Nm`` (the page's own name).
    """
    out: list[str] = []
    nofill = False
    for raw in lines:
        line = raw.split('\\"', 1)[0] if '\\"' in raw else raw  # roff comment
        if line.startswith((".", "'")):
            macro, _, rest = line[1:].strip().partition(" ")
            if macro in _NOFILL_START and (macro != "Bd" or "-literal" in rest or "-unfilled" in rest):
                nofill = True
            elif macro in _NOFILL_END:
                nofill = False
            elif not nofill and (text := _macro_text(macro, rest, name)) is not None:
                out.append(text)
        elif not nofill:
            out.append(unescape(line))
    return "\n".join(out)


def unescape(text: str) -> str:
    """Roff escapes to plain characters (or nothing)."""
    return _ESCAPE.sub(_replace_escape, text)


def _replace_escape(m: re.Match) -> str:
    token = m.group(0)
    special = m[4] or m[5] or m[1] or m[2] or m[3]
    if special is not None:
        return _SPECIALS.get(special, "")
    return {"\\-": "-", "\\e": "\\", "\\ ": " ", "\\~": " ", "\\0": " ", "\\\\": "\\", "\\.": ".", "\\'": "'",
            "\\`": "`", "\\t": " "}.get(token, "")  # fmt: skip


def _macro_text(macro: str, rest: str, name: str) -> str | None:
    """Text of one macro line: "" (a paragraph break) for layout macros, None for requests without text."""
    if macro in _PARAGRAPH:
        if macro in ("TP", "IP", "It", "SS", "Ss"):
            tag = _arguments(rest)
            return "\n" + (" ".join(tag) + "\n" if tag and macro != "IP" and macro != "TP" else "")
        return ""
    args = _arguments(rest)
    if macro in _FONT_ALTERNATING:
        return "".join(args)
    if macro in _FONT_WORDS:
        return " ".join(args)
    if macro[:1].isupper() and len(macro) == 2 and macro[1:].islower():  # mdoc: Nm, Ar, Fl, Xr, Em, ...
        return _mdoc_words(macro, args, name)
    return None  # requests such as .de, .if, .nr, .ds, .ft, .ad and comments: no text


def _mdoc_words(macro: str, args: list[str], name: str) -> str | None:
    if macro in _MDOC_SILENT:
        return None
    if macro == "Ux":
        return "UNIX" + "".join(a for a in args if a not in _MDOC_SILENT)
    if macro == "Nm" and not args:
        return name
    if macro == "Xr" and len(args) >= 2:
        return f"{args[0]}({args[1]})" + "".join(args[2:])
    words: list[str] = []
    for a in args:
        if a in _MDOC_PUNCT and words:
            words[-1] += a
        elif not (a[:1].isupper() and len(a) == 2 and a[1:].islower()):  # nested macro names (Ns, Ar) dropped
            words.append(_MDOC_PREFIX.get(macro, "") + a)
    return " ".join(words)


def _arguments(rest: str) -> list[str]:
    """Macro arguments: space-separated, double quotes group, escapes resolved."""
    return [unescape(a[1:-1] if a.startswith('"') and a.endswith('"') and len(a) > 1 else a)
            for a in re.findall(r'"[^"]*"|\S+', rest)]  # fmt: skip
