"""decode_layout: wide Linear weights stored transposed, values and results unchanged."""

import torch

from attnkit.nn import TransformerConfig, TransformerLM, decode_layout


def test_decode_layout_transposes_only_wide_layers_and_keeps_outputs():
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=50, d_model=16, num_heads=2, d_ff=48, num_encoder_layers=0,
                            num_decoder_layers=2, positional="rotary", norm="rmsnorm")  # fmt: skip
    model = TransformerLM(cfg).double().eval()
    ids = torch.randint(3, 50, (2, 9))
    before = model(ids)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    decode_layout(model)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            wide = module.out_features > module.in_features
            assert module.weight.stride() == ((1, module.out_features) if wide else (module.in_features, 1)), name
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # same values, same shapes
    assert model.lm_head.weight is model.embed.tokens.weight  # still tied
    torch.testing.assert_close(model(ids), before, atol=1e-12, rtol=0)  # an independent float64 run before
    cache = model.new_cache()
    steps = [model(ids[:, :5], cache=cache)] + [model(ids[:, t : t + 1], cache=cache) for t in range(5, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), before, atol=1e-12, rtol=0)


def test_decode_layout_model_still_saves_and_trains(tmp_path):
    from attnkit import checkpoint

    torch.manual_seed(1)
    cfg = TransformerConfig(vocab_size=30, d_model=8, num_heads=2, d_ff=32, num_encoder_layers=0, num_decoder_layers=1)
    model = decode_layout(TransformerLM(cfg))
    checkpoint.save(model, tmp_path / "m")
    again = checkpoint.load(tmp_path / "m")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    model(torch.randint(3, 30, (2, 5))).sum().backward()
    assert model.lm_head.weight.grad.shape == (30, 8)
