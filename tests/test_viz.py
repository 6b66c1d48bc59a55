"""attnkit.viz: heatmap PNGs and per-head statistics, against hand-computed values."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch

from attnkit.viz import head_statistics, plot_attention, plot_attention_grid

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, read without matplotlib."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def softmax_rows(shape, seed=0) -> torch.Tensor:
    return torch.softmax(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


# ---------------------------------------------------------------------- plot_attention
def test_plot_attention_writes_png_matplotlib_reads_back_at_figsize_times_dpi(tmp_path):
    import matplotlib.image

    out = plot_attention(
        softmax_rows((3, 5)), x_labels=list("abcde"), y_labels=list("xyz"), title="t",
        path=tmp_path / "w.png", figsize=(4, 3), dpi=50,
    )  # fmt: skip
    assert out == tmp_path / "w.png"
    assert png_size(out) == (200, 150)
    pixels = matplotlib.image.imread(out)
    assert pixels.shape[:2] == (150, 200)
    assert pixels.std() > 0  # something was drawn


def test_plot_attention_creates_parent_dirs_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "a" / "b" / "w.png"
    plot_attention(softmax_rows((2, 2)), path=target)
    plot_attention(softmax_rows((4, 4), seed=1), path=target)  # overwrites in place
    assert sorted(p.name for p in target.parent.iterdir()) == ["w.png"]
    assert target.read_bytes()[:8] == PNG_MAGIC


def test_plot_attention_accepts_numpy_and_signed_scores(tmp_path):
    scores = np.array([[-1.5, 0.3], [2.0, -0.1]])
    assert plot_attention(scores, path=tmp_path / "s.png").stat().st_size > 0


@pytest.mark.parametrize(
    "weights, kwargs, match",
    [
        (torch.ones(4), {}, r"\(Lq, Lk\), got shape \(4,\)"),
        (torch.ones(1, 2, 2), {}, r"weights\[0\]"),
        (torch.tensor([[0.5, float("nan")]]), {}, "NaN or inf"),
        (torch.tensor([[1.0, float("-inf")]]), {}, "not the masked scores"),
        (torch.ones(2, 3) / 3, {"x_labels": ["a", "b"]}, "x_labels has 2 labels but the weights have 3 keys"),
        (torch.ones(2, 3) / 3, {"y_labels": ["a"]}, "y_labels has 1 labels but the weights have 2 queries"),
        (torch.zeros(0, 3), {}, "empty"),
    ],
)
def test_plot_attention_rejects_bad_weights_with_message(tmp_path, weights, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_attention(weights, path=tmp_path / "w.png", **kwargs)
    assert not list(tmp_path.iterdir())


def test_plot_attention_rejects_bad_paths_and_labels(tmp_path):
    w = torch.eye(2)
    with pytest.raises(ValueError, match=r"must end in \.png"):
        plot_attention(w, path=tmp_path / "w.jpg")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        plot_attention(w, path=tmp_path / "dir.png")
    with pytest.raises(TypeError, match=r"single string 'ab'; split it"):
        plot_attention(w, x_labels="ab", path=tmp_path / "w.png")


# ---------------------------------------------------------------------- plot_attention_grid
def test_plot_attention_grid_writes_one_png_for_all_heads(tmp_path):
    out = plot_attention_grid(
        softmax_rows((3, 4, 5)), x_labels=list("abcde"), title="3 heads",
        path=tmp_path / "g.png", figsize=(6, 4), dpi=40,
    )  # fmt: skip
    assert png_size(out) == (240, 160)


@pytest.mark.parametrize(
    "weights, kwargs, match",
    [
        (torch.eye(3), {}, r"for a single matrix use plot_attention\(\)"),
        (torch.ones(1, 2, 3, 3) / 3, {}, r"weights\[0\]"),
        (torch.ones(2, 3, 3) / 3, {"ncols": 0}, "ncols must be a positive int"),
        (torch.ones(2, 3, 3) / 3, {"head_titles": ["only one"]}, "head_titles has 1 labels"),
    ],
)
def test_plot_attention_grid_rejects_bad_inputs(tmp_path, weights, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_attention_grid(weights, path=tmp_path / "g.png", **kwargs)


# ---------------------------------------------------------------------- head_statistics
def test_head_statistics_identity_has_zero_distance_and_entropy():
    stats = head_statistics(torch.eye(5)[None])  # (H=1, 5, 5)
    assert stats.mean_distance.tolist() == [0.0]
    assert stats.entropy.tolist() == [0.0]
    assert stats.rows.tolist() == [5]


@pytest.mark.parametrize("n", [2, 3, 7])
def test_head_statistics_uniform_has_entropy_log_n_and_mean_abs_offset(n):
    stats = head_statistics(torch.full((1, n, n), 1.0 / n, dtype=torch.float64))
    expected_distance = sum(abs(i - j) for i in range(n) for j in range(n)) / n / n  # n=3: 8/9
    assert stats.entropy.item() == pytest.approx(math.log(n), abs=1e-12)
    assert stats.mean_distance.item() == pytest.approx(expected_distance, abs=1e-12)


def test_head_statistics_two_heads_are_reported_separately():
    stats = head_statistics(torch.stack([torch.eye(3), torch.full((3, 3), 1 / 3)]))  # (H=2, 3, 3)
    assert stats.mean_distance.tolist() == pytest.approx([0.0, 8 / 9])
    assert stats.entropy.tolist() == pytest.approx([0.0, math.log(3)])


def test_head_statistics_aligns_queries_bottom_right_when_lq_differs_from_lk():
    # Lq=2, Lk=3: query 0 sits at key position 1, query 1 at key position 2.
    w = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]])  # (H=1, 2, 3)
    stats = head_statistics(w)
    assert stats.mean_distance.item() == pytest.approx((0.5 * 1 + 0.5 * 0 + 0.0) / 2)
    assert stats.entropy.item() == pytest.approx(math.log(2) / 2)
    one_query = head_statistics(torch.tensor([[[1.0, 0.0, 0.0]]]))  # the single query sits at key 2
    assert one_query.mean_distance.item() == 2.0


def test_head_statistics_excludes_rows_with_zero_mass():
    w = torch.tensor([[[0.0, 0.0], [0.5, 0.5]]])  # row 0 fully masked
    stats = head_statistics(w)
    assert stats.rows.tolist() == [1]
    assert stats.entropy.item() == pytest.approx(math.log(2))
    assert stats.mean_distance.item() == pytest.approx(0.5)


def test_head_statistics_head_with_only_empty_rows_is_nan_and_none_in_dict():
    stats = head_statistics(torch.stack([torch.zeros(2, 2), torch.eye(2)]))
    assert math.isnan(stats.entropy[0].item()) and stats.entropy[1].item() == 0.0
    assert stats.to_dict() == {"mean_distance": [None, 0.0], "entropy": [None, 0.0], "rows": [0, 2]}


def test_head_statistics_averages_over_the_batch():
    w = torch.stack([torch.eye(2), torch.full((2, 2), 0.5)])[:, None]  # (B=2, H=1, 2, 2)
    stats = head_statistics(w)
    assert stats.mean_distance.item() == pytest.approx(0.25)  # (0 + 0 + 0.5 + 0.5) / 4
    assert stats.entropy.item() == pytest.approx(math.log(2) / 2)
    assert stats.rows.tolist() == [4]


@pytest.mark.parametrize(
    "weights, error, match",
    [
        (torch.randn(1, 3, 3), ValueError, "non-negative"),
        (torch.ones(1, 3, 3), ValueError, "must sum to 1.*Did you pass scores"),
        (torch.eye(3), ValueError, r"\(H, Lq, Lk\) or \(B, H, Lq, Lk\), got shape \(3, 3\)"),
        (torch.ones(1, 2, 2, dtype=torch.bool), TypeError, "real numbers"),
    ],
)
def test_head_statistics_rejects_non_weights(weights, error, match):
    with pytest.raises(error, match=match):
        head_statistics(weights)


# ---------------------------------------------------------------------- labels (read from the Figure, not pixels)
def test_attention_figure_names_both_axes_the_colorbar_and_keeps_the_tokens():
    from attnkit.viz import attention_figure

    fig = attention_figure(softmax_rows((2, 3)), x_labels=["a", "b", "c"], y_labels=["x", "y"], title="t")
    heatmap, colorbar = fig.axes
    assert (heatmap.get_xlabel(), heatmap.get_ylabel()) == ("key (attended to)", "query (attending)")
    assert colorbar.get_ylabel() == "attention weight" and heatmap.get_title() == "t"
    assert [t.get_text() for t in heatmap.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in heatmap.get_yticklabels()] == ["x", "y"]


def test_attention_grid_figure_labels_outer_panels_and_takes_custom_axis_titles():
    from attnkit.viz import attention_grid_figure

    fig = attention_grid_figure(softmax_rows((5, 2, 3)), x_labels=list("abc"), y_labels=list("xy"), ncols=3,
                                title="five heads", x_axis="source", y_axis="output",
                                colorbar_label="weight")  # fmt: skip
    *panels, colorbar = fig.axes
    assert len(panels) == 5 and colorbar.get_ylabel() == "weight" and fig.get_suptitle() == "five heads"
    assert (panels[0].get_xlabel(), panels[0].get_ylabel()) == ("source", "output")
    assert [p.get_title() for p in panels] == [f"head {h}" for h in range(5)]
    x_ticks = [[t.get_text() for t in p.get_xticklabels()] for p in panels]
    y_ticks = [[t.get_text() for t in p.get_yticklabels()] for p in panels]
    assert x_ticks == [list("abc")] * 3 + [[]] * 2  # keys above the top row only
    assert y_ticks == [list("xy"), [], [], list("xy"), []]  # queries left of the first column only


def test_plot_attention_grids_writes_one_png_per_stack_with_its_own_titles(tmp_path):
    from attnkit.viz import plot_attention_grids

    stacks = [softmax_rows((2, 3, 3), seed=s) for s in range(3)]
    paths = plot_attention_grids(stacks, paths=[tmp_path / f"{i}.png" for i in range(3)], titles=["a", "b", "c"],
                                 head_titles=[None, ["p", "q"], None], dpi=30)  # fmt: skip
    assert [p.name for p in paths] == ["0.png", "1.png", "2.png"]
    assert len({p.read_bytes() for p in paths}) == 3 and all(png_size(p)[0] > 0 for p in paths)
    with pytest.raises(ValueError, match="must have the shape of the first"):
        plot_attention_grids([stacks[0], softmax_rows((2, 3, 4))], paths=[tmp_path / "x.png", tmp_path / "y.png"],
                             titles=[None, None], head_titles=[None, None])  # fmt: skip
    with pytest.raises(ValueError, match="give one of each per picture"):
        plot_attention_grids(stacks, paths=[tmp_path / "x.png"], titles=[None] * 3, head_titles=[None] * 3)
