"""Attention heatmaps and per-head statistics.

* :func:`plot_attention` — one ``(Lq, Lk)`` weight matrix as a heatmap PNG,
  queries down the side, keys along the top;
* :func:`plot_attention_grid` — ``(H, Lq, Lk)``: one subplot per head, one shared
  colour scale;
* :func:`head_statistics` — per head, how far attention reaches (mean attention
  distance) and how spread out it is (entropy in nats).

Pictures are drawn on a bare :class:`matplotlib.figure.Figure` (Agg canvas), never
through ``pyplot``: no global state, no GUI backend, safe in scripts and tests.
PNG files are written atomically (temporary file in the target directory, then
``os.replace``), so a reader never sees half a picture.

Positions follow :mod:`attnkit.masks`: when ``Lq != Lk`` query ``i`` sits at key
position ``i + (Lk - Lq)`` (bottom-right alignment, as in KV-cache decoding).

Shape legend: B batch, H heads, Lq queries, Lk keys.
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["plot_attention", "plot_attention_grid", "head_statistics", "HeadStatistics"]

_ANNOTATE_MAX_CELLS = 256  # write the value in each cell up to 16 x 16 (per head)
_ROW_SUM_TOLERANCE = 1e-3  # weights rows must sum to 1 (or 0) within this; generous for fp16


# ---------------------------------------------------------------------- validation
def _as_matrix_stack(fn: str, weights, dims: tuple[int, ...], layout: str) -> Tensor:
    """``weights`` as a finite float64 CPU tensor with ``dims`` dimensions, or a teaching error."""
    if not isinstance(weights, Tensor):
        try:
            weights = torch.as_tensor(weights)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(
                f"{fn}: weights must be a torch.Tensor or array-like {layout}, got {type(weights).__name__}"
            ) from e
    if weights.is_complex() or weights.dtype == torch.bool:
        raise TypeError(f"{fn}: weights must be real numbers, got dtype {weights.dtype}")
    if weights.dim() not in dims:
        hint = ""
        if weights.dim() == max(dims) + 1:
            hint = "; select one batch element first, e.g. weights[0]"
        elif weights.dim() == max(dims) - 1 and fn.startswith("plot_attention_grid"):
            hint = "; for a single matrix use plot_attention()"
        raise ValueError(f"{fn}: weights must be {layout}, got shape {tuple(weights.shape)}{hint}")
    if weights.numel() == 0:
        raise ValueError(f"{fn}: weights are empty (shape {tuple(weights.shape)}); nothing to show")
    weights = weights.detach().to("cpu", torch.float64)
    if not torch.isfinite(weights).all():
        raise ValueError(
            f"{fn}: weights contain NaN or inf; pass the normalized weights (step 2), not the "
            "masked scores (-inf where forbidden)"
        )
    return weights


def _check_labels(fn: str, name: str, labels: Sequence[str] | None, n: int, axis: str) -> list[str] | None:
    """``axis`` is plural: "keys", "queries", "heads"."""
    if labels is None:
        return None
    if isinstance(labels, str):
        raise TypeError(
            f"{fn}: {name} must be a list of strings, one per entry, got the single string {labels!r}; "
            f"split it, e.g. {name}=text.split()"
        )
    labels = [str(x) for x in labels]
    if len(labels) != n:
        raise ValueError(f"{fn}: {name} has {len(labels)} labels but the weights have {n} {axis}")
    return labels


def _check_path(fn: str, path) -> Path:
    if path is None:
        raise TypeError(f"{fn}: path= is required, e.g. path='out/attention.png'")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{fn}: path must end in .png, got {str(path)!r}")
    if path.is_dir():
        example = str(path / "attention.png")
        raise ValueError(f"{fn}: path {str(path)!r} is a directory; give a file name such as {example!r}")
    return path


# ---------------------------------------------------------------------- drawing
def _figure(figsize: tuple[float, float]):
    from matplotlib.figure import Figure  # imported here: `import attnkit.viz` stays cheap

    return Figure(figsize=figsize, layout="constrained")


def _color_range(weights: Tensor) -> tuple[float, float]:
    """Probabilities start at 0; scores or other signed values get their own range."""
    lo, hi = float(weights.min()), float(weights.max())
    if lo >= 0.0:
        return 0.0, max(hi, 1e-12)
    return lo, max(hi, lo + 1e-12)


def _draw(ax, w: Tensor, x_labels, y_labels, title, vmin, vmax, *, axis_titles: bool):
    """One heatmap on ``ax``; returns the image (for a colour bar)."""
    Lq, Lk = w.shape
    image = ax.imshow(w.numpy(), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(Lk), x_labels if x_labels is not None else [str(j) for j in range(Lk)])
    ax.set_yticks(range(Lq), y_labels if y_labels is not None else [str(i) for i in range(Lq)])
    ax.tick_params(axis="x", labelrotation=60, labeltop=True, labelbottom=False, top=True, bottom=False)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("left")
    if axis_titles:
        ax.set_xlabel("key (attended to)")
        ax.xaxis.set_label_position("top")
        ax.set_ylabel("query (attending)")
    if title:
        ax.set_title(title, pad=8)
    if Lq * Lk <= _ANNOTATE_MAX_CELLS:
        middle = vmin + 0.5 * (vmax - vmin)
        for i in range(Lq):
            for j in range(Lk):
                value = float(w[i, j])
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if value > middle else "white")  # fmt: skip
    return image


def _save_atomically(fig, path: Path, dpi: int) -> Path:
    """Write ``fig`` as PNG: temporary file in the same directory, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:  # "x": never clobber; permissions follow the umask, like any new file
            fig.savefig(f, format="png", dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _auto_size(Lq: int, Lk: int) -> tuple[float, float]:
    """Inches: about 0.45 in per token, at least 4 x 3.5 (room for labels and colour bar)."""
    return max(4.0, 0.45 * Lk + 2.5), max(3.5, 0.45 * Lq + 2.0)


def plot_attention(
    weights,
    *,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    title: str | None = None,
    path: str | os.PathLike,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path:
    """Draw one attention matrix as a heatmap PNG and return its path.

    Rows are queries (``y_labels``), columns keys (``x_labels``, along the top). Up to
    16 x 16 cells the value is written in each cell. Non-negative inputs (weights) are
    coloured from 0 to their maximum; signed inputs (e.g. scores) over their range.

    Args:
        weights: ``(Lq, Lk)`` tensor or array, finite (use the normalized weights, not
            scores with ``-inf``).
        x_labels: one label per key, e.g. the tokens.
        y_labels: one label per query.
        title: figure title.
        path: where to write; must end in ``.png``; parent directories are created.
        figsize: inches ``(width, height)``; default grows with the number of tokens.
        dpi: pixels per inch; the PNG is ``figsize * dpi`` pixels.

    Example:
        >>> import tempfile, torch
        >>> w = torch.softmax(torch.randn(3, 4), dim=-1)
        >>> png = plot_attention(w, x_labels="a b c d".split(), path=tempfile.mkdtemp() + "/w.png")
        >>> png.read_bytes()[:4]
        b'\\x89PNG'
    """
    fn = "plot_attention()"
    w = _as_matrix_stack(fn, weights, (2,), "(Lq, Lk)")
    Lq, Lk = w.shape
    x_labels = _check_labels(fn, "x_labels", x_labels, Lk, "keys")
    y_labels = _check_labels(fn, "y_labels", y_labels, Lq, "queries")
    path = _check_path(fn, path)
    vmin, vmax = _color_range(w)
    fig = _figure(figsize or _auto_size(Lq, Lk))
    ax = fig.add_subplot()
    image = _draw(ax, w, x_labels, y_labels, title, vmin, vmax, axis_titles=True)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _save_atomically(fig, path, dpi)


def plot_attention_grid(
    weights,
    *,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    title: str | None = None,
    head_titles: Sequence[str] | None = None,
    ncols: int | None = None,
    path: str | os.PathLike,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path:
    """Draw the weights of several heads, one subplot per head, with one colour scale.

    Args:
        weights: ``(H, Lq, Lk)``; for a batch ``(B, H, Lq, Lk)`` pick one element first.
        x_labels, y_labels: as in :func:`plot_attention`, shared by every head.
        title: figure title.
        head_titles: one title per head (default ``"head 0"``, ``"head 1"``, ...).
        ncols: subplots per row (default ``ceil(sqrt(H))``).
        path, figsize, dpi: as in :func:`plot_attention`.

    Example:
        >>> import tempfile, torch
        >>> w = torch.softmax(torch.randn(4, 3, 3), dim=-1)  # 4 heads
        >>> plot_attention_grid(w, path=tempfile.mkdtemp() + "/heads.png").suffix
        '.png'
    """
    fn = "plot_attention_grid()"
    w = _as_matrix_stack(fn, weights, (3,), "(H, Lq, Lk)")
    H, Lq, Lk = w.shape
    x_labels = _check_labels(fn, "x_labels", x_labels, Lk, "keys")
    y_labels = _check_labels(fn, "y_labels", y_labels, Lq, "queries")
    head_titles = _check_labels(fn, "head_titles", head_titles, H, "heads") or [f"head {h}" for h in range(H)]
    if ncols is None:
        ncols = math.ceil(math.sqrt(H))
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"{fn}: ncols must be a positive int, got {ncols!r}")
    ncols = min(ncols, H)
    nrows = math.ceil(H / ncols)
    path = _check_path(fn, path)
    vmin, vmax = _color_range(w)
    cell_w, cell_h = _auto_size(Lq, Lk)
    fig = _figure(figsize or (cell_w * ncols * 0.85, cell_h * nrows * 0.85 + (0.4 if title else 0.0)))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    image = None
    for h, ax in enumerate(axes.flat):
        if h >= H:
            ax.set_axis_off()  # empty cells of the last row
            continue
        image = _draw(ax, w[h], x_labels, y_labels, head_titles[h], vmin, vmax, axis_titles=False)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
    if title:
        fig.suptitle(title)
    return _save_atomically(fig, path, dpi)


# ---------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class HeadStatistics:
    """Per-head summaries of attention weights, averaged over batch and query rows.

    Rows whose weights are all zero (queries a mask let attend to nothing) are left
    out of both averages; a head with no such row at all gets NaN.
    """

    mean_distance: Tensor  # (H,) float64: average over rows of sum_j p_ij |pos(i) - j|, in positions
    entropy: Tensor  # (H,) float64: average over rows of -sum_j p_ij log p_ij, in nats (uniform over n keys: log n)
    rows: Tensor  # (H,) int64: rows that entered the averages (B * Lq minus the empty rows)

    def to_dict(self) -> dict[str, list]:
        """Plain lists, ready for ``json.dumps`` (NaN becomes None)."""

        def clean(t: Tensor) -> list:
            return [None if isinstance(x, float) and math.isnan(x) else x for x in t.tolist()]

        return {"mean_distance": clean(self.mean_distance), "entropy": clean(self.entropy), "rows": self.rows.tolist()}


def head_statistics(weights) -> HeadStatistics:
    r"""Mean attention distance and entropy of each head.

    For query row ``i`` with weights ``p_i`` over keys ``j``:

    .. math::
        \mathrm{dist}_i = \sum_j p_{ij} \, |(i + L_k - L_q) - j|, \qquad
        \mathrm{H}_i = -\sum_j p_{ij} \log p_{ij} \quad (0 \log 0 = 0)

    (query ``i`` sits at key position ``i + Lk - Lq``: bottom-right alignment), each
    averaged over the rows that carry weight, across the batch. Distance 0 means
    every query reads only its own position; entropy 0 means one key per query,
    ``log Lk`` means uniform attention.

    Args:
        weights: ``(H, Lq, Lk)`` or ``(B, H, Lq, Lk)``, non-negative, each row summing
            to 1 (or 0 for a fully masked query) — the normalized weights, not scores.

    Example:
        >>> import torch
        >>> stats = head_statistics(torch.stack([torch.eye(3), torch.full((3, 3), 1 / 3)]))
        >>> stats.entropy  # one-hot rows: 0; uniform over 3 keys: log 3
        tensor([0.0000, 1.0986], dtype=torch.float64)
        >>> stats.mean_distance  # identity: 0; uniform: (1 + 2/3 + 1) / 3
        tensor([0.0000, 0.8889], dtype=torch.float64)
    """
    fn = "head_statistics()"
    w = _as_matrix_stack(fn, weights, (3, 4), "(H, Lq, Lk) or (B, H, Lq, Lk)")
    if w.dim() == 3:
        w = w[None]  # (H, Lq, Lk) -> (1, H, Lq, Lk)
    B, H, Lq, Lk = w.shape
    if (w < 0).any():
        raise ValueError(
            f"{fn}: weights must be non-negative, got a minimum of {float(w.min()):.4g}; pass softmax outputs"
        )
    row_sums = w.sum(dim=-1)  # (B, H, Lq)
    empty = row_sums <= _ROW_SUM_TOLERANCE  # (B, H, Lq) queries that attend to nothing
    bad = ~empty & ((row_sums - 1.0).abs() > _ROW_SUM_TOLERANCE)
    if bad.any():
        raise ValueError(
            f"{fn}: each row of weights must sum to 1 (or 0 for a fully masked query); row sums range over "
            f"[{float(row_sums.min()):.4g}, {float(row_sums.max()):.4g}]. Did you pass scores? Apply softmax over "
            "the last axis first"
        )
    q_pos = torch.arange(Lq, dtype=torch.float64)[:, None] + (Lk - Lq)  # (Lq, 1) aligned on the key axis
    k_pos = torch.arange(Lk, dtype=torch.float64)[None, :]  # (1, Lk)
    distance = (w * (q_pos - k_pos).abs()).sum(dim=-1)  # (B, H, Lq, Lk) * (Lq, Lk) -> (B, H, Lq)
    entropy = -torch.xlogy(w, w).sum(dim=-1)  # (B, H, Lq); xlogy(0, 0) = 0
    keep = (~empty).to(torch.float64)  # (B, H, Lq)
    rows = keep.sum(dim=(0, 2))  # (H,)

    def per_head(t: Tensor) -> Tensor:
        return (t * keep).sum(dim=(0, 2)) / rows  # (B, H, Lq) -> (H,); 0 / 0 = NaN for a head of empty rows

    return HeadStatistics(per_head(distance), per_head(entropy), rows.to(torch.int64))
