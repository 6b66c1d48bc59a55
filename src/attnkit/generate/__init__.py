"""Text generation on the KV cache: greedy search, beam search and sampling.

Works with both models of :mod:`attnkit.nn`:

* :class:`~attnkit.nn.Transformer` (encoder-decoder): ``inputs`` are source ids
  ``(B, S)``; the source is encoded once and decoding starts from ``config.bos_id``.
* :class:`~attnkit.nn.TransformerLM` (decoder-only): ``inputs`` are prompt ids
  ``(B, L)``. Prompts of different lengths are padded on the LEFT with
  ``config.pad_id`` (:func:`left_pad` builds the batch; ``prompt_mask`` overrides the
  padding detection); each row then continues exactly as it would alone.

Repetition control (every strategy): ``no_repeat_ngram_size`` blocks repeated n-grams and
``repetition_penalty`` applies CTRL's penalty (:mod:`~attnkit.generate.repetition`).

Outputs hold only the new tokens. A row stops at ``eos_id`` (default
``config.eos_id``; kept in the output) and is filled with ``pad_id`` after it.

=============  =====================================  ==========================================
strategy       function                               returns
=============  =====================================  ==========================================
``"greedy"``   :func:`greedy`                         ``(B, T)`` ids
``"sample"``   :func:`sample` (temperature/top-k/p)   ``(B, T)`` ids
``"beam"``     :func:`beam_search` (GNMT penalty)     ``list[list[Hypothesis]]`` (tokens + score)
=============  =====================================  ==========================================

A :class:`Hypothesis` is one beam-search result; ``score`` is ``log_prob`` divided by the
GNMT length penalty of its length:

    >>> import torch
    >>> from attnkit.generate import Hypothesis, gnmt_length_penalty
    >>> h = Hypothesis(torch.tensor([5, 7, 2]), score=-1.2 / gnmt_length_penalty(3, 0.6), log_prob=-1.2, finished=True)
    >>> round(h.score, 4), h.tokens.tolist(), h.finished
    (-1.0098, [5, 7, 2], True)

:func:`generate` is the single front door (``(B * num_return, T)`` ids for every
strategy), configured by a :class:`GenerationConfig` and/or keyword options.

Shape legend: B batch, S source length, L prompt length, T generated length.

Example:
    >>> import torch
    >>> from attnkit.nn import TransformerConfig, TransformerLM
    >>> cfg = TransformerConfig(vocab_size=13, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=0,
    ...                         num_decoder_layers=1, dropout=0.0)
    >>> lm = TransformerLM(cfg).eval()
    >>> prompts = left_pad([[5, 6, 7], [8]], pad_id=cfg.pad_id)  # (2, 3), row 1 padded on the left
    >>> generate(lm, prompts, strategy="beam", beam_size=3, max_new_tokens=4).shape[0]
    2
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._session import Session, left_pad
from .beam import Hypothesis, beam_search, gnmt_length_penalty, run_beam
from .config import GenerationConfig, field_names
from .search import greedy, run_greedy, run_sample, sample

__all__ = [
    "generate",
    "greedy",
    "beam_search",
    "sample",
    "GenerationConfig",
    "Hypothesis",
    "gnmt_length_penalty",
    "left_pad",
]


def generate(
    model,
    inputs: Tensor,
    config: GenerationConfig | None = None,
    *,
    src_mask=None,
    prompt_mask: Tensor | None = None,
    generator: torch.Generator | None = None,
    **options,
) -> Tensor:
    """Generate with ``config.strategy`` (``"greedy"``, ``"beam"`` or ``"sample"``); returns ids.

    ``options`` are :class:`GenerationConfig` fields overriding ``config`` (unknown names
    raise ``TypeError``). Returns the new tokens ``(B * num_return, T)`` padded with
    ``pad_id`` (rows ``b * num_return ...`` belong to input row ``b``, best first for beam
    search; use :func:`beam_search` for the scores).

    Example:
        >>> from attnkit.nn import Transformer, TransformerConfig
        >>> cfg = TransformerConfig(vocab_size=13, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=1,
        ...                         num_decoder_layers=1, dropout=0.0)
        >>> model = Transformer(cfg).eval()
        >>> src = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])  # right-padded source, pad_id=0
        >>> generate(model, src, strategy="sample", top_k=3, seed=0, max_new_tokens=6).shape[0]
        2
        >>> generate(model, src, strategy="nucleus")
        Traceback (most recent call last):
        ...
        ValueError: generate(): strategy must be one of ('greedy', 'beam', 'sample'), got 'nucleus'
    """
    owner = "generate()"
    if config is not None and not isinstance(config, GenerationConfig):
        raise TypeError(f"{owner}: config must be a GenerationConfig, got {type(config).__name__}")
    unknown = sorted(set(options) - set(field_names()))
    if unknown:
        raise TypeError(f"{owner}: unknown option(s) {unknown}; the options are the GenerationConfig fields "
                        f"{field_names()}")  # fmt: skip
    cfg = (config or GenerationConfig()).replace(owner, **options)
    if generator is not None and cfg.strategy != "sample":
        raise ValueError(f"{owner}: generator= is only used by strategy='sample', got strategy={cfg.strategy!r}")
    expand = cfg.beam_size if cfg.strategy == "beam" else 1
    session = Session(owner, model, inputs, expand=expand, src_mask=src_mask, prompt_mask=prompt_mask,
                      no_repeat_ngram_size=cfg.no_repeat_ngram_size, repetition_penalty=cfg.repetition_penalty)
    if cfg.strategy == "greedy":
        return run_greedy(session, cfg, owner)
    if cfg.strategy == "sample":
        return run_sample(session, cfg, owner, generator)
    return _stack(run_beam(session, cfg, owner), cfg.num_return, model.config.pad_id, inputs.device)


def _stack(results: list[list[Hypothesis]], num_return: int, pad_id: int, device) -> Tensor:
    """Hypotheses of every row, best first, as ``(B * num_return, T)`` ids padded with ``pad_id``."""
    empty = torch.empty(0, dtype=torch.long, device=device)  # a row with fewer hypotheses (tiny vocabularies)
    seqs = [h.tokens for row in results for h in row + [Hypothesis(empty, 0.0, 0.0, False)] * (num_return - len(row))]
    out = torch.full((len(seqs), max(s.numel() for s in seqs)), pad_id, dtype=torch.long, device=device)
    for i, s in enumerate(seqs):
        out[i, : s.numel()] = s
    return out
