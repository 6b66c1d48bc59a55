"""ONNX export: a TransformerLM and a translation Transformer run in onnxruntime with dynamic batch size and
lengths and give the eager model's logits within 1e-5 (the eager models are checked against torch.nn and the
float64 reference elsewhere); `attnkit export onnx` writes and checks a saved model."""

import inspect
import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from attnkit import cli  # noqa: E402
from attnkit.integrations.onnx import LanguageModelGraph, TranslationGraph, export_onnx, run_onnx  # noqa: E402
from attnkit.nn import Transformer, TransformerConfig, TransformerLM  # noqa: E402


def tiny_lm(**changes) -> TransformerLM:
    torch.manual_seed(0)
    cfg = dict(vocab_size=31, d_model=16, num_heads=4, num_kv_heads=2, d_ff=32, num_encoder_layers=0,
               num_decoder_layers=2, positional="rotary", max_len=128)  # fmt: skip
    return TransformerLM(TransformerConfig(**{**cfg, **changes})).eval()


def tiny_translator() -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=29, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=1,
                                         num_decoder_layers=1, max_len=128)).eval()  # fmt: skip


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Both models exported once (~10 s each on the 2-core machine)."""
    root = tmp_path_factory.mktemp("onnx")
    lm, mt = tiny_lm(backend="tiled"), tiny_translator()
    return {"lm": (lm, export_onnx(lm, root / "lm.onnx")), "mt": (mt, export_onnx(mt, root / "mt.onnx"))}


def test_language_model_runs_in_onnxruntime_at_any_batch_and_length(exported):
    lm, result = exported["lm"]
    assert result.inputs == {"ids": ("batch", "length")} and result.max_abs_diff <= 1e-5
    for shape in ((1, 2), (4, 57)):
        ids = torch.randint(0, 31, shape)
        got = run_onnx(result.path, ids)
        np.testing.assert_allclose(got, lm(ids).detach().numpy(), rtol=0, atol=1e-5)


def test_translation_model_runs_in_onnxruntime_with_any_padding(exported):
    mt, result = exported["mt"]
    assert result.inputs == {"src": ("batch", "src_length"), "tgt": ("batch", "tgt_length")}
    src, tgt = torch.randint(3, 29, (3, 11)), torch.randint(3, 29, (3, 5))
    src[0, 6:] = 0  # right padding
    src[1, :2] = 0  # left padding (a dense mask in eager)
    tgt[2, 3:] = 0
    for s, t in ((src, tgt), (src[:, :7], tgt[:, :1]), (torch.randint(3, 29, (1, 3)), torch.randint(3, 29, (1, 4)))):
        np.testing.assert_allclose(run_onnx(result.path, s, t), mt(s, t).detach().numpy(), rtol=0, atol=1e-5)


def test_keyword_only_trap_of_the_legacy_exporter_is_real_and_the_graph_wrappers_avoid_it(tmp_path):
    """torch.onnx.export(dynamo=False) passes (ids,) positionally to forward, and TransformerLM.forward's
    keyword-only parameters turn it into 6 arguments; export_onnx exports a wrapper whose forward takes
    exactly the graph's inputs, with the dynamo exporter (the fixture above runs that path)."""
    lm = tiny_lm(num_decoder_layers=1)
    with pytest.raises(TypeError, match=r"positional arguments but \d+ were given"):
        torch.onnx.export(lm, (torch.randint(0, 31, (2, 6)),), str(tmp_path / "bare.onnx"), dynamo=False)
    assert list(inspect.signature(LanguageModelGraph(lm).forward).parameters) == ["ids"]
    assert list(inspect.signature(TranslationGraph(tiny_translator()).forward).parameters) == ["src", "tgt"]


def test_export_onnx_refuses_other_modules_with_the_way_out(tmp_path):
    with pytest.raises(TypeError, match="TransformerLM or Transformer, got Linear"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")


def test_cli_export_onnx_writes_and_checks_a_saved_model(tmp_path, capsys):
    tiny_lm(num_decoder_layers=1).save_pretrained(tmp_path / "run" / "model")  # a training run's final model
    out = tmp_path / "onnx" / "lm.onnx"
    code = cli.main(["export", "onnx", "--model", str(tmp_path / "run"), str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["path"] == str(out) and out.is_file() and result["model_class"] == "TransformerLM"
    assert result["max_abs_diff"] <= 1e-5 and result["checked_shapes"] == [{"ids": [2, 16]}, {"ids": [3, 21]}]


def test_cli_export_names_a_directory_without_a_model(tmp_path, capsys):
    assert cli.main(["export", "onnx", "--model", str(tmp_path)]) == 2
    assert "no checkpoint there" in capsys.readouterr().err


def test_cli_export_without_an_action_lists_it(capsys):
    assert cli.main(["export"]) == 2
    assert "export onnx" in capsys.readouterr().err
