"""Summarization: extractive with MiniLM sentence embeddings, abstractive with SmolLM2 (``attnkit summarize``).

* :func:`summarize` — ``summarize(text, sentences=3, method="extractive") -> Summary``;
* :func:`evaluate` — ROUGE-1/2/L of lead, random, attnkit and oracle one-sentence
  summaries against human summaries on this machine (man pages, stdlib docstrings);
* :func:`read_text`, :func:`split_sentences` — strict UTF-8 input and sentence splitting.

Example:
    >>> summarize("Attention relates tokens. It is a softmax over dot products. Cats purr.", sentences=1).method
    'extractive'
"""

from .core import DEFAULTS, Summary, summarize
from .evaluate import EvalReport, SystemScore, evaluate
from .text import read_text, split_sentences

__all__ = ["summarize", "Summary", "evaluate", "EvalReport", "SystemScore", "read_text", "split_sentences", "DEFAULTS"]
