"""The README's "Integrations" examples run as written and print what the README shows (like the tour)."""

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def examples() -> dict[str, str]:
    """``### title`` -> the python code of that subsection of ``## Integrations``."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Integrations\n", 1)[1].split("\n## ", 1)[0]
    found = {}
    for part in section.split("\n### ")[1:]:
        title, _, body = part.partition("\n")
        blocks = re.findall(r"```python\n(.*?)```", body, re.S)
        if blocks:
            found[title.strip()] = "\n".join(blocks)
    return found


def test_every_integration_has_an_example():
    # "Hugging Face transformers" runs in tests/integrations/test_hf_readme.py (it needs the packaged MiniLM)
    assert set(examples()) == {"Hugging Face transformers", "torch.compile", "torch.export and ONNX",
                               "save_pretrained / from_pretrained"}


@pytest.mark.parametrize(
    "title",
    [pytest.param("torch.compile", marks=pytest.mark.slow),  # inductor compiles C++ kernels: ~20 s
     pytest.param("torch.export and ONNX", marks=pytest.mark.slow),  # export + ONNX conversion: ~15 s
     "save_pretrained / from_pretrained"],
)  # fmt: skip
def test_readme_integration_example_runs_and_prints_what_it_shows(title, tmp_path, monkeypatch):
    if "ONNX" in title:
        pytest.importorskip("onnxruntime")
    code = examples()[title]
    shown = [line[2:] for line in code.splitlines() if line.startswith("# ")]  # the commented output
    monkeypatch.chdir(tmp_path)  # out/export/... lands in a temp folder
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README.md ({title})", "exec"), {})
    assert out.getvalue().splitlines() == shown
