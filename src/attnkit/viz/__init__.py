"""Attention heatmaps and per-head statistics.

* :func:`plot_attention` — one ``(Lq, Lk)`` weight matrix as a heatmap PNG,
  queries down the side, keys along the top;
* :func:`plot_attention_grid` — ``(H, Lq, Lk)``: one subplot per head, one shared
  colour scale; :func:`plot_attention_grids` draws several (every layer) in one
  reused figure; :func:`attention_figure` / :func:`attention_grid_figure` return the
  unsaved :class:`~matplotlib.figure.Figure` (to inspect or restyle);
* every picture names its axes (``key (attended to)`` / ``query (attending)`` by
  default; translation passes source / output) and its colour bar;
* :func:`head_statistics` — per head, how far attention reaches (mean attention
  distance) and how spread out it is (entropy in nats).

Pictures are drawn on a bare :class:`matplotlib.figure.Figure` (Agg canvas), never
through ``pyplot``: no global state, no GUI backend, safe in scripts and tests.
PNG files are written atomically (temporary file in the target directory, then
``os.replace``), so a reader never sees half a picture.

Positions follow :mod:`attnkit.masks`: when ``Lq != Lk`` query ``i`` sits at key
position ``i + (Lk - Lq)`` (bottom-right alignment, as in KV-cache decoding).

* :func:`explore` — the interactive, offline HTML explorer (:mod:`attnkit.viz.explorer`):
  head view, model view, statistics, generation; an :class:`Explorer` saves it or shows
  it in a notebook; its sections are :class:`AttentionSection` objects.

Shape legend: B batch, H heads, Lq queries, Lk keys.

Example:
    >>> import torch
    >>> KEY_AXIS, QUERY_AXIS, WEIGHT_LABEL  # the default axis and colour-bar titles
    ('key (attended to)', 'query (attending)', 'attention weight')
    >>> isinstance(head_statistics(torch.full((1, 2, 2), 0.5)), HeadStatistics)
    True
    >>> page = explore(torch.full((1, 1, 2, 2), 0.5), tokens=["a", "b"])  # 1 layer, 1 head
    >>> isinstance(page, Explorer), isinstance(page.sections[0], AttentionSection)
    (True, True)
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from torch import Tensor

from ..checkpoint import write_atomic
from ._checks import as_matrix_stack as _as_matrix_stack
from ._checks import check_labels as _check_labels
from .explorer import AttentionSection, Explorer, SectionWriter, explore
from .statistics import HeadStatistics, head_statistics

__all__ = ["plot_attention", "plot_attention_grid", "plot_attention_grids", "attention_figure",
           "attention_grid_figure", "head_statistics", "HeadStatistics", "KEY_AXIS", "QUERY_AXIS", "WEIGHT_LABEL",
           "explore", "Explorer", "AttentionSection", "SectionWriter"]

_ANNOTATE_MAX_CELLS = 256  # write the value in each cell up to 16 x 16 (per head)


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
#: default axis and colour-bar titles: self-attention (translation passes source / output instead)
KEY_AXIS, QUERY_AXIS, WEIGHT_LABEL = "key (attended to)", "query (attending)", "attention weight"
_TICK_PT = 8  # tick label font size (points)
_CHAR_IN = 0.62 * _TICK_PT / 72  # about one tick-label character, inches (DejaVu Sans is ~0.6 em wide)
_CELL_IN = 0.2  # inches per token in a grid panel
_PANEL_MIN_IN = 1.6  # smallest panel side, inches (room for a head title)


def _figure(figsize: tuple[float, float], *, layout: Literal["constrained", "tight"] | None = "constrained"):
    from matplotlib.figure import Figure  # imported here: `import attnkit.viz` stays cheap

    return Figure(figsize=figsize, layout=layout)


def _color_range(weights: Tensor) -> tuple[float, float]:
    """Probabilities start at 0; scores or other signed values get their own range."""
    lo, hi = float(weights.min()), float(weights.max())
    if lo >= 0.0:
        return 0.0, max(hi, 1e-12)
    return lo, max(hi, lo + 1e-12)


def _draw(ax, w: Tensor, vmin: float, vmax: float):
    """One heatmap on ``ax`` (``imshow``: one raster per panel, cheap to draw); returns the image."""
    return ax.imshow(w.numpy(), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")


def _tick_labels(ax, Lq: int, Lk: int, x_labels, y_labels, *, x: bool = True, y: bool = True) -> None:
    """Token labels: keys along the top (rotated), queries down the left side.

    ``x``/``y`` False leaves that axis without ticks (inner panels of a grid): tick
    objects are what costs most when matplotlib builds and draws a figure.
    """
    if x:
        ax.set_xticks(range(Lk), x_labels or [str(j) for j in range(Lk)])
        ax.tick_params(axis="x", labelrotation=60, labeltop=True, labelbottom=False, top=True, bottom=False,
                       labelsize=_TICK_PT, length=2)  # fmt: skip
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("left")
    else:
        ax.set_xticks([])
    if y:
        ax.set_yticks(range(Lq), y_labels or [str(i) for i in range(Lq)])
        ax.tick_params(axis="y", labelsize=_TICK_PT, length=2)
    else:
        ax.set_yticks([])


def _axis_titles(ax, x_axis: str, y_axis: str, *, x: bool = True, y: bool = True) -> None:
    if x:
        ax.set_xlabel(x_axis)
        ax.xaxis.set_label_position("top")
    if y:
        ax.set_ylabel(y_axis)


def _annotate(ax, w: Tensor, vmin: float, vmax: float) -> None:
    """The value in each cell (small matrices only)."""
    Lq, Lk = w.shape
    middle = vmin + 0.5 * (vmax - vmin)
    for i in range(Lq):
        for j in range(Lk):
            value = float(w[i, j])
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if value > middle else "white")  # fmt: skip


def _save_atomically(fig, path: Path, dpi: int) -> Path:
    """Write ``fig`` as PNG through :func:`attnkit.checkpoint.write_atomic` (temp file, then ``os.replace``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return write_atomic(path, buffer.getvalue())


def _auto_size(Lq: int, Lk: int) -> tuple[float, float]:
    """Inches: about 0.45 in per token, at least 4 x 3.5 (room for labels and colour bar)."""
    return max(4.0, 0.45 * Lk + 2.5), max(3.5, 0.45 * Lq + 2.0)


def attention_figure(
    weights,
    *,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    x_axis: str = KEY_AXIS,
    y_axis: str = QUERY_AXIS,
    colorbar_label: str = WEIGHT_LABEL,
):
    """The :func:`plot_attention` picture as a :class:`matplotlib.figure.Figure`, not yet saved.

    Example:
        >>> import torch
        >>> fig = attention_figure(torch.full((2, 2), 0.5), x_labels=["a", "b"], y_labels=["a", "b"])
        >>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel(), fig.axes[1].get_ylabel()
        ('key (attended to)', 'query (attending)', 'attention weight')
    """
    fn = "plot_attention()"
    w = _as_matrix_stack(fn, weights, (2,), "(Lq, Lk)")
    Lq, Lk = w.shape
    x_labels = _check_labels(fn, "x_labels", x_labels, Lk, "keys")
    y_labels = _check_labels(fn, "y_labels", y_labels, Lq, "queries")
    vmin, vmax = _color_range(w)
    fig = _figure(figsize or _auto_size(Lq, Lk))
    ax = fig.add_subplot()
    image = _draw(ax, w, vmin, vmax)
    _tick_labels(ax, Lq, Lk, x_labels, y_labels)
    _axis_titles(ax, x_axis, y_axis)
    if title:
        ax.set_title(title, pad=8)
    if Lq * Lk <= _ANNOTATE_MAX_CELLS:
        _annotate(ax, w, vmin, vmax)
    fig.colorbar(image, ax=ax, shrink=0.8, label=colorbar_label)
    return fig


def plot_attention(
    weights,
    *,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    title: str | None = None,
    path: str | os.PathLike,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
    x_axis: str = KEY_AXIS,
    y_axis: str = QUERY_AXIS,
    colorbar_label: str = WEIGHT_LABEL,
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
        x_axis, y_axis, colorbar_label: the axis and colour-bar titles.

    Example:
        >>> import tempfile, torch
        >>> w = torch.softmax(torch.randn(3, 4), dim=-1)
        >>> png = plot_attention(w, x_labels="a b c d".split(), path=tempfile.mkdtemp() + "/w.png")
        >>> png.read_bytes()[:4]
        b'\\x89PNG'
    """
    path = _check_path("plot_attention()", path)
    fig = attention_figure(weights, x_labels=x_labels, y_labels=y_labels, title=title, figsize=figsize,
                           x_axis=x_axis, y_axis=y_axis, colorbar_label=colorbar_label)  # fmt: skip
    return _save_atomically(fig, path, dpi)


def _longest(labels: Sequence[str] | None, n: int) -> int:
    return max(len(x) for x in labels) if labels else len(str(n - 1))


def _grid_geometry(H: int, ncols: int, Lq: int, Lk: int, x_labels, y_labels, title: bool):
    """Inches of every part of a grid figure, from the label lengths (no text measuring, no layout engine).

    Returns ``(width, height, left, top, panel_w, panel_h, gap_w, gap_h, nrows)``.
    """
    nrows = math.ceil(H / ncols)
    panel_w, panel_h = max(_PANEL_MIN_IN, _CELL_IN * Lk), max(_PANEL_MIN_IN, _CELL_IN * Lq)
    gap_w, gap_h = 0.25, 0.35  # between panels: room for each head's title
    left = 0.35 + _CHAR_IN * _longest(y_labels, Lq) + 0.15  # axis title, tick labels, ticks
    x_ticks = 0.87 * _CHAR_IN * _longest(x_labels, Lk) + 0.15  # labels rotated by 60 degrees
    top = (0.45 if title else 0.1) + 0.3 + 0.25 + x_ticks  # figure title, head title, axis title, tick labels
    right = 0.25 + 0.15 + 0.55  # gap, colour bar, its ticks and label
    width = left + ncols * panel_w + (ncols - 1) * gap_w + right
    height = top + nrows * panel_h + (nrows - 1) * gap_h + 0.15
    return width, height, left, top, panel_w, panel_h, gap_w, gap_h, nrows


def attention_grid_figure(
    weights,
    *,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    title: str | None = None,
    head_titles: Sequence[str] | None = None,
    ncols: int | None = None,
    x_axis: str = KEY_AXIS,
    y_axis: str = QUERY_AXIS,
    colorbar_label: str = WEIGHT_LABEL,
):
    """The :func:`plot_attention_grid` picture as a :class:`matplotlib.figure.Figure`, not yet saved.

    Token labels sit on the outer panels only (keys above the top row, queries left of
    the first column), the axis titles on the first panel: the panels share both axes. Drawn without a
    layout engine or per-cell text, so a 12-head grid saves in a fraction of a second.

    Example:
        >>> import torch
        >>> fig = attention_grid_figure(torch.full((4, 2, 3), 1 / 3), ncols=2)
        >>> [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes[:2]]  # the first panel names the axes
        [('key (attended to)', 'query (attending)'), ('', '')]
        >>> fig.axes[-1].get_ylabel()  # the colour bar
        'attention weight'
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
    width, height, left, top, pw, ph, gw, gh, nrows = _grid_geometry(H, ncols, Lq, Lk, x_labels, y_labels,
                                                                     bool(title))  # fmt: skip
    top_labels = 0.87 * _CHAR_IN * _longest(x_labels, Lk) + 0.15 + 0.25  # inches above the top row: ticks, title
    vmin, vmax = _color_range(w)
    fig = _figure((width, height), layout=None)
    image = None
    for h in range(H):
        row, col = divmod(h, ncols)
        x0, y0 = left + col * (pw + gw), height - top - row * (ph + gh) - ph  # bottom-left corner, inches
        ax = fig.add_axes((x0 / width, y0 / height, pw / width, ph / height))
        image = _draw(ax, w[h], vmin, vmax)
        _tick_labels(ax, Lq, Lk, x_labels, y_labels, x=row == 0, y=col == 0)
        _axis_titles(ax, x_axis, y_axis, x=h == 0, y=h == 0)  # once: placing each costs a text measurement
        # y given: matplotlib skips measuring the tick labels to place each title (a large share of the time)
        ax.set_title(head_titles[h], fontsize=9, pad=3, y=1.0 + (top_labels / ph if row == 0 else 0.0))
    grid_top, grid_bottom = height - top, height - top - nrows * ph - (nrows - 1) * gh
    cax = fig.add_axes(((width - 0.95 + 0.25) / width, grid_bottom / height, 0.15 / width,
                        (grid_top - grid_bottom) / height))  # fmt: skip
    fig.colorbar(image, cax=cax, label=colorbar_label)
    if title:
        fig.suptitle(title, y=1 - 0.12 / height, va="top", fontsize=11)
    return fig


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
    x_axis: str = KEY_AXIS,
    y_axis: str = QUERY_AXIS,
    colorbar_label: str = WEIGHT_LABEL,
) -> Path:
    """Draw the weights of several heads, one panel per head, with one colour scale.

    Args:
        weights: ``(H, Lq, Lk)``; for a batch ``(B, H, Lq, Lk)`` pick one element first.
        x_labels, y_labels: as in :func:`plot_attention`, shared by every head.
        title: figure title.
        head_titles: one title per head (default ``"head 0"``, ``"head 1"``, ...).
        ncols: panels per row (default ``ceil(sqrt(H))``).
        path, dpi: as in :func:`plot_attention`.
        figsize: inches; default from the number of tokens and the label lengths.
        x_axis, y_axis, colorbar_label: the axis and colour-bar titles.

    Example:
        >>> import tempfile, torch
        >>> w = torch.softmax(torch.randn(4, 3, 3), dim=-1)  # 4 heads
        >>> plot_attention_grid(w, path=tempfile.mkdtemp() + "/heads.png").suffix
        '.png'
    """
    path = _check_path("plot_attention_grid()", path)
    fig = attention_grid_figure(weights, x_labels=x_labels, y_labels=y_labels, title=title, head_titles=head_titles,
                                ncols=ncols, x_axis=x_axis, y_axis=y_axis, colorbar_label=colorbar_label)  # fmt: skip
    if figsize is not None:
        fig.set_size_inches(figsize)  # the panels keep their fractions of the figure
    return _save_atomically(fig, path, dpi)

def plot_attention_grids(
    stacks: Sequence,
    *,
    paths: Sequence[str | os.PathLike],
    titles: Sequence[str | None],
    head_titles: Sequence[Sequence[str] | None],
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    ncols: int | None = None,
    dpi: int = 100,
    x_axis: str = KEY_AXIS,
    y_axis: str = QUERY_AXIS,
    colorbar_label: str = WEIGHT_LABEL,
) -> list[Path]:
    """:func:`plot_attention_grid` for several ``(H, Lq, Lk)`` stacks of one shape (e.g. every layer).

    One figure is built and reused: each picture only swaps the pixel data, the colour
    range and the titles, which saves most of the cost of building a figure.

    Example:
        >>> import tempfile, torch
        >>> out = tempfile.mkdtemp()
        >>> w = torch.softmax(torch.randn(2, 4, 3, 3), dim=-1)  # 2 layers x 4 heads
        >>> [p.name for p in plot_attention_grids(w, paths=[out + "/a.png", out + "/b.png"], titles=["a", "b"],
        ...                                        head_titles=[None, None])]
        ['a.png', 'b.png']
    """
    fn = "plot_attention_grids()"
    if not len(stacks) == len(paths) == len(titles) == len(head_titles):
        raise ValueError(f"{fn}: got {len(stacks)} stacks, {len(paths)} paths, {len(titles)} titles and "
                         f"{len(head_titles)} head_titles; give one of each per picture")  # fmt: skip
    checked = [_check_path(fn, p) for p in paths]
    fig, written = None, []
    for weights, path, title, heads in zip(stacks, checked, titles, head_titles, strict=True):
        if fig is None:
            fig = attention_grid_figure(weights, x_labels=x_labels, y_labels=y_labels, title=title,
                                        head_titles=heads, ncols=ncols, x_axis=x_axis, y_axis=y_axis,
                                        colorbar_label=colorbar_label)  # fmt: skip
        else:
            _refill(fig, _as_matrix_stack(fn, weights, (3,), "(H, Lq, Lk)"), title, heads)
        written.append(_save_atomically(fig, path, dpi))
    return written


def _refill(fig, w: Tensor, title: str | None, head_titles: Sequence[str] | None) -> None:
    """Put the next stack into a figure from :func:`attention_grid_figure` (same shape)."""
    H = w.shape[0]
    panels = fig.axes[:H]  # the colour bar's axes comes last
    shape = tuple(panels[0].images[0].get_array().shape)
    if len(fig.axes) != H + 1 or tuple(w.shape[1:]) != shape:
        raise ValueError(f"plot_attention_grids(): every stack must have the shape of the first, "
                         f"({len(fig.axes) - 1}, {shape[0]}, {shape[1]}), got {tuple(w.shape)}")  # fmt: skip
    head_titles = _check_labels("plot_attention_grids()", "head_titles", head_titles, H, "heads")
    vmin, vmax = _color_range(w)
    for h, ax in enumerate(panels):
        ax.images[0].set_data(w[h].numpy())
        ax.images[0].set_clim(vmin, vmax)  # the colour bar follows the last one
        ax.title.set_text(head_titles[h] if head_titles else f"head {h}")
    if title and fig._suptitle is not None:
        fig._suptitle.set_text(title)
