"""``inspect(text)``: the attention weights of a pretrained model on ``text``, per layer and head, measured.

Two models:

* ``"minilm"`` — all-MiniLM-L6-v2 (BERT encoder, 6 layers x 12 heads, bidirectional);
* ``"smollm2"`` — SmolLM2-135M-Instruct (Llama decoder, 30 layers x 9 heads, causal, RoPE, GQA).

The model runs unchanged; hooks capture each layer's queries and keys and the
weights are recomputed from the tiled backend's log-sum-exp
(:mod:`~attnkit.apps.inspect.capture`). For each layer :func:`attnkit.viz.head_statistics`
gives every head's **mean attention distance** (how many tokens away, on average,
its weight goes) and **entropy** (0: one token; ``log L``: uniform) — the measured
answer to *how does self-attention capture long-range dependencies*: some heads stay
local (distance ~1), others spread over the whole text in a single step. With
``out``, one grid PNG per layer (:func:`attnkit.viz.plot_attention_grids`, token labels
on both axes, query / key axis titles, a labelled colour bar) is written.

Example:
    >>> r = inspect("The animal didn't cross the street because it was too tired", model="minilm")
    >>> len(r.layers), tuple(r.layers[0].weights.shape[:1]), r.method
    (6, (12,), 'lse')
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ...viz import HeadStatistics, head_statistics, plot_attention_grids
from .capture import capture, layer_weights, weights_method

__all__ = ["Inspection", "LayerInspection", "inspect", "MODELS", "MAX_TOKENS"]

MODELS = ("minilm", "smollm2")  #: models :func:`inspect` can load
MAX_TOKENS = 64  #: default limit: a heatmap with more tokens than this is unreadable


@dataclass(frozen=True)
class LayerInspection:
    """One layer: its weights, their statistics and picture."""

    index: int  # layer number, from 0
    weights: Tensor  # (H, L, L) float32, each row sums to 1
    statistics: HeadStatistics  # per head: mean_distance (tokens), entropy (nats)
    max_error: float  # recomputed vs actual layer output, max abs difference
    png: Path | None  # the grid picture, when an output folder was given


@dataclass(frozen=True)
class Inspection:
    """Attention of one model on one text, layer by layer.

    Example (built by hand here; :func:`inspect` makes them from a model):
        >>> from attnkit.viz import head_statistics
        >>> w = torch.full((2, 3, 3), 1 / 3)  # (H, L, L): 2 heads, uniform over 3 tokens
        >>> layer = LayerInspection(0, w, head_statistics(w), max_error=0.0, png=None)
        >>> r = Inspection("minilm", ("a", "b", "c"), (layer,), "lse", "exp(S - lse)", causal=False)
        >>> r.to_dict()["layers"][0]["layer"], r.to_dict()["tokens"]
        (0, ['a', 'b', 'c'])
    """

    model: str  # "minilm" or "smollm2"
    tokens: tuple[str, ...]  # the L tokens (labels of the heatmaps)
    layers: tuple[LayerInspection, ...]  # the inspected layers, in order
    method: str  # "lse" (tiled backend statistics) or "need_weights" (reference backend)
    method_note: str  # one sentence on how the weights were obtained
    causal: bool  # True for the decoder (a token sees only earlier tokens)

    def attention_sections(self) -> list:
        """The page sections of :func:`attnkit.viz.explore`, which accepts an Inspection directly.

        Example:
            >>> from attnkit.viz import explore, head_statistics
            >>> w = torch.full((2, 3, 3), 1 / 3)
            >>> r = Inspection("minilm", ("a", "b", "c"), (LayerInspection(0, w, head_statistics(w), 0.0, None),),
            ...                "lse", "exp(S - lse)", causal=False)
            >>> explore(r).sections[0].name, explore(r).sections[0].num_heads
            ('encoder', 2)
        """
        from ...viz import SectionWriter

        writer = SectionWriter("decoder" if self.causal else "encoder", query_tokens=self.tokens,
                               num_layers=len(self.layers), num_heads=int(self.layers[0].weights.shape[0]),
                               causal=self.causal)  # fmt: skip
        for layer in self.layers:
            writer.add(layer.index, layer.weights)
        return [writer.finish()]

    def to_dict(self) -> dict:
        """Plain types, ready for ``json.dumps`` (weights left out; they are in the PNGs and the API)."""
        layers = [{"layer": x.index, "png": str(x.png) if x.png else None, "max_error": x.max_error,
                   **x.statistics.to_dict()} for x in self.layers]  # fmt: skip
        return {"model": self.model, "tokens": list(self.tokens), "method": self.method,
                "method_note": self.method_note, "causal": self.causal, "layers": layers}  # fmt: skip


def inspect(
    text: str,
    *,
    model: str = "minilm",
    out: str | os.PathLike | None = None,
    layers: Sequence[int] | None = None,
    method: str | None = None,
    max_tokens: int = MAX_TOKENS,
) -> Inspection:
    """Attention weights and per-head statistics of ``model`` on ``text``.

    Args:
        text: the input (one sentence or a short paragraph).
        model: ``"minilm"`` or ``"smollm2"``.
        out: folder for ``layer_00.png``, ``layer_01.png``, ...; None draws nothing.
        layers: layer numbers to inspect (negative counts from the end); default all.
        method: ``"lse"`` or ``"need_weights"``; default: ``"lse"`` when the tiled backend exists.
        max_tokens: refuse longer inputs (heatmaps beyond ~64 tokens cannot be read).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"inspect(): text must be a non-empty str, got {text!r}")
    if model not in MODELS:
        raise ValueError(f"inspect(): model must be one of {MODELS}, got {model!r}")
    chosen, note = weights_method()
    method = method or chosen
    if method != chosen and method == "lse":
        raise ValueError(f"inspect(): method='lse' is unavailable here: {note}")
    tokens, modules, run, causal = _load(model, text, max_tokens)
    picked = _layer_indices(layers, len(modules))
    with torch.inference_mode(), capture([modules[i] for i in picked]) as calls:
        run()
    found = [layer_weights(modules[i], call, method=method) for i, call in zip(picked, calls, strict=True)]
    stats = [head_statistics(lw.weights) for lw in found]
    pngs = _draw(found, stats, tokens, picked, model, out) if out is not None else [None] * len(found)
    rows = zip(picked, found, stats, pngs, strict=True)
    result = [LayerInspection(i, lw.weights, s, lw.max_error, png) for i, lw, s, png in rows]
    note = note if method == chosen else "attention(..., return_weights=True) on the reference backend"
    return Inspection(model, tuple(tokens), tuple(result), method, note, causal)


