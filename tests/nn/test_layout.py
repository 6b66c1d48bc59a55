"""decode_layout: wide Linear weights stored transposed, q/k/v and gate/up fused; values and results unchanged."""

import pytest
import torch

from attnkit.nn import TransformerConfig, TransformerLM, decode_layout


def _lm(bias: bool, activation: str = "swiglu", seed: int = 0) -> TransformerLM:
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=50, d_model=16, num_heads=2, num_kv_heads=1, d_ff=48, num_encoder_layers=0,
                            num_decoder_layers=2, positional="rotary", norm="rmsnorm", activation=activation,
                            bias=bias)  # fmt: skip
    return TransformerLM(cfg).double().eval()


@pytest.mark.parametrize("bias", [False, True])
def test_decode_layout_keeps_values_outputs_and_cached_decoding(bias):
    model = _lm(bias)
    ids = torch.randint(3, 50, (2, 9))
    before = model(ids)  # an independent float64 run with the original layout
    state = {k: v.clone() for k, v in model.state_dict().items()}
    decode_layout(model)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # same values, same shapes
    assert model.lm_head.weight is model.embed.tokens.weight  # still tied
    attn, ffn = model.decoder.layers[0].self_attn, model.decoder.layers[0].feed_forward
    if bias:  # biases keep the layers apart; only wide weights are re-laid
        assert getattr(attn, "_fused_qkv", None) is None
        assert ffn.w_gate.weight.stride() == (1, 48) and attn.w_k.weight.stride() == (16, 1)
    else:  # one block each, the Parameters are views of it
        assert attn._fused_qkv.shape == (16 + 8 + 8, 16) and attn.w_k.weight.data_ptr() > attn.w_q.weight.data_ptr()
        assert ffn._fused_gate_up.shape == (96, 16) and ffn.w_up.weight.stride() == (1, 96)
    torch.testing.assert_close(model(ids), before, atol=1e-12, rtol=0)
    cache = model.new_cache()
    steps = [model(ids[:, :5], cache=cache)] + [model(ids[:, t : t + 1], cache=cache) for t in range(5, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), before, atol=1e-12, rtol=0)


def test_decode_layout_model_still_saves_loads_and_trains(tmp_path):
    from attnkit import checkpoint

    model = decode_layout(_lm(bias=False, seed=1))
    checkpoint.save(model, tmp_path / "m")
    again = checkpoint.load(tmp_path / "m")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))
    model.train()
    ids = torch.randint(3, 50, (2, 5))
    model(ids).sum().backward()
    attn = model.decoder.layers[0].self_attn
    assert attn.w_q.weight.grad.shape == (16, 16) and attn.w_k.weight.grad.shape == (8, 16)
    with torch.no_grad():  # an update in place is seen by the fused block: both paths stay equal
        attn.w_k.weight.add_(0.5)
    fused = model.eval()(ids)
    attn._fused_qkv = None  # the separate projections
    torch.testing.assert_close(model(ids), fused, atol=1e-12, rtol=0)


def test_decode_layout_lets_forward_hooks_see_each_projection():
    model = decode_layout(_lm(bias=False, seed=2))
    ids = torch.randint(3, 50, (1, 6))
    plain = model(ids)
    seen = []
    attn, ffn = model.decoder.layers[1].self_attn, model.decoder.layers[1].feed_forward
    hooks = [lin.register_forward_hook(lambda m, i, o: seen.append(o.shape)) for lin in (attn.w_k, ffn.w_up)]
    hooked = model(ids)
    for h in hooks:
        h.remove()
    assert seen == [(1, 6, 8), (1, 6, 48)]  # both layers ran their separate projections
    torch.testing.assert_close(hooked, plain, atol=1e-12, rtol=0)
