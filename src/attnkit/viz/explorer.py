"""The attention explorer: one self-contained, offline HTML page (head view, model view, statistics, generation).

:func:`explore` turns attention weights into an :class:`Explorer`: ``save("out.html")``
writes one file with its scripts and styles inlined (no CDN, no request leaves the
page), ``_repr_html_`` shows it in Jupyter or VS Code inside an ``<iframe srcdoc>``
(no ``require.js``, no global names: several explorers per notebook).

The page (hand-written JavaScript in ``attnkit/viz/static``) has four views, each
exportable as SVG and PNG from its toolbar:

* **head view** — the tokens twice, queries left, keys right, one line per weight of the
  selected layer and heads (opacity = weight, one colour per head); hover a token or
  click it to lock: a query shows what it attends to, a key what attends to it;
* **model view** — the layers x heads grid of small heatmaps; click one to open it full
  size, values on hover; positions a causal mask forbids are grey;
* **statistics** — mean attention distance and entropy per head, sortable, each row
  linked to its heatmap;
* **generation** (a section with ``prompt_length``) — step through the generated tokens:
  the attention of each decoding step's query over the prompt and the earlier output.

Several *sections* (``"encoder"``, ``"decoder"``, ``"cross"`` of an encoder-decoder
model) are switched in the toolbar.

Sizes. Weights travel quantized to 16 bits (``round(w * 65535)``: display rounding to
3 decimals is exact to 1.5e-5). A section whose dense weights would exceed
``dense_bytes`` keeps only the ``top_k`` largest weights of each query row (the page
says so, with the share of the weight they hold); the head view shows a window of
tokens beyond 120.

Shape legend: N layers, H heads, Lq queries, Lk keys.

Example:
    >>> import torch
    >>> w = torch.softmax(torch.randn(2, 3, 4, 4), dim=-1)  # 2 layers x 3 heads, 4 tokens
    >>> page = explore(w, tokens=["the", "cat", "sat", "down"], causal=False)
    >>> page.sections[0].mode, page.sections[0].num_heads
    ('dense', 3)
    >>> html = page.html()
    >>> html.startswith("<!DOCTYPE html>"), "<script src" in html, "stylesheet" in html  # all inlined
    (True, False, False)
"""

from __future__ import annotations

import base64
import html as html_lib
import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

from ..checkpoint import write_atomic
from ._checks import as_matrix_stack, check_labels
from .statistics import head_statistics

__all__ = ["AttentionSection", "SectionWriter", "Explorer", "explore", "QUANT", "DENSE_BYTES", "SECTION_BYTES"]

QUANT = 65535  #: weights travel as round(w * QUANT) in 16 bits
DENSE_BYTES = 8_000_000  #: a section up to this size (2 bytes per weight) travels dense; larger: top-k per row
SECTION_BYTES = 16_000_000  #: top-k is chosen so that a section stays under this (4 bytes per kept weight)
_MIN_K, _MAX_K = 4, 64
LABELS = {"self": "self-attention", "encoder": "encoder self-attention", "decoder": "decoder self-attention",
          "cross": "cross-attention"}  # fmt: skip


@dataclass(frozen=True)
class AttentionSection:
    """One kind of attention (e.g. the encoder's), every layer and head, encoded for the page.

    Made by :class:`SectionWriter` (one layer at a time) or :func:`explore` (from tensors).
    """

    name: str  # "self", "encoder", "decoder" or "cross"
    query_tokens: tuple[str, ...]  # Lq labels (rows)
    key_tokens: tuple[str, ...]  # Lk labels (columns)
    layers: tuple[int, ...]  # the layer numbers, in order
    num_heads: int  # H
    causal: bool  # a query i sees keys j <= i + Lk - Lq only (drawn as a grey triangle)
    prompt_length: int | None  # tokens from this position on were generated (the generation view)
    mode: str  # "dense" or "topk"
    top_k: int  # kept weights per query row ("topk"), else Lk
    coverage: float  # mean share of a row's weight that the kept entries hold (1.0 when dense)
    values: bytes  # uint16 little-endian: dense (N, H, Lq, Lk), top-k (N, H, Lq, top_k)
    index: bytes | None  # top-k: uint16 key positions (N, H, Lq, top_k); dense: None
    mean_distance: tuple[tuple[float, ...], ...]  # (N, H) tokens
    entropy: tuple[tuple[float, ...], ...]  # (N, H) nats
    query_axis: str = "query (attending)"
    key_axis: str = "key (attended to)"

    def to_json(self) -> dict:
        """The section as the page reads it (bytes as base64)."""
        return {
            "name": self.name, "label": LABELS.get(self.name, self.name), "q_tokens": list(self.query_tokens),
            "k_tokens": list(self.key_tokens), "layers": list(self.layers), "heads": self.num_heads,
            "causal": self.causal, "prompt_length": self.prompt_length, "mode": self.mode, "k": self.top_k,
            "coverage": self.coverage, "values": base64.b64encode(self.values).decode("ascii"),
            "index": None if self.index is None else base64.b64encode(self.index).decode("ascii"),
            "mean_distance": [[_finite(x) for x in row] for row in self.mean_distance],
            "entropy": [[_finite(x) for x in row] for row in self.entropy],
            "q_axis": self.query_axis, "k_axis": self.key_axis,
        }  # fmt: skip


