"""The explorer through a real Jupyter kernel: a notebook run by nbclient + ipykernel, its outputs in Chromium.

A notebook built with nbformat displays two explorers of two tiny attnkit models (a decoder
LM and an encoder-decoder), one through ``display(...)`` and one as the cell's value. The
``python3`` kernel runs this interpreter with this source tree, offline. The executed
cells' ``text/html`` outputs are what JupyterLab and VS Code put into the page (VS Code
inside its output webview): here they are inserted into one page with ``innerHTML``, as
JupyterLab's HTML renderer does (scripts in an output do not run that way; the explorer's
own run inside its ``<iframe srcdoc>``), and that page is opened with the harness of
``tests/viz/conftest.py``: both explorers draw their views, a click in one leaves the other
alone, nothing is logged as an error, nothing is requested.

Without nbclient, nbformat or ipykernel (the dev extra) these tests skip, saying why,
except under ``CI=true``, where they must run.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = """\
import sys
import attnkit, torch
from attnkit.apps.inspect import explore_model
from attnkit.nn import Transformer, TransformerConfig, TransformerLM
print(sys.executable, attnkit.__file__, sep="\\n")
_ = torch.manual_seed(0)"""
LM_CELL = """\
lm = TransformerLM(TransformerConfig(vocab_size=30, d_model=32, num_heads=4, num_kv_heads=2, d_ff=64,
                                     num_encoder_layers=0, num_decoder_layers=2, positional="rotary")).eval()
display(explore_model(lm, torch.randint(0, 30, (1, 9)), prompt_length=5))"""
SEQ2SEQ_CELL = """\
model = Transformer(TransformerConfig(vocab_size=25, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=1,
                                      num_decoder_layers=1)).eval()
explore_model(model, torch.randint(3, 25, (1, 6)), torch.randint(3, 25, (1, 4)), tokens=list("abcdef"),
              target_tokens=list("wxyz"))"""
#: a page standing for the notebook: each text/html output set as innerHTML of an output area
PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head><body>
<script type="application/json" id="outputs">{outputs}</script>
<script>
JSON.parse(document.getElementById("outputs").textContent).forEach(function (html) {{
  var area = document.createElement("div");
  area.className = "jp-OutputArea-output";
  area.setAttribute("data-mime-type", "text/html");
  area.innerHTML = html;
  document.body.appendChild(area);
}});
</script></body></html>"""


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook (setup, LM explorer, encoder-decoder explorer) run once in a ``python3`` kernel."""
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbformat.v4 import new_code_cell, new_notebook
    except ImportError as e:
        _missing(e)
    try:
        import ipykernel  # noqa: F401  (the kernel the python3 spec launches)
    except ImportError as e:
        _missing(e)
    tmp = tmp_path_factory.mktemp("notebook")
    nb = new_notebook(cells=[new_code_cell(SETUP), new_code_cell(LM_CELL), new_code_cell(SEQ2SEQ_CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
               IPYTHONDIR=str(tmp / "ipython"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               OMP_NUM_THREADS="1")  # fmt: skip
    client = NotebookClient(nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(tmp)}})
    client.execute(env=env)
    nbformat.write(nb, tmp / "explorers.ipynb")  # a valid notebook, outputs included
    return nb


def _missing(error: ImportError) -> None:
    """Skip, saying which package is missing; under ``CI=true`` fail instead."""
    reason = f"{error.name or error} is not installed (pip install -e '.[dev]': nbclient, nbformat, ipykernel)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def _html_outputs(nb) -> list[str]:
    """The text/html output of each explorer cell (exactly one output per cell)."""
    htmls = []
    for cell in nb.cells[1:]:
        (output,) = cell.outputs
        htmls.append(output["data"]["text/html"])
    return htmls


def test_the_kernel_is_this_interpreter_with_this_source_tree(executed):
    (stream,) = executed.cells[0].outputs
    executable, module = stream["text"].splitlines()
    assert executable == sys.executable
    assert Path(module).resolve().is_relative_to(ROOT / "src")


def test_each_cell_outputs_one_self_contained_html_bundle_without_javascript_or_require(executed):
    kinds = [cell.outputs[0]["output_type"] for cell in executed.cells[1:]]
    assert kinds == ["display_data", "execute_result"]  # display(...) and the cell's value
    for cell in executed.cells[1:]:
        (output,) = cell.outputs
        assert set(output["data"]) == {"text/html", "text/plain"}  # no application/javascript, no widget state
        html = output["data"]["text/html"]
        assert html.startswith("<iframe") and html.endswith("</iframe>") and "srcdoc=" in html
        for needle in ("require(", "requirejs", "define(", "<script src", "src=&quot;http", "href=&quot;http"):
            assert needle not in html, needle  # no require.js, no loader, no CDN (srcdoc is HTML-escaped)
    a, b = (re.findall(r'id="(ax[0-9a-f]+)-frame"', h) for h in _html_outputs(executed))
    assert len(a) == len(b) == 1 and a != b  # one iframe each, distinct ids


def test_both_notebook_outputs_render_and_stay_independent_in_chromium(executed, open_html, tmp_path):
    htmls = _html_outputs(executed)
    outputs = json.dumps(htmls).replace("<", "\\u003c")  # no "</script>" can close the JSON block
    path = tmp_path / "notebook.html"
    path.write_text(PAGE.format(outputs=outputs), encoding="utf-8")
    o = open_html(path)
    ids = [re.search(r'id="(ax[0-9a-f]+)-frame"', h).group(1) for h in htmls]
    lm, seq2seq = (o.page.frame_locator(f"#{uid}-frame") for uid in ids)
    assert o.page.locator(".jp-OutputArea-output iframe").count() == 2
    # the head view of each: its heads, both token columns, the lines' svg
    assert lm.locator(".ax-head").count() == 4 and seq2seq.locator(".ax-head").count() == 2
    assert lm.locator(".ax-tok").count() == 2 * 9 and seq2seq.locator(".ax-tok").count() == 2 * 6
    assert lm.locator("svg.ax-headview").count() == 1 and seq2seq.locator("svg.ax-headview").count() == 1
    assert seq2seq.locator(".ax-sec").all_inner_texts() == [
        "encoder self-attention", "decoder self-attention", "cross-attention"]  # fmt: skip
    # the model view of the LM: 2 layers x 4 heads; the other explorer stays on its head view
    lm.locator('.ax-tab[data-view="model"]').click()
    assert lm.locator(".ax-thumb").count() == 2 * 4
    assert seq2seq.locator(".ax-tab.on").get_attribute("data-view") == "head"
    assert seq2seq.locator(".ax-thumb").count() == 0
    # a token locked in the encoder-decoder explorer draws its lines there only
    seq2seq.locator('.ax-tok[data-side="q"][data-i="2"]').click()
    assert seq2seq.locator(".ax-line").count() > 0 and "locked" in seq2seq.locator(".ax-readout").inner_text()
    assert lm.locator(".ax-tok.locked").count() == 0 and lm.locator(".ax-tab.on").get_attribute("data-view") == "model"
    lm.locator('.ax-thumb[data-layer="1"][data-head="3"]').click()
    assert "layer 1, head 3" in lm.locator(".ax-zoom").text_content()
    assert seq2seq.locator(".ax-zoom").count() == 0
    o.clean()


def test_without_the_notebook_packages_the_tests_skip_locally_and_fail_under_ci(monkeypatch):
    error = ModuleNotFoundError("No module named 'nbclient'", name="nbclient")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true but nbclient is not installed"):
        _missing(error)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match=r"nbclient is not installed \(pip install -e '\.\[dev\]'"):
        _missing(error)
