"""Cross-attention alignments: which source tokens each target token looked at.

A translation is decoded first (beam search), then run once more with teacher forcing
(the decoder reads ``<s>`` + the translation) while forward hooks on every decoder
layer's ``cross_attn`` module ask it for its per-head weights
(``MultiHeadAttention(need_weights=True)``). Row ``t`` of a weight matrix belongs to
the query that *produces* target token ``t``; column ``s`` is source token ``s``. No
change to the model: the hooks are removed when the pass ends.

Shape legend: N decoder layers, H heads, T target tokens (with ``</s>``), S source
tokens (with ``</s>``).

Example:
    >>> import tempfile
    >>> from attnkit.nn import Transformer, TransformerConfig
    >>> tok = SubwordTokenizer.train(["one two", "eins zwei"], vocab_size=40)
    >>> model = Transformer(TransformerConfig(vocab_size=tok.vocab_size, d_model=16, num_heads=2, d_ff=32,
    ...                                       num_encoder_layers=1, num_decoder_layers=2)).eval()
    >>> a = cross_attention(model, tok, "one two", target="eins zwei")
    >>> isinstance(a, Alignment)
    True
    >>> a.weights.shape[:2], a.weights.shape[2:] == (len(a.target_tokens), len(a.source_tokens))
    (torch.Size([2, 2]), True)
    >>> plot_alignment(a, tempfile.mkdtemp() + "/align.png").suffix
    '.png'
    >>> page = explore_translation(model, tok, "one two", target="eins zwei")  # the interactive page
    >>> [s.name for s in page.sections], page.sections[2].query_tokens == a.target_tokens
    (['encoder', 'decoder', 'cross'], True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ...nn import Transformer
from ...viz import plot_attention_grid
from .evaluate import translate_batch
from .tokenizer import SubwordTokenizer

__all__ = ["Alignment", "cross_attention", "plot_alignment", "explore_translation", "SOURCE_AXIS", "OUTPUT_AXIS"]

SOURCE_AXIS = "source token (attended to)"  #: the keys of cross-attention
OUTPUT_AXIS = "output token (being produced)"  #: the queries: row t produces target token t


@dataclass(frozen=True)
class Alignment:
    """Cross-attention weights of one sentence pair."""

    source: str  # the source sentence
    translation: str  # the target sentence that was scored (decoded, or given)
    source_tokens: tuple[str, ...]  # S subword labels, "</s>" last
    target_tokens: tuple[str, ...]  # T subword labels, "</s>" last
    weights: Tensor  # (N, H, T, S) per decoder layer and head; rows sum to 1

    def mean_over_heads(self) -> Tensor:
        """``(N, T, S)``: the average head of each layer."""
        return self.weights.mean(dim=1)  # (N, H, T, S) -> (N, T, S)


def cross_attention(
    model: Transformer, tokenizer: SubwordTokenizer, source: str, *, target: str | None = None, beam_size: int = 4
) -> Alignment:
    """Translate ``source`` (unless ``target`` is given) and return the cross-attention weights of the pair."""
    target, src_ids, tgt_ids = _pair_ids("cross_attention", model, tokenizer, source, target, beam_size)
    device = next(model.parameters()).device
    src = torch.tensor([src_ids], device=device)  # (1, S)
    tgt_in = torch.tensor([[tokenizer.bos_id] + tgt_ids[:-1]], device=device)  # (1, T): <s> + target
    layers = [layer.cross_attn for layer in model.decoder.layers]
    with torch.no_grad(), _capture_weights(layers) as captured:
        model(src, tgt_in)
    weights = torch.cat(captured, dim=0).cpu()  # N x (1, H, T, S) -> (N, H, T, S)
    return Alignment(source, target, tuple(_labels(tokenizer, src_ids)), tuple(_labels(tokenizer, tgt_ids)), weights)


def _pair_ids(caller: str, model: Transformer, tokenizer: SubwordTokenizer, source: str, target: str | None,
              beam_size: int) -> tuple[str, list[int], list[int]]:  # fmt: skip
    """Check ``source``, translate it when ``target`` is None; the target and both id lists, each ending in </s>."""
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"{caller}(): source must be a non-empty sentence, got {source!r}")
    model.eval()
    if target is None:
        target = translate_batch(model, tokenizer, [source], beam_size=beam_size)[0]
    return target, tokenizer.encode(source) + [tokenizer.eos_id], tokenizer.encode(target) + [tokenizer.eos_id]


def _labels(tokenizer: SubwordTokenizer, ids: list[int]) -> list[str]:
    return [t.replace("▁", "_") if t != "▁" else "_" for t in tokenizer.tokens(ids)]  # "_" marks a word start


class _capture_weights:
    """Context manager: hooks that make each module return its weights, collected in a list."""

    def __init__(self, modules):
        self.modules, self.captured, self.handles = modules, [], []

    def __enter__(self) -> list[Tensor]:
        def ask(module, args, kwargs):
            return args, {**kwargs, "need_weights": True}

        def take(module, args, kwargs, output):
            out, weights = output
            self.captured.append(weights)  # (B, H, T, S)
            return out

        for m in self.modules:
            self.handles.append(m.register_forward_pre_hook(ask, with_kwargs=True))
            self.handles.append(m.register_forward_hook(take, with_kwargs=True))
        return self.captured

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()


def plot_alignment(alignment: Alignment, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Write a grid PNG: one row per decoder layer, one panel per head plus the heads' mean.

    Rows of each panel are output (target) tokens, columns source tokens (along the top);
    the axes and the colour bar say so.
    """
    N, H, T, S = alignment.weights.shape
    mean = alignment.mean_over_heads()[:, None]  # (N, T, S) -> (N, 1, T, S)
    panels = torch.cat((alignment.weights, mean), dim=1).reshape(N * (H + 1), T, S)  # (N, H+1, T, S) -> (N*(H+1), T, S)
    titles = [f"layer {n + 1} " + (f"head {h + 1}" if h < H else "mean") for n in range(N) for h in range(H + 1)]
    title = f"cross-attention: {alignment.source!r} -> {alignment.translation!r}"
    return plot_attention_grid(
        panels, x_labels=alignment.source_tokens, y_labels=alignment.target_tokens, head_titles=titles,
        ncols=H + 1, title=title, path=path, dpi=dpi, x_axis=SOURCE_AXIS, y_axis=OUTPUT_AXIS,
        colorbar_label="cross-attention weight",
    )  # fmt: skip


def explore_translation(
    model: Transformer, tokenizer: SubwordTokenizer, source: str, *, target: str | None = None, beam_size: int = 4
):
    """The explorer page (:class:`attnkit.viz.Explorer`) of one sentence pair: encoder, decoder and cross-attention.

    ``target`` None translates ``source`` first (beam search). Weights come from
    :func:`attnkit.apps.inspect.explore_model` (the tiled backend's log-sum-exp, one
    teacher-forced pass); cross-attention rows are the tokens they produce, as in :class:`Alignment`.
    """
    from ..inspect.explore import explore_model

    target, src_ids, tgt_ids = _pair_ids("explore_translation", model, tokenizer, source, target, beam_size)
    tgt_in = [tokenizer.bos_id] + tgt_ids[:-1]  # the decoder reads <s> + target
    return explore_model(model, src_ids, tgt_in, tokens=_labels(tokenizer, src_ids), target_tokens=_labels(
        tokenizer, tgt_in), output_tokens=_labels(tokenizer, tgt_ids), title=f"translation: {source!r} -> {target!r}")