def _finite(x: float) -> float | None:
    return None if x != x else round(float(x), 5)  # NaN (a head of empty rows) -> null


class SectionWriter:
    """Encode a section layer by layer, so a long text never holds every layer's dense weights.

    Example:
        >>> import torch
        >>> writer = SectionWriter("self", query_tokens="a b".split(), key_tokens="a b".split(), num_layers=1,
        ...                        num_heads=2)
        >>> _ = writer.add(0, torch.full((2, 2, 2), 0.5))
        >>> section = writer.finish()
        >>> section.mode, len(section.values)  # 1 layer x 2 heads x 2 x 2 weights, 2 bytes each
        ('dense', 16)
    """

    def __init__(
        self,
        name: str,
        *,
        query_tokens: Sequence[str],
        key_tokens: Sequence[str] | None = None,
        num_layers: int,
        num_heads: int,
        causal: bool = False,
        prompt_length: int | None = None,
        query_axis: str = "query (attending)",
        key_axis: str = "key (attended to)",
        dense_bytes: int = DENSE_BYTES,
        section_bytes: int = SECTION_BYTES,
    ):
        fn = "SectionWriter()"
        if isinstance(query_tokens, str) or (key_tokens is not None and isinstance(key_tokens, str)):
            raise TypeError(f"{fn}: tokens must be a list of strings, got a single string; split it first")
        self.query_tokens = tuple(str(t) for t in query_tokens)
        self.key_tokens = self.query_tokens if key_tokens is None else tuple(str(t) for t in key_tokens)
        Lq, Lk = len(self.query_tokens), len(self.key_tokens)
        if Lq == 0 or Lk == 0 or num_layers < 1 or num_heads < 1:
            raise ValueError(f"{fn}: need tokens, num_layers >= 1 and num_heads >= 1, got Lq={Lq}, Lk={Lk}, "
                             f"num_layers={num_layers}, num_heads={num_heads}")  # fmt: skip
        if Lk > QUANT:
            raise ValueError(f"{fn}: at most {QUANT} keys fit the page's 16-bit positions, got {Lk}")
        if prompt_length is not None and not 0 < prompt_length <= Lq:
            raise ValueError(f"{fn}: prompt_length must be in [1, {Lq}] (the query tokens), got {prompt_length}")
        self.name, self.num_layers, self.num_heads, self.causal = name, num_layers, num_heads, causal
        self.prompt_length, self.query_axis, self.key_axis = prompt_length, query_axis, key_axis
        rows = num_layers * num_heads * Lq  # query rows in the section
        self.dense = rows * Lk * 2 <= dense_bytes
        self.top_k = Lk if self.dense else max(1, min(Lk, max(_MIN_K, min(_MAX_K, section_bytes // (rows * 4)))))
        self.layers: list[int] = []
        self.values: list[bytes] = []
        self.index: list[bytes] = []
        self.covered: list[float] = []
        self.distance: list[tuple[float, ...]] = []
        self.entropy: list[tuple[float, ...]] = []

    def add(self, layer: int, weights) -> None:
        """Encode one layer's ``(H, Lq, Lk)`` weights (rows sum to 1, or 0 where a query sees nothing)."""
        fn = "SectionWriter.add()"
        if len(self.layers) >= self.num_layers:
            raise ValueError(f"{fn}: the writer was made for {self.num_layers} layers; all were added already")
        w = as_matrix_stack(fn, weights, (3,), "(H, Lq, Lk)").float()  # (H, Lq, Lk) float32 on the CPU
        expected = (self.num_heads, len(self.query_tokens), len(self.key_tokens))
        if tuple(w.shape) != expected:
            raise ValueError(f"{fn}: layer {layer} weights must be (H, Lq, Lk) = {expected}, got {tuple(w.shape)}")
        stats = head_statistics(w)  # checks the rows: non-negative, summing to 1 (or 0)
        self.distance.append(tuple(stats.mean_distance.tolist()))
        self.entropy.append(tuple(stats.entropy.tolist()))
        if self.dense:
            self.values.append(_quantize(w))
            self.covered.append(1.0)
        else:
            top, where = w.topk(self.top_k, dim=-1)  # (H, Lq, Lk) -> (H, Lq, k), largest first
            self.values.append(_quantize(top))
            self.index.append(where.to(torch.int32).numpy().astype("<u2").tobytes())
            sums = w.sum(dim=-1)  # (H, Lq)
            self.covered.append(float((top.sum(dim=-1)[sums > 0] / sums[sums > 0]).mean()) if (sums > 0).any()
                                else 1.0)  # fmt: skip
        self.layers.append(int(layer))

    def finish(self) -> AttentionSection:
        """The encoded section; every layer must have been added."""
        if len(self.layers) != self.num_layers:
            raise ValueError(f"SectionWriter.finish(): {len(self.layers)} of {self.num_layers} layers were added")
        return AttentionSection(
            self.name, self.query_tokens, self.key_tokens, tuple(self.layers), self.num_heads, self.causal,
            self.prompt_length, "dense" if self.dense else "topk", self.top_k,
            sum(self.covered) / len(self.covered), b"".join(self.values), None if self.dense else b"".join(self.index),
            tuple(self.distance), tuple(self.entropy), self.query_axis, self.key_axis,
        )  # fmt: skip


def _quantize(w: Tensor) -> bytes:
    """uint16 little-endian ``round(w * QUANT)``, w clipped to [0, 1]."""
    q = (w.clamp(0.0, 1.0) * QUANT).round().to(torch.int32)  # (..., n) -> (..., n) integer codes
    return q.numpy().astype("<u2").tobytes()


@dataclass(frozen=True)
class Explorer:
    """An explorer page: its sections, a title and a note; ``save()`` writes it, notebooks display it."""

    sections: tuple[AttentionSection, ...]
    title: str = "attention"
    note: str = ""  # one line on where the weights come from
    height: int = 760  # pixels of the notebook iframe
    uid: str = field(default_factory=lambda: "ax" + uuid.uuid4().hex[:12])

    def html(self) -> str:
        """The whole page: one HTML document, scripts and styles inlined."""
        doc = {"title": self.title, "note": self.note, "sections": [s.to_json() for s in self.sections]}
        data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
        title = html_lib.escape(self.title)
        return _TEMPLATE.format(title=title, css=_static("explorer.css"), js=_static("explorer.js"),
                                uid=self.uid, data=data)  # fmt: skip

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page to ``path`` (``.html``) atomically and return the path."""
        path = Path(path)
        if path.suffix.lower() not in (".html", ".htm"):
            raise ValueError(f"Explorer.save(): path must end in .html, got {str(path)!r}")
        return write_atomic(path, self.html().encode("utf-8"))

    def _repr_html_(self) -> str:
        """For Jupyter and VS Code: the page in an ``<iframe srcdoc>`` (isolated: several per notebook)."""
        srcdoc = html_lib.escape(self.html(), quote=True)
        return (f'<iframe id="{self.uid}-frame" srcdoc="{srcdoc}" style="width:100%;height:{self.height}px;'
                'border:1px solid #ddd" sandbox="allow-scripts allow-downloads"></iframe>')  # fmt: skip


def _static(name: str) -> str:
    return resources.files("attnkit.viz").joinpath("static").joinpath(name).read_text(encoding="utf-8")


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>{css}</style></head>
<body><div class="ax-root" id="{uid}"><noscript>This attention explorer needs JavaScript (inlined in this file; it
loads nothing from the network).</noscript></div>
<script type="application/json" id="{uid}-data">{data}</script>
<script>{js}
attnkitExplorer(document.getElementById("{uid}"), JSON.parse(document.getElementById("{uid}-data").textContent));
</script></body></html>
"""


def explore(
    weights,
    tokens: Sequence[str] | None = None,
    *,
    key_tokens: Sequence[str] | None = None,
    causal: bool = False,
    prompt_length: int | None = None,
    layers: Sequence[int] | None = None,
    title: str = "attention",
    note: str = "",
    height: int = 760,
) -> Explorer:
    """The explorer page for ``weights``.

    Args:
        weights: one of
            * a tensor ``(N, H, Lq, Lk)`` (layers x heads) or ``(H, Lq, Lk)`` (one layer), or a list of
              ``(H, Lq, Lk)``, one per layer;
            * a mapping ``{"encoder": ..., "decoder": ..., "cross": ...}`` of those (the toolbar switches);
            * :class:`AttentionSection` objects, or an object with ``attention_sections()`` (e.g.
              :func:`attnkit.apps.inspect.explore_text`'s input, an :class:`~attnkit.apps.inspect.Inspection`).
        tokens: the query labels (default ``"0"``, ``"1"``, ...); ``key_tokens`` the key labels
            (default: ``tokens``). With a mapping of weights, either may be a mapping too, e.g.
            ``tokens={"encoder": source, "decoder": target, "cross": target}, key_tokens={"cross": source}``;
            a plain ``key_tokens`` list applies to ``"cross"`` only.
        causal: draw the positions a causal mask forbids (``"decoder"`` sections are causal regardless).
        prompt_length: queries from this position on are generated tokens (adds the generation view).
        layers: the layer numbers to show (default 0, 1, ...).
        title, note: shown at the top of the page.
        height: the notebook iframe's height in pixels.
    """
    sections = _sections(weights, tokens, key_tokens, causal, prompt_length, layers)
    return Explorer(tuple(sections), title=title, note=note, height=height)


def _sections(weights, tokens, key_tokens, causal, prompt_length, layers) -> list[AttentionSection]:
    if hasattr(weights, "attention_sections"):
        return list(weights.attention_sections())
    if isinstance(weights, AttentionSection):
        return [weights]
    if isinstance(weights, Sequence) and weights and all(isinstance(s, AttentionSection) for s in weights):
        return list(weights)
    if isinstance(weights, Mapping):
        out = []
        for name, stack in weights.items():
            q = tokens.get(name) if isinstance(tokens, Mapping) else tokens
            k = key_tokens.get(name) if isinstance(key_tokens, Mapping) else key_tokens if name == "cross" else None
            out.append(_section(name, stack, q, k, causal or name == "decoder",
                                None if name == "cross" else prompt_length, layers))
        if not out:
            raise ValueError("explore(): weights is an empty mapping; give e.g. {'encoder': tensor (N, H, L, L)}")
        return out
    return [_section("self", weights, tokens, key_tokens, causal, prompt_length, layers)]


def _section(name: str, weights, tokens, key_tokens, causal: bool, prompt_length, layers) -> AttentionSection:
    """One section from a tensor (N, H, Lq, Lk) / (H, Lq, Lk) or a list of (H, Lq, Lk)."""
    fn = "explore()"
    stack: Iterable
    if isinstance(weights, Tensor) and weights.dim() == 3:
        stack = [weights]  # (H, Lq, Lk): one layer
    elif isinstance(weights, Tensor) and weights.dim() == 4:
        stack = list(weights.unbind(0))  # (N, H, Lq, Lk) -> N x (H, Lq, Lk)
    elif isinstance(weights, Sequence) and not isinstance(weights, str) and len(weights) > 0:
        stack = list(weights)
    else:
        got = f"shape {tuple(weights.shape)}" if isinstance(weights, Tensor) else type(weights).__name__
        raise ValueError(f"{fn}: {name} weights must be (N, H, Lq, Lk), (H, Lq, Lk) or a list of (H, Lq, Lk), "
                         f"got {got}")  # fmt: skip
    first = as_matrix_stack(fn, stack[0], (3,), "(H, Lq, Lk)")
    H, Lq, Lk = first.shape
    q_tokens = check_labels(fn, "tokens", tokens, Lq, "queries") or [str(i) for i in range(Lq)]
    k_tokens = check_labels(fn, "key_tokens", key_tokens, Lk, "keys")
    if k_tokens is None:
        if Lk != Lq and name == "cross":
            raise ValueError(f"{fn}: cross-attention has {Lk} keys and {Lq} queries; give key_tokens (the source)")
        k_tokens = q_tokens if Lk == Lq else [str(j) for j in range(Lk)]
    numbers = list(range(len(stack))) if layers is None else [int(x) for x in layers]
    if len(numbers) != len(stack):
        raise ValueError(f"{fn}: layers names {len(numbers)} layers but the weights have {len(stack)}")
    axes = ("output token (being produced)", "source token (attended to)") if name == "cross" else \
        ("query (attending)", "key (attended to)")  # fmt: skip
    writer = SectionWriter(name, query_tokens=q_tokens, key_tokens=k_tokens, num_layers=len(stack), num_heads=H,
                           causal=causal, prompt_length=prompt_length, query_axis=axes[0],
                           key_axis=axes[1])
    for number, w in zip(numbers, stack, strict=True):
        writer.add(number, w)
    return writer.finish()