def _load(model: str, text: str, max_tokens: int):
    """Tokens, attention modules, a zero-argument forward pass, and causality."""
    from ..summarize.models import chat_model, sentence_encoder

    if model == "minilm":
        enc = sentence_encoder()
        batch = enc.tokenizer(text)
        tokens = batch.tokens[0]
        truncated = bool(enc.tokenizer.backend.encode(text).overflowing)  # longer than the model reads
        _check_length(len(tokens) + truncated, min(max_tokens, enc.tokenizer.max_length), "all-MiniLM-L6-v2")
        modules = [layer.self_attn for layer in enc.model.encoder.layers]
        return tokens, modules, lambda: enc.model(batch.input_ids, batch.attention_mask, batch.token_type_ids), False
    chat = chat_model()
    ids = chat.tokenizer.encode(text, add_special_tokens=False).ids
    _check_length(len(ids), min(max_tokens, chat.model.config.max_len), "SmolLM2-135M-Instruct")
    tokens = [chat.tokenizer.decode([i]) for i in ids]
    modules = [layer.self_attn for layer in chat.model.decoder.layers]
    return tokens, modules, lambda: chat.model(torch.tensor([ids])), True


def _check_length(n: int, limit: int, name: str) -> None:
    if n > limit:
        raise ValueError(
            f"inspect(): the text is {n} tokens for {name}, more than the limit of {limit}; heatmaps with more "
            "tokens are unreadable: give a shorter text, or raise max_tokens (--max-tokens)"
        )
    if n == 0:
        raise ValueError(f"inspect(): the text gives no tokens for {name}")


def _layer_indices(layers: Sequence[int] | None, n: int) -> list[int]:
    if layers is None:
        return list(range(n))
    out = []
    for x in layers:
        if isinstance(x, bool) or not isinstance(x, int) or not -n <= x < n:
            raise ValueError(f"inspect(): layers must be ints in [-{n}, {n - 1}] (the model has {n} layers), got {x!r}")
        out.append(x % n)
    return sorted(set(out))


def _draw(found, stats, tokens: Sequence[str], picked: list[int], model: str, out) -> list[Path]:
    """One grid PNG per layer, all drawn in one reused figure (:func:`attnkit.viz.plot_attention_grids`)."""
    labels = [t.replace("\n", "\\n") if t.strip() else repr(t) for t in tokens]
    H = found[0].weights.shape[0]
    head_titles = [[f"head {h}: d={float(st.mean_distance[h]):.1f}  H={float(st.entropy[h]):.2f}" for h in range(H)]
                   for st in stats]  # fmt: skip
    titles = [f"{model} layer {i}: self-attention weights per head "
              "(d = mean attention distance in tokens, H = entropy in nats)" for i in picked]  # fmt: skip
    return plot_attention_grids(
        [lw.weights for lw in found], paths=[Path(out) / f"layer_{i:02d}.png" for i in picked], titles=titles,
        head_titles=head_titles, x_labels=labels, y_labels=labels, ncols=math.ceil(math.sqrt(H)),
    )  # fmt: skip
