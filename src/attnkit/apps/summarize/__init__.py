"""Summarization: extractive with MiniLM sentence embeddings, abstractive with SmolLM2 (``attnkit summarize``).

* :func:`summarize` — ``summarize(text, sentences=3, method="extractive") -> Summary``;
* :func:`evaluate` — ROUGE-1/2/L of lead, random, attnkit and oracle one-sentence
  summaries against human summaries on this machine (man pages, stdlib docstrings);
* :func:`read_text`, :func:`split_sentences` — strict UTF-8 input and sentence splitting.

Example:
    >>> from attnkit.apps.summarize import summarize
    >>> summarize("Attention relates tokens. It is a softmax over dot products. Cats purr.", sentences=1).method
    'extractive'
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
