"""The `attnkit` command (attnkit.cli, attnkit.console, attnkit.info, attnkit.demo).

Demo numbers are checked against a softmax written here in numpy, independent of the library.
"""

from __future__ import annotations

import json
import re
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
        (["demo", ""], "argument SENTENCE: expected 1 to 32 words, got '' with no words"),
        (["demo", "--d-model", "0"], "argument --d-model: expected an integer >= 1, got '0'"),
        (["demo", "--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
        (["summarize", "f.txt", "--sentences", "0"], "argument --sentences: expected an integer >= 1, got '0'"),
        (["summarize", "f.txt", "--ratio", "1.5"], "argument --ratio: expected a number in (0, 1], got '1.5'"),
        (["qa", "q?", "--top-k", "-2"], "argument --top-k: expected an integer >= 1, got '-2'"),
        (["translate", "train", "--steps", "0"], "argument --steps: expected an integer >= 1, got '0'"),
    ],
)
def test_bad_values_are_refused_naming_the_flag(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.splitlines()[-1] == f"attnkit {' '.join(argv[:2] if argv[0] == 'translate' else argv[:1])}: error: " \
        f"{message}"
    assert "()" not in err.splitlines()[-1]  # no internal function name


def test_os_errors_exit_2_with_one_line(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, _, err = run_cli(capsys, "demo", "--out", str(blocker / "sub"))
    assert code == 2 and err.count("\n") == 1 and "Not a directory" in err


@pytest.mark.parametrize("argv", [["--debug", "demo", "--out"], ["demo", "--debug", "--out"]])
def test_debug_flag_lets_the_traceback_through(argv, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError):
        cli.main([*argv, str(blocker / "sub")])


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


# ---------------------------------------------------------------------- startup: no torch before a command runs
def _every_help_argv() -> list[list[str]]:
    argvs = [["--version"], ["--help"]]
    for name in cli.COMMANDS:
        argvs.append([name, "--help"])
        actions = getattr(cli.load_command(name), "ACTIONS", {})
        argvs += [[name, action, "--help"] for action in actions]
    return argvs


def test_version_and_every_help_run_without_importing_torch():
    """In a fresh interpreter: after each --version / --help, torch (and numpy) are still not imported."""
    script = (
        "import contextlib, io, json, sys\n"
        "from attnkit import cli\n"
        "seen = []\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "        code = cli.main(argv)\n"
        "    seen.append([argv, code, len(out.getvalue()), sorted({'torch', 'numpy'} & set(sys.modules))])\n"
        "print(json.dumps(seen))\n"
    )
    argvs = _every_help_argv()
    cmd = [sys.executable, "-c", script, json.dumps(argvs)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert [argv for argv, *_ in seen] == argvs
    for argv, code, printed, heavy in seen:
        assert code == 0 and printed > 0, argv
        assert heavy == [], f"attnkit {' '.join(argv)} imported {heavy}"


def test_console_script_version_imports_no_torch():
    """The real entry point, `python -m attnkit --version`, with Python's own import log as the witness."""
    cmd = [sys.executable, "-X", "importtime", "-m", "attnkit", "--version"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("attnkit ")
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "attnkit.cli" in imported and "torch" not in imported and "numpy" not in imported


def test_import_attnkit_is_lazy_and_exports_the_transformer():
    script = (
        "import sys, attnkit\n"
        "assert 'torch' not in sys.modules, 'import attnkit imported torch'\n"
        "assert {'Transformer', 'TransformerLM', 'TransformerConfig', 'attention', 'masks'} <= set(dir(attnkit))\n"
        "from attnkit import Transformer, TransformerLM, TransformerConfig, MultiHeadAttention, attention, masks\n"
        "import attnkit.nn as nn\n"
        "assert Transformer is nn.Transformer and TransformerConfig is nn.TransformerConfig\n"
        "assert attnkit.nn is nn  # submodules stay reachable as attributes\n"
        "assert set(attnkit.__all__) <= set(dir(attnkit))\n"
        "try:\n"
        "    attnkit.no_such_name\n"
        "except AttributeError as e:\n"
        "    assert 'no_such_name' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_app_packages_keep_exports_over_same_named_submodules():
    from attnkit.apps import qa, translate
    from attnkit.apps.qa.evaluate import evaluate as qa_evaluate
    from attnkit.apps.translate.demo import demo as translate_demo

    assert qa.evaluate is qa_evaluate and callable(qa.evaluate)
    assert translate.demo is translate_demo and callable(translate.demo)


def test_help_constants_match_the_library():
    """Command modules repeat a few library constants so --help needs no torch; they must not drift."""
    from attnkit.apps.inspect import command as inspect_command
    from attnkit.apps.inspect import core as inspect_core
    from attnkit.apps.summarize import command as summarize_command
    from attnkit.apps.summarize.core import DEFAULTS
    from attnkit.apps.summarize.corpora import CORPORA
    from attnkit.bench import cases
    from attnkit.bench import command as bench_command

    assert inspect_command.MODELS == inspect_core.MODELS and inspect_command.MAX_TOKENS == inspect_core.MAX_TOKENS
    assert set(summarize_command.CORPUS_NAMES) == set(CORPORA) and summarize_command.DIVERSITY == DEFAULTS["diversity"]
    assert set(bench_command.MASK_NAMES) == set(cases.MASKS) and bench_command.PASS_NAMES == cases.PASSES


# ---------------------------------------------------------------------- a CLI that forgives
def _help(capsys, *argv) -> str:
    code, out, _ = run_cli(capsys, *argv, "--help")
    assert code == 0
    return out


def test_each_action_has_its_own_help(capsys):
    train = _help(capsys, "translate", "train")
    assert train.startswith("usage: attnkit translate train") and "--steps" in train and "--resume" in train
    assert "--model" not in train and "--beam" not in train and "--plot-attention" not in train
    text = _help(capsys, "translate")
    assert "--model" in text and "--beam" in text and "--steps" not in text
    assert all(f"translate {action}" in text for action in ("train", "eval", "demo", "data"))
    qa_eval = _help(capsys, "qa", "eval")
    assert "--distractors" in qa_eval and "--context" not in qa_eval and "--max-new-tokens" not in qa_eval
    assert "--context" in _help(capsys, "qa") and "--distractors" not in _help(capsys, "qa")
    summarize_eval = _help(capsys, "summarize", "eval")
    assert "--corpus" in summarize_eval and "--sentences" not in summarize_eval


def test_defaults_in_help_share_one_style(capsys):
    for argv in _every_help_argv()[2:]:
        text = " ".join(_help(capsys, *argv[:-1]).split())  # unwrap argparse's line breaks
        assert re.findall(r"\(default [^:]", text) == [], argv  # "(default: X)", never "(default X)"
        assert "(default)" not in text, argv
    assert "--limit N examples per corpus (default: 50)" in " ".join(_help(capsys, "summarize", "eval").split())


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["transalte"], "unknown command 'transalte'; did you mean 'translate'?"),
        (["translate", "trian"], "unknown action 'trian'; did you mean 'train'?"),
        (["summarize", "evl"], "unknown action 'evl'; did you mean 'eval'?"),
        (["summarize", "f.txt", "--sentnces", "2"], "unknown option --sentnces; did you mean '--sentences'?"),
        (["translate", "demo", "--resume"], "--resume is an option of `attnkit translate train`, not of "
                                            "`attnkit translate demo`; see"),
        (["translate", "--model", "m", "--stepz=5"], "did you mean '--steps' of `attnkit translate"),
        (["qa", "eval", "--context", "f"], "--context is an option of `attnkit qa`, not of `attnkit qa eval`"),
        (["inspect", "x", "--model", "minilim"], "invalid choice: 'minilim' (choose from 'minilm', 'smollm2'); "
                                                 "did you mean 'minilm'?"),
        (["qa", "q?", "--context", "a", "b"], "unexpected argument 'b' (one question per call"),
    ],
)
def test_typos_get_did_you_mean_and_exit_2(capsys, argv, expected):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert expected in err.splitlines()[-1]


def test_a_typo_of_an_action_is_never_translated(capsys, monkeypatch):
    from attnkit.apps.translate import command as translate_command

    monkeypatch.setattr(translate_command, "_translate", lambda args, texts: pytest.fail(f"translated {texts}"))
    code, _, err = run_cli(capsys, "translate", "trian", "--model", "m")
    assert code == 2 and "did you mean 'train'" in err


def test_a_word_after_double_dash_is_text_not_an_action(capsys, monkeypatch):
    from attnkit.apps.translate import command as translate_command

    seen = []
    monkeypatch.setattr(translate_command, "_translate", lambda args, texts: seen.append(texts) or 0)
    assert run_cli(capsys, "translate", "--model", "m", "--", "train")[0] == 0
    assert run_cli(capsys, "translate", "--", "trian", "--model", "m")[0] == 0
    assert seen == [["train"], ["trian"]]


def _fake_answer(questions, contexts, **kwargs):
    """Stands in for attnkit.apps.qa.core.answer_many (no model): echoes what it was given."""
    from types import SimpleNamespace

    for question in questions:
        _fake_answer.calls.append((question, contexts, kwargs))
        yield SimpleNamespace(question=question, text="yes", reply="yes", evidence=(), mode="closed-book",
                              model="fake", prompt_tokens=1, to_dict=lambda: {"answer": "yes"})  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ["qa", "--context", "{a}", "Who?"],  # options first: --context takes one file, so the question is free
        ["qa", "Who?", "--context", "{a}"],
        ["qa", "--context", "{a}", "Who?", "--context", "{b}", "--top-k", "2"],
        ["qa", "--top-k", "2", "Who?", "--context={a}", "--context", "{b}"],
    ],
)
def test_qa_options_before_or_after_the_question(capsys, monkeypatch, tmp_path, argv):
    from attnkit.apps.qa import core

    (tmp_path / "a.txt").write_text("Alpha is first.", encoding="utf-8")
    (tmp_path / "b.txt").write_text("Beta is second.", encoding="utf-8")
    _fake_answer.calls = []
    monkeypatch.setattr(core, "answer_many", _fake_answer)
    argv = [t.format(a=tmp_path / "a.txt", b=tmp_path / "b.txt") for t in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    [(question, contexts, kwargs)] = _fake_answer.calls
    assert question == "Who?"
    expected = [str(tmp_path / n) for n in ("a.txt", "b.txt") if any(t.endswith(n) for t in argv)]
    assert list(contexts) == expected and kwargs["top_k"] == (2 if "2" in argv else 3)


@pytest.mark.parametrize("argv", [["--sentences", "1", "{f}"], ["{f}", "--sentences", "1"]])
def test_summarize_options_before_or_after_the_file(capsys, monkeypatch, tmp_path, argv):
    from attnkit.apps.summarize import core

    path = tmp_path / "f.txt"
    path.write_text("One sentence here. Another one there.", encoding="utf-8")
    calls = []
    monkeypatch.setattr(core, "summarize", lambda text, **kw: calls.append((text, kw)) or _fake_summary("s"))
    code, _, err = run_cli(capsys, "summarize", *[t.format(f=path) for t in argv])
    assert code == 0, err
    assert calls == [("One sentence here. Another one there.", {"sentences": 1, "ratio": None,
                                                                 "method": "extractive", "diversity": 0.3})]


def test_translate_missing_model_hint_names_the_default_folders(capsys):
    code, _, err = run_cli(capsys, "translate", "hello")
    assert code == 2
    assert "--model out/translate" in err and "`translate demo` out/translate-demo" in err


def test_one_default_output_folder_convention():
    """Every command that writes files defaults to out/<command> (the README and hints use the same)."""
    from attnkit.apps.inspect.command import DEFAULT_OUT_DIR as inspect_dir
    from attnkit.apps.translate.command import DEFAULT_RUN_DIR
    from attnkit.apps.translate.demo import DEFAULT_DEMO_DIR
    from attnkit.apps.translate.train import TranslationTrainConfig
    from attnkit.demo import DEFAULT_OUT_DIR as demo_dir

    assert str(demo_dir) == "out/demo" and str(inspect_dir) == "out/inspect"
    assert DEFAULT_RUN_DIR == TranslationTrainConfig.out_dir == "out/translate"
    assert DEFAULT_DEMO_DIR == "out/translate-demo"


# ---------------------------------------------------------------------- output is never altered
TRICKY = ["a[k] = b[k]", "[red]x[/red]", "[server] port 80", "C:\\path\\[x]", "ends in a backslash \\",
          "emoji 🙂 and :smile: code", "[bold]unclosed", "[/]"]


def _fake_summary(text, sentences=()):
    from types import SimpleNamespace

    return SimpleNamespace(text=text, sentences=tuple(sentences), indices=tuple(range(len(sentences))),
                           scores=(0.5,) * len(sentences), method="extractive", source_sentences=len(sentences),
                           model="fake [model]", to_dict=lambda: {})  # fmt: skip


def _lines(out: str) -> list[str]:
    return [line.strip(" │┃|") for line in out.splitlines()]


def test_summarize_prints_user_text_literally(capsys, monkeypatch, tmp_path):
    from attnkit.apps.summarize import core

    monkeypatch.setattr(core, "summarize", lambda text, **kw: _fake_summary(" ".join(TRICKY), TRICKY))
    path = tmp_path / "in.txt"
    path.write_text("anything", encoding="utf-8")
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli(capsys, "summarize", str(path))
    assert code == 0
    assert " ".join(TRICKY) in out  # the summary line
    cells = [line.strip() for row in _lines(out) for line in row.split("│")]
    for text in TRICKY:
        assert text in cells, text  # each table cell as given
    assert "\x1b[" not in out  # not a terminal: no ANSI codes


def test_qa_prints_answer_reply_and_evidence_literally(capsys, monkeypatch, tmp_path):
    from types import SimpleNamespace

    from attnkit.apps.qa import core

    source = "C:\\docs\\[1].txt"
    evidence = tuple(SimpleNamespace(score=0.9, passage=SimpleNamespace(text=t, source=source, index=0, line=1),
                                     location=source + ":1") for t in TRICKY)  # fmt: skip
    fake = SimpleNamespace(question="Which [server] port?", text="[red]x[/red] a[k]",
                           reply="The answer: [red]x[/red] a[k] \\", evidence=evidence, mode="retrieval-augmented",
                           model="fake", prompt_tokens=9)  # fmt: skip
    monkeypatch.setattr(core, "answer_many", lambda questions, *a, **k: (fake for _ in questions))
    path = tmp_path / "ctx.txt"
    path.write_text("Some context.", encoding="utf-8")
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli(capsys, "qa", "Which [server] port?", "--context", str(path))
    assert code == 0
    lines = _lines(out)
    assert lines[0] == "The answer: [red]x[/red] a[k] \\" and "reply:" not in out  # the model's reply, once
    cells = [c.strip() for row in lines for c in row.split("│")]
    assert "C:\\docs\\[1].txt:1" in cells
    for text in TRICKY:
        assert text in cells, text


def test_translate_tables_print_corpus_and_model_text_literally():
    from types import SimpleNamespace

    from attnkit.apps.translate import render

    console = render.console(False)
    console.width = 400
    summary = SimpleNamespace(corpus="tsv:C:\\[x].tsv", pair="en-de", seed=0, splits=(), note=TRICKY[1],
                              examples=[(TRICKY[0], TRICKY[2])])  # fmt: skip
    with console.capture() as captured:
        render.print_corpus(summary, console)
        render._print_examples(console, [(t, t, t + " [b]") for t in TRICKY])
    out = captured.get()
    assert "corpus tsv:C:\\[x].tsv (en-de, seed 0)" in out and TRICKY[1] in out
    assert f"{TRICKY[0]}  ->  {TRICKY[2]}" in out
    for text in TRICKY:
        assert f"{text} [b] ✗" in out, text  # the hypothesis, literally, then the red mark


def test_demo_prints_words_with_brackets_literally(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "demo", "a[k] [red]x[/red] C:\\[x]", "--out", str(tmp_path))
    assert code == 0
    for token in tokenize("a[k] [red]x[/red] C:\\[x]"):
        assert token in out
    assert f"heatmap: {tmp_path}" in out


def test_bench_plan_prints_skip_reasons_literally():
    from attnkit.bench import command as bench_command
    from attnkit.bench.cases import Case

    console = __import__("attnkit.console", fromlist=["stdout_console"]).stdout_console()
    console.width = 300
    with console.capture() as captured:
        bench_command._print_plan([(Case("sdpa", "none", L=64, pass_="fwd"), "refuses: [red]x[/red] a[k]")], console)
    assert "skip: refuses: [red]x[/red] a[k]" in captured.get()


def test_literal_keeps_every_tricky_string():
    from attnkit.console import literal, stdout_console

    console = stdout_console()
    for text in TRICKY:
        with console.capture() as captured:
            console.print(literal(text), end="")
        assert captured.get() == text


def test_piped_output_keeps_long_lines_whole(capsys):
    """Piped stdout is not a terminal: rich would hard-wrap at 80 columns, inserting newlines into the text."""
    from attnkit.console import literal, stdout_console

    line = "a sentence of 120 characters from a file, " * 3 + "C:\\path\\[x] :smile:"
    stdout_console().print(literal(line))
    assert capsys.readouterr().out == line + "\n"


# ---------------------------------------------------------------------- feedback
def test_status_is_silent_when_stderr_is_not_a_terminal(capsys):
    from attnkit.console import progress_bar, status

    with status("loading a model"), progress_bar("scoring") as update:
        update(1, 2)
    assert capsys.readouterr() == ("", "")


def test_status_shows_what_it_does_on_a_terminal(monkeypatch):
    import io

    from rich.console import Console

    from attnkit import console as console_module

    screen = io.StringIO()
    monkeypatch.setattr(console_module, "on_terminal", lambda stream=None: True)
    monkeypatch.setattr(console_module, "stderr_console", lambda: Console(file=screen, force_terminal=True, width=80))
    with console_module.status("loading [SmolLM2]"):
        import time

        time.sleep(0.3)  # let the spinner draw once (not a timing assert)
    assert "loading [SmolLM2]" in screen.getvalue()


def test_commands_print_no_spinner_when_piped(capsys, monkeypatch, tmp_path):
    from attnkit.apps.summarize import core

    monkeypatch.setattr(core, "summarize", lambda text, **kw: _fake_summary("s", ["s"]))
    path = tmp_path / "in.txt"
    path.write_text("anything", encoding="utf-8")
    code, out, err = run_cli(capsys, "summarize", str(path))
    assert code == 0 and err == "" and "\x1b" not in out


def test_library_errors_name_the_flag_not_the_function(capsys, monkeypatch, tmp_path):
    from attnkit.apps.summarize import core

    def refuse(text, **kw):
        raise ValueError("summarize(): diversity must be in [0, 1], got 2")

    monkeypatch.setattr(core, "summarize", refuse)
    path = tmp_path / "in.txt"
    path.write_text("anything", encoding="utf-8")
    code, _, err = run_cli(capsys, "summarize", str(path))
    assert code == 2 and err == "attnkit summarize: error: --diversity must be in [0, 1], got 2\n"


@pytest.mark.parametrize(
    "argv, action",
    [
        (["translate", "data", "--json"], "data"),
        (["translate", "--json", "data"], "data"),  # the action is the first positional word, after options too
        (["translate", "--corpus-size", "100", "data"], "data"),  # an option's value is not the action
        (["qa", "--top-k", "2", "eval"], "eval"),
        (["summarize", "--json", "eval"], "eval"),
        (["summarize", "--", "eval"], None),  # after `--`, a file named eval
    ],
)
def test_the_action_may_follow_options(argv, action):
    assert cli._parse(argv).action == action


def test_a_typo_of_an_action_after_options_is_refused_too(capsys):
    code, _, err = run_cli(capsys, "translate", "--model", "m", "trian")
    assert code == 2 and "unknown action 'trian'; did you mean 'train'?" in err


def test_bench_tables_print_error_notes_literally():
    from attnkit.bench import report
    from attnkit.console import stdout_console

    row = {"impl": "naive", "mask": "none", "L": 64, "pass": "fwd", "status": "error",
           "error": "RuntimeError: [red]x[/red] a[k] C:\\[x]", "note": "[server] port"}
    cells = report.grid_rows([row])[0]
    console = stdout_console()
    console.width = 400
    with console.capture() as captured:
        for table in report.rich_tables({"grid": [row]}):
            console.print(table)
    out = captured.get()
    for cell in cells:
        assert cell in out, cell


@pytest.mark.parametrize(
    "package", ["attnkit", "attnkit.apps.translate", "attnkit.apps.qa", "attnkit.apps.summarize",
                "attnkit.apps.inspect", "attnkit.bench"],
)
def test_every_lazy_export_resolves(package):
    import importlib

    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
