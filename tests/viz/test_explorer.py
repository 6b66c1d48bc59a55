"""attnkit.viz.explorer without a browser: the page's data (16-bit weights, top-k rows), self-containment, errors.

Oracles: the float tensors themselves and numpy's own sort (top-k), never the encoder's output.
"""

from __future__ import annotations

import base64
import json
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from attnkit.viz import AttentionSection, Explorer, SectionWriter, explore
from attnkit.viz.explorer import QUANT

ROOT = Path(__file__).resolve().parents[2]


def page_data(page: Explorer) -> dict:
    """The JSON document the page's script reads, parsed back out of the HTML."""
    html = page.html()
    match = re.search(r'<script type="application/json" id="[^"]+">(.*?)</script>', html, re.S)
    assert match is not None
    return json.loads(match.group(1).replace("<\\/", "</"))


def u16(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype="<u2").astype(np.float64)


def softmax_stack(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def causal_stack(*shape: int, seed: int = 0) -> torch.Tensor:
    """Softmax over the keys a causal mask allows: row i over keys 0..i (square)."""
    g = torch.Generator().manual_seed(seed)
    L = shape[-1]
    s = (2 * torch.randn(*shape, generator=g, dtype=torch.float64)).masked_fill(
        ~torch.ones(L, L, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(s, dim=-1)


def test_dense_section_carries_every_weight_to_16_bits():
    w = softmax_stack(2, 3, 5, 5)  # (N, H, L, L)
    doc = page_data(explore(w, tokens=list("abcde")))
    (section,) = doc["sections"]
    assert section["mode"] == "dense" and section["index"] is None and section["k"] == 5
    decoded = u16(section["values"]).reshape(2, 3, 5, 5) / QUANT
    assert np.abs(decoded - w.numpy()).max() <= 0.5 / QUANT + 1e-12  # round-to-nearest in 16 bits
    assert section["q_tokens"] == list("abcde") and section["k_tokens"] == list("abcde")


def test_topk_section_keeps_the_largest_weights_of_each_row_and_says_how_much_they_hold():
    w = softmax_stack(1, 2, 6, 40)  # (N, H, Lq, Lk)
    writer = SectionWriter("self", query_tokens=[str(i) for i in range(6)], key_tokens=[str(j) for j in range(40)],
                           num_layers=1, num_heads=2, dense_bytes=0, section_bytes=2 * 6 * 4 * 5)  # fmt: skip
    writer.add(0, w[0])
    section = writer.finish()
    assert (section.mode, section.top_k) == ("topk", 5)
    doc = section.to_json()
    index = u16(doc["index"]).reshape(2, 6, 5).astype(int)
    values = u16(doc["values"]).reshape(2, 6, 5) / QUANT
    expected = np.argsort(-w[0].numpy(), axis=-1, kind="stable")[..., :5]  # numpy's sort as the oracle
    assert (np.sort(index, -1) == np.sort(expected, -1)).all()
    picked = np.take_along_axis(w[0].numpy(), index, axis=-1)
    assert np.abs(values - picked).max() <= 0.5 / QUANT + 1e-12
    assert section.coverage == pytest.approx(np.sort(w[0].numpy(), -1)[..., -5:].sum(-1).mean(), abs=1e-6)


def test_statistics_of_the_page_are_those_of_the_weights():
    identity, uniform = torch.eye(4), torch.full((4, 4), 0.25)  # distance 0 / entropy 0; uniform: log 4
    section = explore(torch.stack([identity, uniform])[None]).sections[0]  # (1, 2, 4, 4)
    assert section.mean_distance[0][0] == 0 and section.entropy[0][0] == pytest.approx(0)
    assert section.entropy[0][1] == pytest.approx(np.log(4)) and section.mean_distance[0][1] == pytest.approx(1.25)


def test_page_is_self_contained_no_script_or_style_is_fetched():
    html = explore(softmax_stack(1, 2, 3, 3)).html()
    assert "<script src" not in html and "stylesheet" not in html and "@import" not in html
    urls = set(re.findall(r"https?://[^\s\"')]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls  # the SVG namespace names, it loads nothing
    assert 'rel="icon" href="data:,"' in html  # no favicon request either


def test_notebook_repr_is_an_isolated_iframe_with_unique_ids():
    a, b = explore(softmax_stack(1, 1, 2, 2)), explore(softmax_stack(1, 1, 2, 2))
    ra, rb = a._repr_html_(), b._repr_html_()
    assert ra.startswith("<iframe") and 'sandbox="allow-scripts allow-downloads"' in ra and "srcdoc=" in ra
    assert a.uid != b.uid and a.uid in ra and b.uid in rb and "require" not in ra


def test_mapping_gives_encoder_decoder_and_cross_sections_with_their_tokens():
    src, tgt = list("abc"), list("wxyz")
    page = explore({"encoder": softmax_stack(1, 2, 3, 3), "decoder": causal_stack(1, 2, 4, 4),
                    "cross": softmax_stack(1, 2, 4, 3)},
                   tokens={"encoder": src, "decoder": tgt, "cross": tgt}, key_tokens={"cross": src})  # fmt: skip
    names = [(s.name, s.causal, s.query_tokens, s.key_tokens) for s in page.sections]
    assert names == [("encoder", False, tuple(src), tuple(src)), ("decoder", True, tuple(tgt), tuple(tgt)),
                     ("cross", False, tuple(tgt), tuple(src))]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: explore(torch.ones(2, 2)), "must be (N, H, Lq, Lk), (H, Lq, Lk)"),
        (lambda: explore(softmax_stack(1, 1, 3, 3), tokens=["a"]), "tokens has 1 labels but the weights have 3"),
        (lambda: explore({"cross": softmax_stack(1, 1, 2, 3)}), "give key_tokens"),
        (lambda: explore(torch.ones(1, 1, 2, 2)), "must sum to 1"),
        (lambda: explore(softmax_stack(1, 1, 2, 2)).save("page.png"), "must end in .html"),
        (lambda: SectionWriter("self", query_tokens="ab", num_layers=1, num_heads=1), "single string"),
    ],
)
def test_explore_errors_name_the_argument(call, message):
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        call()


def test_save_writes_the_page_and_the_static_files_ship_as_package_data(tmp_path):
    path = explore(softmax_stack(1, 1, 2, 2), title="t").save(tmp_path / "sub" / "page.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    static = resources.files("attnkit.viz").joinpath("static")
    assert {"explorer.js", "explorer.css"} <= {p.name for p in static.iterdir()}
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"viz/static/*.js"' in pyproject and '"viz/static/*.css"' in pyproject  # in the wheel too


def test_sections_from_an_object_with_attention_sections():
    section = explore(softmax_stack(1, 1, 2, 2)).sections[0]

    class Source:
        def attention_sections(self) -> list[AttentionSection]:
            return [section]

    assert explore(Source()).sections == (section,)
