r"""``attnkit demo``: self-attention on one sentence, in the three steps of the formula.

.. math::

    \mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right) V

:func:`run_demo` takes a sentence through one attention head (``d_k = d_model``):

1. **tokenize** into words (``"didn't"`` stays one word, punctuation is its own token);
2. **embed** each word with a vector drawn from ``N(0, 1)`` by a generator seeded
   from ``sha256(f"{seed}:{word.lower()}")`` — the same word gets the same vector
   in every run, process and machine (Python's ``hash()`` is salted per process,
   so it is not used); ``"The"`` and ``"the"`` share a vector;
3. **add** the sinusoidal positional encoding, so repeated words differ by position;
4. **project** ``Q = X W_q``, ``K = X W_k``, ``V = X W_v`` with ``W ~ N(0, 1/d_model)``
   drawn from a generator seeded with ``seed``;
5. run the three steps of :mod:`attnkit.functional.reference` — ``attention_scores``,
   ``normalize``, ``weighted_sum`` — and check the result against
   :func:`attnkit.functional.attention`, the fast path.

The weights are random, not trained: the numbers show the mechanics of attention,
not what a trained model would attend to.

The bottom of the file holds the ``attnkit demo`` subcommand (argument parsing and
rich tables); everything above it is plain library code that prints nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used, so `attnkit demo --help` starts without it
    from torch import Tensor

__all__ = ["DEFAULT_SENTENCE", "DEFAULT_OUT_DIR", "MAX_WORDS", "DemoResult", "run_demo", "tokenize", "embed_words"]

#: "it" refers to "animal", seven words back: the long-range dependency attention is for.
DEFAULT_SENTENCE = "The animal didn't cross the street because it was too tired"
DEFAULT_OUT_DIR = Path("out/demo")  #: relative to the current directory
MAX_WORDS = 32  #: the demo prints L x L tables; longer inputs belong to `attnkit inspect`

_WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")  # words with inner apostrophes, or one punctuation mark


def tokenize(sentence: str) -> list[str]:
    """Split a sentence into words; punctuation marks are tokens of their own.

    Example:
        >>> tokenize("The animal didn't cross, it was tired.")
        ['The', 'animal', "didn't", 'cross', ',', 'it', 'was', 'tired', '.']
    """
    if not isinstance(sentence, str):
        raise TypeError(f"tokenize(): sentence must be a str, got {type(sentence).__name__}")
    return _WORD.findall(sentence)


def embed_words(words: list[str], d_model: int, *, seed: int = 0) -> Tensor:
    """A deterministic random embedding ``(L, d_model)`` per word, case-insensitive.

    Row ``i`` is ``N(0, 1)`` noise from a generator seeded with the first 8 bytes of
    ``sha256(f"{seed}:{words[i].lower()}")``: it depends on the word and the seed only.

    Example:
        >>> import torch
        >>> e = embed_words(["The", "cat", "the"], d_model=4)
        >>> e.shape, torch.equal(e[0], e[2])
        (torch.Size([3, 4]), True)
    """
    import torch

    rows = []
    for word in words:
        digest = hashlib.sha256(f"{seed}:{word.lower()}".encode()).digest()
        g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
        rows.append(torch.randn(d_model, generator=g))  # (d_model,)
    return torch.stack(rows) if rows else torch.zeros(0, d_model)  # (L, d_model)


@dataclass(frozen=True)
class DemoResult:
    """Every intermediate of the demo, for printing, plotting or testing.

    Matrices are float32 with the query token on rows and the key token on columns.
    """

    sentence: str  # the input text
    tokens: list[str]  # the words, in order (L of them)
    d_model: int  # embedding width; one head, so d_k = d_model
    seed: int  # seeds the embeddings and the projections
    causal: bool  # whether a causal mask was applied (token i sees tokens 0..i)
    x: Tensor  # (L, d_model) word embeddings + positional encoding
    q: Tensor  # (L, d_k) queries  X W_q
    k: Tensor  # (L, d_k) keys     X W_k
    v: Tensor  # (L, d_k) values   X W_v
    scores: Tensor  # (L, L) step 1: QK^T / sqrt(d_k), -inf where the mask forbids
    weights: Tensor  # (L, L) step 2: softmax of each row; rows sum to 1
    output: Tensor  # (L, d_k) step 3: weights @ V
    backend: str  # the backend attention() picks for the same call
    max_abs_diff: float  # max |output - attention(q, k, v)|: the three steps agree with the fast path
    png: Path | None  # heatmap of the weights, or None if no out_dir was given

    @property
    def d_k(self) -> int:
        return self.q.shape[-1]

    def to_json(self) -> dict:
        """Plain types for ``json.dumps``; ``-inf`` scores (masked) become ``null``."""

        def rows(t: Tensor) -> list[list[float | None]]:
            return [[x if math.isfinite(x) else None for x in row] for row in t.tolist()]

        return {
            "sentence": self.sentence,
            "tokens": self.tokens,
            "d_model": self.d_model,
            "d_k": self.d_k,
            "seed": self.seed,
            "causal": self.causal,
            "scores": rows(self.scores),
            "weights": rows(self.weights),
            "output": rows(self.output),
            "backend": self.backend,
            "max_abs_diff": self.max_abs_diff,
            "png": None if self.png is None else str(self.png),
        }


def run_demo(
    sentence: str = DEFAULT_SENTENCE,
    d_model: int = 16,
    out_dir: str | Path | None = DEFAULT_OUT_DIR,
    seed: int = 0,
    *,
    causal: bool = False,
) -> DemoResult:
    """Self-attention over the words of ``sentence``, step by step (see the module docstring).

    Args:
        sentence: text of 1 to :data:`MAX_WORDS` words.
        d_model: embedding width (= d_k, one head).
        out_dir: directory for the heatmap ``weights.png`` (``weights-causal.png`` with
            ``causal``); ``None`` draws nothing.
        seed: seeds the word embeddings and the projections.
        causal: mask the future: token ``i`` attends to tokens ``0..i`` only.

    Example:
        >>> import torch
        >>> r = run_demo("the cat sat on the mat", d_model=8, out_dir=None)
        >>> r.tokens, r.weights.shape
        (['the', 'cat', 'sat', 'on', 'the', 'mat'], torch.Size([6, 6]))
        >>> torch.allclose(r.weights.sum(dim=-1), torch.ones(6))
        True
    """
    import torch

    from . import masks
    from .functional import attention, explain
    from .functional.reference import attention_scores, normalize, weighted_sum
    from .nn.positional import SinusoidalPositionalEncoding

    tokens = _check_inputs(sentence, d_model, seed)
    L = len(tokens)
    x = embed_words(tokens, d_model, seed=seed) + SinusoidalPositionalEncoding(d_model).encoding(L)  # (L, d_model)
    g = torch.Generator().manual_seed(seed)
    w_q, w_k, w_v = (torch.randn(d_model, d_model, generator=g) / math.sqrt(d_model) for _ in range(3))
    q, k, v = x @ w_q, x @ w_k, x @ w_v  # (L, d_model) @ (d_model, d_k) -> (L, d_k)
    q4, k4, v4 = q[None, None], k[None, None], v[None, None]  # (L, d_k) -> (1, 1, L, d_k): B = H = 1
    mask = masks.causal() if causal else None

    scores = attention_scores(q4, k4, scale=1.0 / math.sqrt(d_model), mask=mask)  # 1. (1, 1, L, L)
    weights, _ = normalize(scores)  # 2. (1, 1, L, L), rows sum to 1
    output = weighted_sum(weights, v4)  # 3. (1, 1, L, L) @ (1, 1, L, d_k) -> (1, 1, L, d_k)

    fast = attention(q4, k4, v4, mask=mask)  # (1, 1, L, d_k) on the backend auto picks
    png = None
    if out_dir is not None:
        from .viz import plot_attention

        title = (("causal " if causal else "") + f"self-attention weights, d_k={d_model}\n"
                 f"random, untrained embeddings and projections (seed {seed}): mechanics, not meaning")  # fmt: skip
        png = plot_attention(
            weights[0, 0], x_labels=tokens, y_labels=tokens, title=title,
            path=Path(out_dir) / ("weights-causal.png" if causal else "weights.png"),
        )  # fmt: skip
    return DemoResult(
        sentence=sentence, tokens=tokens, d_model=d_model, seed=seed, causal=bool(causal),
        x=x, q=q, k=k, v=v, scores=scores[0, 0], weights=weights[0, 0], output=output[0, 0],
        backend=explain(q4, k4, v4, mask=mask).backend, max_abs_diff=float((output - fast).abs().max()), png=png,
    )  # fmt: skip


def _check_inputs(sentence, d_model, seed) -> list[str]:
    if not isinstance(sentence, str):
        raise TypeError(f"run_demo(): sentence must be a str, got {type(sentence).__name__}")
    if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 1:
        raise ValueError(f"run_demo(): d_model must be a positive int, got {d_model!r}; try 16")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"run_demo(): seed must be an int >= 0, got {seed!r}")
    tokens = tokenize(sentence)
    if not tokens:
        raise ValueError(f"run_demo(): the sentence {sentence!r} has no words; try {DEFAULT_SENTENCE!r}")
    if len(tokens) > MAX_WORDS:
        raise ValueError(
            f"run_demo(): the sentence has {len(tokens)} tokens but the demo prints L x L tables and takes at "
            f"most {MAX_WORDS}; shorten it"
        )
    return tokens


# ---------------------------------------------------------------------- `attnkit demo`
_SHOWN_DIMS = 6  # output columns printed in step 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ._argtypes import nonnegative_int, positive_int

    add = parser.add_argument
    add("sentence", nargs="?", type=_sentence, default=DEFAULT_SENTENCE, metavar="SENTENCE",
        help=f"text to attend over, 1 to {MAX_WORDS} words (default: {DEFAULT_SENTENCE!r})")
    add("--d-model", type=positive_int, default=16, metavar="N", help="embedding width = d_k")
    add("--seed", type=nonnegative_int, default=0, metavar="S", help="seed of the random embeddings and projections")
    add("--causal", action="store_true", help="mask the future: each word sees only itself and earlier words")
    add("--out", type=Path, default=DEFAULT_OUT_DIR, metavar="DIR", help="directory for the heatmap PNG")
    add("--json", action="store_true", help="print tokens, scores, weights and the PNG path as JSON")


def _sentence(text: str) -> str:
    """The SENTENCE argument: 1 to MAX_WORDS tokens."""
    n = len(tokenize(text))
    if not 1 <= n <= MAX_WORDS:
        why = "no words" if n == 0 else f"{n} tokens; the demo prints L x L tables (longer texts: `attnkit inspect`)"
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_WORDS} words, got {text!r} with {why}")
    return text


def run(args: argparse.Namespace) -> int:
    from rich.text import Text

    from .console import literal, status, stdout_console

    drawing = "" if args.out is None else " and drawing the heatmap"
    with status(f"demo: computing attention over the sentence{drawing}"):
        result = run_demo(args.sentence, d_model=args.d_model, out_dir=args.out, seed=args.seed, causal=args.causal)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    tables = _tables(result)
    console = stdout_console(*(table for _, table in tables))
    for title, table in tables:
        console.print(f"[bold]{title}[/]")
        console.print(table)
    console.print(Text.assemble("check: attention() runs this call on ", (result.backend, "bold"),
                                f" and matches step 3 to {result.max_abs_diff:.1e}"))  # fmt: skip
    console.print("[dim]embeddings and projections are random, not trained: this shows the mechanics, not meaning[/]")
    console.print(literal(f"heatmap: {result.png}"))
    return 0


def _tables(r: DemoResult):
    """The three steps as (title, rich table) pairs: query tokens down the side, key positions across."""
    from rich import box
    from rich.table import Table

    def matrix(columns: list[str], width: int, extra: str | None = None) -> Table:
        table = Table(box=box.SIMPLE_HEAD, padding=0, collapse_padding=True)
        table.add_column("query", no_wrap=True)
        for name in columns:
            table.add_column(name, justify="right", no_wrap=True, min_width=width)
        if extra:
            table.add_column(extra, justify="right", style="cyan", no_wrap=True)
        return table

    def cell(x: float, best: bool, fmt: str) -> str:
        text = "-∞" if x == float("-inf") else format(x, fmt)
        return f"[bold yellow]{text}[/]" if best else (f"[dim]{text}[/]" if x in (0.0, float("-inf")) else text)

    L = len(r.tokens)
    from .console import literal

    labels = [literal(f"{i:>{len(str(L - 1))}} {t}") for i, t in enumerate(r.tokens)]  # "0 The", ..., "10 tired"
    keys = [str(j) for j in range(L)]  # key columns are numbered like the query rows
    mask = "; causal mask: -∞ where j > i" if r.causal else ""
    scores, weights = matrix(keys, 5), matrix(keys, 4, "row sum")  # "+1.23", "0.12"
    dims = min(_SHOWN_DIMS, r.d_k)
    shown = f"first {dims} of {r.d_k} dims" if dims < r.d_k else f"all {r.d_k} dims"
    output = matrix([f"d{j}" for j in range(dims)], 5)
    row_sums = r.weights.sum(dim=-1).tolist()  # (L,)
    for i, label in enumerate(labels):
        s, p = r.scores[i].tolist(), r.weights[i].tolist()
        top = max(range(L), key=p.__getitem__)
        scores.add_row(label, *(cell(x, j == top, "+.2f") for j, x in enumerate(s)))
        weights.add_row(label, *(cell(x, j == top, ".2f") for j, x in enumerate(p)), f"{row_sums[i]:.4f}")
        output.add_row(label, *(format(x, "+.2f") for x in r.output[i, :dims].tolist()))
    return [
        (f"Step 1 — scores S = QKᵀ/√d_k  (d_k = {r.d_k}; query i down, key j across{mask})", scores),
        ("Step 2 — weights P = softmax(S), row by row; each row sums to 1 (row maximum in yellow)", weights),
        (f"Step 3 — output O = P V, each row a weighted mix of the rows of V ({shown})", output),
    ]
