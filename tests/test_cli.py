"""The `attnkit` command (attnkit.cli, attnkit.info, attnkit.demo).

Demo numbers are checked against a softmax written here in numpy, independent of the library.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from attnkit import cli
from attnkit.demo import DEFAULT_SENTENCE, embed_words, run_demo, tokenize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def numpy_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool):
    """softmax(QK^T / sqrt(d)) and its product with V, in float64 numpy."""
    q, k, v = (np.asarray(t, dtype=np.float64) for t in (q, k, v))
    s = q @ k.T / np.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.tril(np.ones_like(s, dtype=bool)), s, -np.inf)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    return s, p, p @ v


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------- info
def test_info_json_lists_reference_and_sdpa_backends(capsys):
    code, out, _ = run_cli(capsys, "info", "--json")
    info = json.loads(out)
    assert code == 0
    names = [b["name"] for b in info["backends"]]
    assert {"reference", "sdpa"} <= set(names)
    assert all(b["summary"] for b in info["backends"])
    assert set(info["auto_order"]) <= set(names)
    assert info["torch"] == torch.__version__
    assert info["threads"] == torch.get_num_threads()
    assert {"cpu", "cuda", "mps"} <= set(info["devices"])


def test_info_table_names_versions_and_backends(capsys):
    code, out, _ = run_cli(capsys, "info")
    assert code == 0
    for word in ("attnkit", "torch", "threads", "reference", "sdpa", 'backend="auto"'):
        assert word in out


def test_python_m_attnkit_runs_info_json():
    cmd = [sys.executable, "-m", "attnkit", "info", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "reference" in [b["name"] for b in json.loads(done.stdout)["backends"]]


# ---------------------------------------------------------------------- demo (library)
def test_tokenize_keeps_contractions_and_splits_punctuation():
    assert tokenize("It didn't, really.") == ["It", "didn't", ",", "really", "."]


def test_embed_words_depends_on_lowercased_word_and_seed_only():
    e = embed_words(["The", "cat", "the"], 8)
    assert torch.equal(e[0], e[2])
    assert not torch.equal(e[0], e[1])
    assert torch.equal(embed_words(["cat"], 8)[0], e[1])  # not on position or neighbours
    assert not torch.equal(embed_words(["cat"], 8, seed=1)[0], e[1])


@pytest.mark.parametrize("causal", [False, True])
def test_run_demo_steps_match_numpy_softmax_oracle(causal):
    r = run_demo(d_model=16, out_dir=None, causal=causal)
    s, p, o = numpy_attention(r.q.numpy(), r.k.numpy(), r.v.numpy(), causal)
    np.testing.assert_allclose(r.scores.numpy(), s, rtol=1e-5, atol=1e-5)  # -inf compares equal to -inf
    np.testing.assert_allclose(r.weights.numpy(), p, rtol=0, atol=1e-6)
    np.testing.assert_allclose(r.output.numpy(), o, rtol=0, atol=1e-5)
    np.testing.assert_allclose(r.weights.sum(dim=-1).numpy(), 1.0, atol=1e-6)
    assert r.max_abs_diff < 1e-5  # the fast path agrees
    if causal:
        assert (np.triu(r.weights.numpy(), k=1) == 0).all()


def test_run_demo_projects_embeddings_plus_positions():
    r = run_demo("the cat saw the dog", d_model=8, out_dir=None)
    assert r.tokens == ["the", "cat", "saw", "the", "dog"]
    assert r.x.shape == r.q.shape == r.k.shape == r.v.shape == (5, 8)
    assert not torch.equal(r.x[0], r.x[3])  # same word, different position
    pe = r.x - embed_words(r.tokens, 8)
    assert torch.allclose(pe[0], torch.tensor([0.0, 1.0] * 4), atol=1e-6)  # sin 0, cos 0 at position 0


def test_run_demo_is_deterministic_and_the_seed_changes_it():
    a, b = run_demo(out_dir=None), run_demo(out_dir=None)
    assert torch.equal(a.weights, b.weights)
    assert not torch.equal(a.weights, run_demo(out_dir=None, seed=1).weights)


def test_run_demo_writes_heatmap_readable_by_matplotlib(tmp_path):
    import matplotlib.image

    r = run_demo(out_dir=tmp_path)
    assert r.png == tmp_path / "weights.png"
    assert r.png.read_bytes()[:8] == PNG_MAGIC
    height, width = matplotlib.image.imread(r.png).shape[:2]
    L = len(r.tokens)
    assert (width, height) == (round((0.45 * L + 2.5) * 100), round((0.45 * L + 2.0) * 100))  # viz auto size at 100 dpi


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"sentence": " ,"}, None, None),  # punctuation is a token: valid
        ({"sentence": "   "}, ValueError, "has no words"),
        ({"sentence": "word " * 40}, ValueError, "at most 32"),
        ({"sentence": 3}, TypeError, "sentence must be a str"),
        ({"d_model": 0}, ValueError, "d_model must be a positive int"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0"),
    ],
)
def test_run_demo_validates_inputs(kwargs, error, match):
    if error is None:
        assert run_demo(out_dir=None, **kwargs).tokens == [","]
        return
    with pytest.raises(error, match=match):
        run_demo(out_dir=None, **kwargs)


# ---------------------------------------------------------------------- demo (command)
def test_demo_json_has_tokens_weights_and_png(capsys, tmp_path):
    argv = ["demo", "The cat sat", "--d-model", "8", "--out", str(tmp_path), "--json", "--causal"]
    code, out, _ = run_cli(capsys, *argv)
    result = json.loads(out)
    assert code == 0
    assert result["tokens"] == ["The", "cat", "sat"]
    assert result["scores"][0][1] is None  # -inf (masked) is null in JSON
    np.testing.assert_allclose(np.sum(result["weights"], axis=1), 1.0, atol=1e-6)
    assert open(result["png"], "rb").read(8) == PNG_MAGIC
    assert result["png"].endswith("weights-causal.png")


def test_demo_prints_three_steps_and_png_path_under_cwd_by_default(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "demo")
    assert code == 0 and err == ""
    for text in ("Step 1", "Step 2", "Step 3", "row sum", "1.0000", *DEFAULT_SENTENCE.split()):
        assert text in out
    assert "…" not in out  # no number squeezed into an ellipsis
    assert "heatmap: out/demo/weights.png" in out
    assert (tmp_path / "out" / "demo" / "weights.png").is_file()


# ---------------------------------------------------------------------- errors and wiring
@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", ""], "run_demo(): the sentence '' has no words"),
        (["demo", "--d-model", "0"], "d_model must be a positive int, got 0"),
        (["demo", "--seed", "-1"], "seed must be an int >= 0"),
    ],
)
def test_library_errors_exit_2_with_one_line(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("attnkit demo: error: ") and message in err
    assert "Traceback" not in err


def test_os_errors_exit_2_with_one_line(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, _, err = run_cli(capsys, "demo", "--out", str(blocker / "sub"))
    assert code == 2 and err.count("\n") == 1 and "Not a directory" in err


@pytest.mark.parametrize("argv", [["--debug", "demo", ""], ["demo", "", "--debug"]])
def test_debug_flag_lets_the_traceback_through(argv):
    with pytest.raises(ValueError, match="has no words"):
        cli.main(argv)


@pytest.mark.parametrize("argv", [[], ["nope"], ["demo", "--no-such-flag"], ["demo", "--d-model", "x"]])
def test_usage_errors_exit_2(capsys, argv):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and err


def test_help_and_version_exit_0_and_list_every_command(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and all(name in out for name in cli.COMMANDS)
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.startswith("attnkit ")


def test_missing_command_module_says_unavailable(capsys, monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "ghost", ("attnkit._no_such_module", "a later issue"))
    code, _, err = run_cli(capsys, "ghost", "--anything")
    assert code == 2
    assert err == "attnkit ghost: unavailable: this installation of attnkit has no attnkit._no_such_module module yet\n"


def test_module_without_run_is_reported(capsys, monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "masks", ("attnkit.masks", "not a command"))
    code, _, err = run_cli(capsys, "masks")
    assert code == 2 and "attnkit.masks does not define add_arguments() and run()" in err


def test_bench_is_wired_or_reported_unavailable(capsys):
    try:
        cli.load_command("bench")
    except cli.CommandUnavailable:
        code, _, err = run_cli(capsys, "bench")
        assert code == 2 and "unavailable" in err
    else:
        code, out, _ = run_cli(capsys, "bench", "--help")
        assert code == 0 and "usage: attnkit bench" in out
