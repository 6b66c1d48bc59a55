"""attnkit.apps.inspect: weights captured by hooks and recomputed from the tiled lse, PNGs, statistics, CLI."""

from __future__ import annotations

import json

import pytest
import torch

from attnkit import cli
from attnkit.apps.inspect import capture, inspect, layer_weights
from attnkit.apps.inspect.capture import LayerCall
from attnkit.masks import causal
from attnkit.nn import MultiHeadAttention
from attnkit.nn.positional import RotaryEmbedding

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SENTENCE = "The animal didn't cross the street because it was too tired"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def manual_weights(mha: MultiHeadAttention, x: torch.Tensor, is_causal: bool) -> torch.Tensor:
    """softmax(QK^T / sqrt(d)) of batch 0, written out here with RoPE and GQA, float64."""
    B, L, _ = x.shape
    q = mha.w_q(x).view(B, L, mha.num_heads, mha.d_k).transpose(1, 2)
    k = mha.w_k(x).view(B, L, mha.num_kv_heads, mha.d_k).transpose(1, 2)
    if mha.rotary is not None:
        q, k = mha.rotary.rotate(q), mha.rotary.rotate(k)
    k = k.repeat_interleave(mha.num_heads // mha.num_kv_heads, dim=1)
    s = (q.double() @ k.double().transpose(-1, -2)) / mha.d_k**0.5
    if is_causal:
        s = s.masked_fill(~torch.ones(L, L, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(s, dim=-1)[0]


# ---------------------------------------------------------------------- capture
@pytest.mark.parametrize("method", ["lse", "need_weights"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_layer_weights_match_softmax_with_rope_and_gqa(method, is_causal):
    torch.manual_seed(0)
    mha = MultiHeadAttention(4, 32, dropout=0.0, num_kv_heads=2, rotary=RotaryEmbedding(8)).eval()
    x = torch.randn(1, 11, 32)
    with torch.no_grad(), capture([mha]) as calls:
        mha(x, mask=causal() if is_causal else None)
    lw = layer_weights(mha, calls[0], method=method)
    assert lw.method == method and lw.max_error < 1e-5
    torch.testing.assert_close(lw.weights.double(), manual_weights(mha, x, is_causal), atol=1e-5, rtol=1e-4)


def test_capture_leaves_the_model_output_unchanged_and_removes_hooks():
    mha = MultiHeadAttention(2, 8, dropout=0.0).eval()
    x = torch.randn(1, 5, 8)
    before = mha(x)
    with capture([mha]):
        during = mha(x)
    assert torch.equal(before, during)
    assert not mha._forward_hooks and not mha._forward_pre_hooks and not mha.w_q._forward_hooks


def test_layer_weights_refuses_a_module_that_is_not_multi_head_attention():
    expected = r"layer_weights\(\): module must be an attnkit.nn.MultiHeadAttention, got Linear"
    with pytest.raises(TypeError, match=expected):
        layer_weights(torch.nn.Linear(8, 8), LayerCall())


def test_layer_weights_without_a_captured_call_says_so():
    with pytest.raises(RuntimeError, match="the hooks saw no forward call of this module"):
        layer_weights(MultiHeadAttention(2, 8), LayerCall())


# ---------------------------------------------------------------------- pretrained models
@pytest.fixture(scope="module")
def minilm_inspection():
    return inspect(SENTENCE, model="minilm")  # all 6 layers, no pictures (drawing 12-head grids is the slow part)


def test_inspect_minilm_writes_one_png_grid_per_layer(tmp_path):
    r = inspect("Attention is all you need", model="minilm", out=tmp_path, layers=[-1])  # drawing is the slow part
    assert r.method == "lse" and not r.causal and r.tokens[0] == "[CLS]" and r.tokens[-1] == "[SEP]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer_05.png"]
    for layer in r.layers:
        assert layer.png.name == f"layer_{layer.index:02d}.png"
        assert layer.png.read_bytes()[:8] == PNG_MAGIC


def test_inspect_minilm_weights_rows_sum_to_one_and_match_the_model(minilm_inspection):
    L = len(minilm_inspection.tokens)
    assert [x.index for x in minilm_inspection.layers] == list(range(6))
    for layer in minilm_inspection.layers:
        assert layer.weights.shape == (12, L, L) and (layer.weights >= 0).all()
        torch.testing.assert_close(layer.weights.sum(-1), torch.ones(12, L), atol=1e-5, rtol=0)
        assert layer.max_error < 1e-4  # recomputed attention output == what the layer produced
        assert layer.statistics.entropy.shape == (12,)


def test_inspect_lse_and_need_weights_agree():
    a = inspect(SENTENCE, model="minilm", layers=[0, -1])
    b = inspect(SENTENCE, model="minilm", layers=[0, -1], method="need_weights")
    assert [x.index for x in a.layers] == [0, 5] and b.method == "need_weights"
    for x, y in zip(a.layers, b.layers, strict=True):
        torch.testing.assert_close(x.weights, y.weights, atol=1e-5, rtol=1e-4)


def test_inspect_smollm2_is_causal_with_rows_summing_to_one():
    r = inspect("Self-attention reads the whole text at once", model="smollm2", layers=[0, -1])
    assert r.causal and [x.index for x in r.layers] == [0, 29]
    L = len(r.tokens)
    for layer in r.layers:
        assert layer.weights.shape == (9, L, L) and layer.max_error < 1e-3
        torch.testing.assert_close(layer.weights.sum(-1), torch.ones(9, L), atol=1e-5, rtol=0)
        assert float(layer.weights.triu(1).abs().max()) == 0.0  # no token sees the future


# ---------------------------------------------------------------------- CLI
def test_cli_inspect_json_lists_statistics_and_pngs(tmp_path, capsys):
    code, out, err = run_cli(capsys, "inspect", "Attention is all you need", "--out", str(tmp_path), "--layers", "0",
                             "--json")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["method"] == "lse" and [x["layer"] for x in data["layers"]] == [0]
    assert all(len(x["mean_distance"]) == 12 and open(x["png"], "rb").read(8) == PNG_MAGIC for x in data["layers"])


def test_cli_inspect_table_names_the_method(capsys):
    code, out, _ = run_cli(capsys, "inspect", "Attention is all you need", "--layers", "-1", "--no-plots")
    assert code == 0
    assert "mean attention distance" in out and "entropy" in out and "weights: lse" in out and "heatmap" not in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["inspect", "word " * 80], "more than the limit of 64"),
        (["inspect", "hello", "--layers", "6"], "layers must be ints in [-6, 5]"),
        (["inspect", "   "], "text must be a non-empty str"),
    ],
)
def test_cli_inspect_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv, "--no-plots")
    assert code == 2 and out == "" and message in err and "Traceback" not in err


