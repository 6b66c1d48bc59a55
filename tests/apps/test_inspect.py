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


# ---------------------------------------------------------------------- the explorer page (--html)
def page_weights(section) -> torch.Tensor:
    """The (N, H, Lq, Lk) weights a dense page section carries, decoded from its 16 bits."""
    import numpy as np

    from attnkit.viz.explorer import QUANT

    assert section.mode == "dense"
    values = np.frombuffer(section.values, dtype="<u2").astype(np.float64) / QUANT
    return torch.from_numpy(values.copy()).view(len(section.layers), section.num_heads, len(section.query_tokens),
                                                len(section.key_tokens))  # fmt: skip


class need_weights_oracle:
    """Make every module return its weights from the reference backend (need_weights=True) and keep them."""

    def __init__(self, modules):
        self.modules, self.weights, self.handles = modules, {}, []

    def __enter__(self):
        for n, m in enumerate(self.modules):
            self.handles.append(m.register_forward_pre_hook(lambda mod, a, kw: (a, {**kw, "need_weights": True}),
                                                            with_kwargs=True))  # fmt: skip
            self.handles.append(m.register_forward_hook(self._keep(n)))
        return self.weights

    def _keep(self, n):
        def hook(module, args, output):
            self.weights[n] = output[1][0].double()  # (H, Lq, Lk) of batch 0
            return output[0]

        return hook

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def test_explore_model_lm_weights_are_the_reference_backends_with_rope_and_gqa():
    from attnkit.apps.inspect import explore_model
    from attnkit.nn import TransformerConfig, TransformerLM

    torch.manual_seed(0)
    lm = TransformerLM(TransformerConfig(vocab_size=30, d_model=32, num_heads=4, num_kv_heads=2, d_ff=64,
                                         num_encoder_layers=0, num_decoder_layers=2, positional="rotary")).eval()
    ids = torch.randint(0, 30, (1, 11))
    page = explore_model(lm, ids, prompt_length=6)
    (section,) = page.sections
    modules = [layer.self_attn for layer in lm.decoder.layers]
    with torch.no_grad(), need_weights_oracle(modules) as oracle:
        lm(ids)
    expected = torch.stack([oracle[n] for n in range(2)])  # (N, H, L, L)
    torch.testing.assert_close(page_weights(section), expected, atol=0.5 / 65535 + 2e-6, rtol=0)
    assert section.causal and section.prompt_length == 6 and section.query_tokens == tuple(map(str, ids[0].tolist()))


def test_explore_model_encoder_decoder_has_three_sections_cross_attention_matching_the_reference():
    from attnkit.apps.inspect import explore_model
    from attnkit.nn import Transformer, TransformerConfig

    torch.manual_seed(1)
    model = Transformer(TransformerConfig(vocab_size=25, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=2,
                                          num_decoder_layers=2)).eval()  # fmt: skip
    src, tgt = torch.randint(3, 25, (1, 7)), torch.randint(3, 25, (1, 5))
    page = explore_model(model, src, tgt, tokens=list("abcdefg"), target_tokens=list("vwxyz"))
    assert [(s.name, len(s.query_tokens), len(s.key_tokens), s.causal) for s in page.sections] == [
        ("encoder", 7, 7, False), ("decoder", 5, 5, True), ("cross", 5, 7, False)]  # fmt: skip
    groups = [[x.self_attn for x in model.encoder.layers], [x.self_attn for x in model.decoder.layers],
              [x.cross_attn for x in model.decoder.layers]]  # fmt: skip
    for section, modules in zip(page.sections, groups, strict=True):
        with torch.no_grad(), need_weights_oracle(modules) as oracle:
            model(src, tgt)
        expected = torch.stack([oracle[n] for n in range(2)])
        torch.testing.assert_close(page_weights(section), expected, atol=0.5 / 65535 + 2e-6, rtol=0)


def test_layer_weights_reads_a_cross_attention_call_with_a_positional_mask():
    from attnkit.masks import padding

    mha = MultiHeadAttention(2, 8, dropout=0.0).eval()
    x, memory = torch.randn(1, 3, 8), torch.randn(1, 5, 8)
    keep = padding(torch.tensor([[True, True, True, False, False]]))  # the last two source tokens are padding
    with torch.no_grad(), capture([mha]) as calls:
        mha(x, memory, memory, keep)
    found = layer_weights(mha, calls[0])
    with torch.no_grad():
        _, expected = mha(x, memory, memory, keep, need_weights=True)
    assert found.weights.shape == (2, 3, 5) and found.max_error < 1e-5
    torch.testing.assert_close(found.weights.double(), expected[0].double(), atol=1e-6, rtol=0)
    assert float(found.weights[..., 3:].abs().max()) == 0.0  # padding gets no weight


def test_cli_inspect_html_writes_one_offline_page_with_every_minilm_layer(capsys, tmp_path):
    out = tmp_path / "page.html"
    code, stdout, err = run_cli(capsys, "inspect", SENTENCE, "--html", str(out), "--json")
    doc = json.loads(stdout)
    assert code == 0 and doc["html"] == str(out) and out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert doc["sections"] == [{"name": "encoder", "queries": 15, "keys": 15, "layers": [0, 1, 2, 3, 4, 5],
                                "heads": 12, "mode": "dense", "top_k": 15}]  # fmt: skip
    assert "lse" in doc["note"] and "match the model's" in doc["note"]
    code, _, err = run_cli(capsys, "inspect", SENTENCE, "--generate", "3", "--html", str(out))
    assert code == 2 and "--generate needs a decoder" in err


def test_explore_text_smollm2_generation_steps_are_the_greedy_kv_cache_tokens():
    from attnkit.apps.inspect import explore_text
    from attnkit.apps.summarize.models import chat_model

    page = explore_text("The capital of France is", model="smollm2", generate=4, layers=[0, -1])
    (section,) = page.sections
    chat = chat_model()
    prompt = chat.tokenizer.encode("The capital of France is", add_special_tokens=False).ids
    new = chat.generate_ids(prompt, max_new_tokens=4)  # the KV-cache decoder, independently
    assert section.prompt_length == len(prompt) and section.layers == (0, 29) and section.causal
    assert section.query_tokens == tuple(chat.tokenizer.decode([i]) for i in prompt + new)
    assert "picks the same token at 4 of 4 steps" in page.note
    w = page_weights(section)  # (2, 9, L, L)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1], dtype=torch.float64), atol=2e-3, rtol=0)
    assert float(w.triu(1).abs().max()) == 0.0  # causal: no weight on later tokens
