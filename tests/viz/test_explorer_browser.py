"""The explorer page in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

Each test builds a page from known weights, clicks what a person clicks (a head, a
token, a heatmap, a column header, the export buttons) and checks the DOM against the
tensors: the lines drawn, the cells and their values (within display rounding), the
statistics. Every page must log no console error and send no request (only its own
file loads). One browser per module; the harness (``browser``, ``open_page``, ``open_html``)
lives in ``tests/viz/conftest.py``.

Without chromium these tests skip, saying why, except under ``CI=true``, where they
must run (``.ci/run`` installs Debian's chromium when it is missing).
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch

from attnkit.viz import explore
from attnkit.viz.explorer import QUANT

TOKENS = "The animal didn't cross the street because it was too tired".split()
ROUND_4 = 0.5e-4 + 0.5 / QUANT + 1e-9  # data-w carries 4 decimals of the 16-bit value
ROUND_3 = 0.5e-3 + 0.5 / QUANT + 1e-9  # the readout shows 3 decimals


def stack(N: int, H: int, Lq: int, Lk: int, *, causal: bool = False, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = 2.5 * torch.randn(N, H, Lq, Lk, generator=g, dtype=dtype)
    if causal:
        s = s.masked_fill(~torch.ones(Lq, Lk, dtype=torch.bool).tril(Lk - Lq), float("-inf"))
    return torch.softmax(s, dim=-1)


def not_blank(png: bytes) -> None:
    from matplotlib.image import imread

    pixels = imread(io.BytesIO(png), format="png")[..., :3]
    assert pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert (np.abs(pixels - 1.0).max(axis=-1) > 0.05).mean() > 0.02  # more than 2% of the pixels are not white
    assert len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 20


def test_head_view_lines_follow_a_clicked_head_and_token_in_both_directions(open_page):
    w = stack(2, 4, len(TOKENS), len(TOKENS))  # (N, H, L, L)
    o = open_page(explore(w, tokens=TOKENS))
    assert len(o.page.query_selector_all(".ax-tok")) == 2 * len(TOKENS)
    o.page.dblclick('.ax-head[data-head="2"]')  # only head 2
    o.page.click('.ax-tok[data-side="q"][data-i="3"]')  # lock the query "cross"
    lines = o.attrs(".ax-line", "data-h", "data-q", "data-k", "data-w")
    expected = {j for j in range(len(TOKENS)) if w[0, 2, 3, j] >= 0.005 + ROUND_4}
    drawn = {int(k) for h, q, k, _ in lines}
    assert {h for h, *_ in lines} == {"2"} and {q for _, q, *_ in lines} == {"3"}
    assert expected <= drawn and all(w[0, 2, 3, j] >= 0.005 - ROUND_4 for j in drawn)
    for _, _, k, value in lines:
        assert abs(float(value) - float(w[0, 2, 3, int(k)])) <= ROUND_4
    o.page.click('.ax-tok[data-side="k"][data-i="5"]')  # what attends to the key "street"
    lines = o.attrs(".ax-line", "data-q", "data-k", "data-w")
    assert {k for _, k, _ in lines} == {"5"}
    for q, _, value in lines:
        assert abs(float(value) - float(w[0, 2, int(q), 5])) <= ROUND_4
    assert {int(q) for q, *_ in lines} >= {i for i in range(len(TOKENS)) if w[0, 2, i, 5] >= 0.005 + ROUND_4}
    assert "locked" in o.page.inner_text(".ax-readout")
    not_blank(o.page.screenshot())
    o.clean()


def test_model_view_opens_a_heatmap_whose_cells_are_the_weights_with_the_causal_triangle(open_page):
    L = len(TOKENS)
    w = stack(3, 4, L, L, causal=True)
    o = open_page(explore({"decoder": w}, tokens=TOKENS))
    o.page.click('.ax-tab[data-view="model"]')
    assert len(o.page.query_selector_all(".ax-thumb")) == 3 * 4
    not_blank(o.page.screenshot())
    o.page.click('.ax-thumb[data-layer="1"][data-head="2"]')
    cells = o.attrs(".ax-cell", "data-q", "data-k", "data-w", "data-masked")
    assert len(cells) == L * L
    masked = {(int(q), int(k)) for q, k, _, m in cells if m == "1"}
    assert masked == {(i, j) for i in range(L) for j in range(L) if j > i}  # the causal triangle, drawn grey
    worst = max(abs(float(v) - float(w[1, 2, int(q), int(k)])) for q, k, v, _ in cells)
    assert worst <= 0.5e-5 + 0.5 / QUANT
    o.page.hover('.ax-cell[data-q="7"][data-k="4"]')
    assert abs(o.readout_value() - float(w[1, 2, 7, 4])) <= ROUND_3
    linear = o.attrs(".ax-cell", "fill", "data-w")
    o.page.select_option(".ax-scale", "sqrt")  # the colour scale changes, the values do not
    root = o.attrs(".ax-cell", "fill", "data-w")
    assert [v for _, v in root] == [v for _, v in linear] and [f for f, _ in root] != [f for f, _ in linear]
    assert "layer 1, head 2" in o.page.text_content(".ax-zoom")
    o.clean()


def test_statistics_table_sorts_and_links_each_row_to_its_heatmap(open_page):
    w = stack(2, 3, 6, 6)
    page = explore(w, tokens=TOKENS[:6])
    o = open_page(page)
    o.page.click('.ax-tab[data-view="stats"]')
    assert len(o.page.query_selector_all(".ax-stats tr[data-layer]")) == 2 * 3
    o.page.click('th[data-key="entropy"]')  # largest first
    rows = [[float(x) for x in r.split("\t")] for r in o.page.eval_on_selector_all(
        ".ax-stats tr[data-layer]", "els => els.map(e => e.innerText.replace(/\\n/g, '\\t'))")]  # fmt: skip
    entropy_of = page.sections[0].entropy  # (N, H)
    expected = sorted(((n, h, entropy_of[n][h]) for n in range(2) for h in range(3)), key=lambda r: -r[2])
    assert [(int(a), int(b)) for a, b, *_ in rows] == [(layer, h) for layer, h, _ in expected]
    for (_, _, _, entropy), (_, _, value) in zip(rows, expected, strict=True):
        assert abs(entropy - value) <= 0.5e-3 + 1e-9  # shown with 3 decimals
    oracle = -(w * w.log()).sum(-1).mean(-1)  # (N, H): entropy averaged over the query rows, float64
    for layer, h, value in expected:
        assert value == pytest.approx(float(oracle[layer, h]), abs=1e-4)
    top_layer, top_head, _ = expected[0]
    o.page.click(".ax-stats tr[data-layer]")  # the first row after sorting
    assert f"layer {top_layer}, head {top_head}" in o.page.text_content(".ax-zoom")
    o.clean()


def test_every_view_exports_svg_and_png(open_page):
    w = stack(1, 2, 5, 5, causal=True)
    o = open_page(explore({"decoder": w}, tokens=TOKENS[:5], prompt_length=3))
    for view in ("head", "model", "stats", "gen"):
        o.page.click(f'.ax-tab[data-view="{view}"]')
        with o.page.expect_download() as svg:
            o.page.click(".ax-export-svg")
        text = open(svg.value.path(), encoding="utf-8").read()
        assert text.startswith("<svg") and 'xmlns="http://www.w3.org/2000/svg"' in text, view
        assert "decoder self-attention" in text  # the caption says what was shown
        assert svg.value.suggested_filename.endswith(".svg")
        with o.page.expect_download() as png:
            o.page.click(".ax-export-png")
        not_blank(open(png.value.path(), "rb").read())
    o.clean()


def test_generation_view_steps_through_the_attention_of_each_generated_token(open_page):
    L, p = 9, 5
    w = stack(2, 3, L, L, causal=True)
    o = open_page(explore({"decoder": w}, tokens=TOKENS[:L], prompt_length=p))
    o.page.click('.ax-tab[data-view="gen"]')
    o.page.select_option(".ax-layer", "1")
    o.page.click(".ax-next")
    o.page.click(".ax-next")  # step 3: the query at position p + 1 writes token p + 2
    boxes = o.attrs(".ax-gtok", "data-i", "data-w")
    assert [int(i) for i, _ in boxes] == list(range(p + 3))
    mean = w[1, :, p + 1].mean(0)  # (Lk,) mean over the heads of that query row
    for i, value in boxes[:-1]:
        assert abs(float(value) - float(mean[int(i)])) <= 0.5e-5 + 0.5 / QUANT
    assert boxes[-1][1] == ""  # the token being written carries no weight
    assert "step 3 / 4" in o.page.inner_text(".ax-controls")
    o.page.keyboard.press("ArrowRight")  # the arrow keys step too
    assert "step 4 / 4" in o.page.inner_text(".ax-controls") and len(o.page.query_selector_all(".ax-gtok")) == L
    o.clean()


def test_encoder_decoder_switch_shows_cross_attention_tokens(open_page):
    src, tgt = TOKENS[:4], ["<s>", "Das", "Tier", "ging", "nicht"]
    page = explore({"encoder": stack(1, 2, 4, 4), "decoder": stack(1, 2, 5, 5, causal=True),
                    "cross": stack(1, 2, 5, 4)},
                   tokens={"encoder": src, "decoder": tgt, "cross": tgt}, key_tokens={"cross": src})  # fmt: skip
    o = open_page(page)
    assert [b.inner_text() for b in o.page.query_selector_all(".ax-sec")] == [
        "encoder self-attention", "decoder self-attention", "cross-attention"]  # fmt: skip
    o.page.click('.ax-sec[data-sec="2"]')
    assert len(o.page.query_selector_all('.ax-tok[data-side="q"]')) == 5
    assert len(o.page.query_selector_all('.ax-tok[data-side="k"]')) == 4
    assert "source token (attended to)" in o.page.text_content(".ax-headview")
    o.clean()


def test_two_thousand_tokens_render_windowed_and_top_k_and_stay_readable(open_page):
    L = 2000
    w = stack(2, 2, L, L, seed=1, dtype=torch.float32)  # 16M weights: top-k on the page
    page = explore(w)
    assert page.sections[0].mode == "topk"
    o = open_page(page)
    assert "Top-k: each query keeps its" in o.page.inner_text(".ax-info")
    assert "windowed" in o.page.inner_text(".ax-controls")
    assert len(o.page.query_selector_all(".ax-tok")) == 2 * 120
    o.page.click('.ax-tok[data-side="q"][data-i="10"]')
    assert 0 < len(o.page.query_selector_all(".ax-line")) <= 2 * page.sections[0].top_k
    o.page.eval_on_selector(".ax-window", "e => { e.value = 1500; e.dispatchEvent(new Event('input')); }")
    shown = [int(i) for _, i in o.attrs('.ax-tok[data-side="q"]', "data-side", "data-i")]
    assert shown == list(range(1500, 1620)) and "queries 1500\u20131619" in o.page.inner_text(".ax-controls")
    o.page.click('.ax-tab[data-view="model"]')
    o.page.click('.ax-thumb[data-layer="1"][data-head="1"]')
    box = o.page.query_selector(".ax-raster").bounding_box()
    o.page.mouse.move(box["x"] + box["width"] * 0.5005, box["y"] + box["height"] * 0.2505)  # cell (501, 1001)
    text = o.page.inner_text(".ax-readout")
    i, j = (int(x) for x in re.findall(r"query (\d+) .* key (\d+)", text)[0])
    kept = torch.topk(w[1, 1, i], page.sections[0].top_k).indices.tolist()
    assert abs(o.readout_value() - (float(w[1, 1, i, j]) if j in kept else 0.0)) <= ROUND_3
    o.clean()


def test_two_explorers_in_one_notebook_page_do_not_collide(open_html, tmp_path):
    a, b = explore(stack(1, 2, 3, 3), tokens=TOKENS[:3]), explore(stack(1, 3, 4, 4), tokens=TOKENS[:4])
    path = tmp_path / "notebook.html"
    path.write_text("<!DOCTYPE html><html><head><link rel='icon' href='data:,'></head><body>" + a._repr_html_() +
                    b._repr_html_() + "</body></html>", encoding="utf-8")  # fmt: skip
    o = open_html(path)
    frames = [o.page.frame_locator(f"#{x.uid}-frame") for x in (a, b)]
    assert [f.locator(".ax-head").count() for f in frames] == [2, 3]
    frames[1].locator('.ax-tok[data-side="q"][data-i="2"]').click()
    assert frames[1].locator(".ax-line").count() > 0 and frames[0].locator(".ax-tok.locked").count() == 0
    o.clean()


def test_without_chromium_the_tests_skip_locally_and_fail_under_ci(monkeypatch, unavailable):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true but no chromium"):
        unavailable("no chromium on this machine")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="no chromium on this machine"):
        unavailable("no chromium on this machine")


def test_tokens_are_text_never_markup(open_page):
    nasty = ["</script><img src=x onerror=alert(1)>", "<b>bold</b>", "a & b", '"quoted"', "\n", "   "]
    o = open_page(explore(stack(1, 1, 6, 6), tokens=nasty))
    labels = o.page.eval_on_selector_all('.ax-tok[data-side="q"] text', "els => els.map(e => e.textContent)")
    assert labels[1:4] == ["<b>bold</b>", "a & b", '"quoted"'] and labels[0].startswith("</script><img")
    assert labels[4] == "\u21b5" and labels[5] == "\u2423\u2423\u2423"  # a newline and spaces made visible
    assert o.page.query_selector("img") is None and o.page.query_selector("b") is None
    o.clean()  # no request: the <img src=x> was never parsed as markup