def test_inspect_pictures_name_query_key_axes_colorbar_and_layer(tmp_path, monkeypatch):
    from attnkit import viz

    seen, save = [], viz._save_atomically  # what each saved figure said (the figure is reused between layers)

    def record(fig, path, dpi):
        *panels, colorbar = fig.axes
        seen.append((path.name, fig.get_suptitle(), panels[0].get_xlabel(), panels[0].get_ylabel(),
                     colorbar.get_ylabel(), panels[0].get_title(), len(panels)))  # fmt: skip
        return save(fig, path, dpi)

    monkeypatch.setattr(viz, "_save_atomically", record)
    r = inspect("Attention is all you need", model="minilm", out=tmp_path, layers=[0, -1])
    assert [name for name, *_ in seen] == ["layer_00.png", "layer_05.png"]
    for (_, title, x, y, bar, head0, panels), layer in zip(seen, r.layers, strict=True):
        assert f"layer {layer.index}" in title and "self-attention" in title
        assert (x, y, bar, panels) == ("key (attended to)", "query (attending)", "attention weight", 12)
        stats = layer.statistics
        assert head0 == f"head 0: d={float(stats.mean_distance[0]):.1f}  H={float(stats.entropy[0]):.2f}"
    assert seen[0][5] != seen[1][5]  # the reused figure got the second layer's titles
