"""Summarization: extractive with MiniLM sentence embeddings, abstractive with SmolLM2 (``attnkit summarize``).

* :func:`summarize` — ``summarize(text, sentences=3, method="extractive") -> Summary``;
* :func:`evaluate` — ROUGE-1/2/L of lead, random, attnkit and oracle one-sentence
  summaries against human summaries on this machine (man pages, stdlib docstrings);
* :func:`read_text`, :func:`split_sentences` — strict UTF-8 input and sentence splitting.

Example:
    >>> from attnkit.apps.summarize import summarize
    >>> summarize("Attention relates tokens. It is a softmax over dot products. Cats purr.", sentences=1).method
    'extractive'

    A :class:`Summary` records where its sentences came from; :data:`DEFAULTS` are the
    extractive settings; :func:`evaluate` returns an :class:`EvalReport` of one
    :class:`SystemScore` (mean ROUGE F1) per system, here built by hand:

    >>> from attnkit.apps.summarize import DEFAULTS, EvalReport, Summary, SystemScore
    >>> DEFAULTS
    {'kind': 'degree', 'position_weight': 0.2, 'diversity': 0.3}
    >>> s = Summary("Cats purr.", ("Cats purr.",), (2,), (0.7,), "extractive", 3, "all-MiniLM-L6-v2")
    >>> s.indices, s.source_sentences
    ((2,), 3)
    >>> report = EvalReport("manpages", "dev", 0, 1, (SystemScore("lead", 0.31, 0.12, 0.28),), dict(DEFAULTS), ())
    >>> report.to_dict()["systems"][0]["rouge1"]
    0.31
"""

from ..._lazy import lazy_exports

__all__ = [
    "summarize",
    "Summary",
    "evaluate",
    "EvalReport",
    "SystemScore",
    "read_text",
    "split_sentences",
    "DEFAULTS",
]

#: public name -> the module that defines it; imported on first use, so `attnkit ... --help` needs no torch
__getattr__, __dir__ = lazy_exports(__name__, {
    "summarize": ".core",
    "Summary": ".core",
    "evaluate": ".evaluate",
    "EvalReport": ".evaluate",
    "SystemScore": ".evaluate",
    "read_text": ".text",
    "split_sentences": ".text",
    "DEFAULTS": ".core",
})
