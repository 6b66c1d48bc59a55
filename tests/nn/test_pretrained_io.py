"""save_pretrained / from_pretrained: the models come back equal (weights, config, ties, outputs), through
safetensors + JSON written atomically; the files are read back independently of attnkit."""

import json

import pytest
import torch
from safetensors import safe_open

from attnkit import _checkpoint_io, checkpoint
from attnkit.nn import Encoder, Transformer, TransformerConfig, TransformerLM


def config(**changes) -> TransformerConfig:
    base = dict(vocab_size=23, d_model=16, num_heads=4, d_ff=32, num_encoder_layers=1, num_decoder_layers=2,
                dropout=0.0)  # fmt: skip
    return TransformerConfig(**{**base, **changes})


CASES = {
    "transformer": (Transformer, config()),
    "transformer-untied-gqa-rotary": (Transformer, config(tie_embeddings=False, tgt_vocab_size=19, num_kv_heads=2,
                                                          positional="rotary")),  # fmt: skip
    "lm": (TransformerLM, config(num_encoder_layers=0, positional="rotary", norm="rmsnorm", activation="swiglu")),
    "lm-untied-learned": (TransformerLM, config(num_encoder_layers=0, tie_embeddings=False, positional="learned")),
    "encoder": (Encoder, config(num_encoder_layers=2, backend="tiled")),
}


def run(model, cls):
    g = torch.Generator().manual_seed(1)
    if cls is Encoder:
        return model(torch.randn(2, 7, 16, generator=g))
    ids = torch.randint(3, 19, (2, 7), generator=g)
    return model(ids, ids[:, :5]) if cls is Transformer else model(ids)


@pytest.mark.parametrize("name", sorted(CASES))
def test_from_pretrained_rebuilds_the_saved_model_exactly(name, tmp_path):
    cls, cfg = CASES[name]
    torch.manual_seed(0)
    model = cls(cfg).eval()
    path = model.save_pretrained(tmp_path / name, extra={"note": "tiny"})
    again = cls.from_pretrained(path)
    assert type(again) is cls and again.config == cfg and not again.training
    assert again.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    assert torch.equal(run(again, cls), run(model, cls))
    meta = json.loads((path / "config.json").read_text())  # read without attnkit
    assert meta["model_class"] == cls.__name__ and meta["config"] == cfg.to_dict() and meta["extra"] == {"note": "tiny"}
    with safe_open(str(path / "model.safetensors"), "pt") as f:  # a safetensors file, no pickle
        stored = set(f.keys())
    assert stored | set(meta["tied"]) == set(model.state_dict())


def test_tied_weights_stay_one_parameter_after_loading(tmp_path):
    cls, cfg = CASES["transformer"]
    again = cls.from_pretrained(cls(cfg).save_pretrained(tmp_path / "mt"))
    assert again.generator.weight is again.tgt_embed.tokens.weight is again.src_embed.tokens.weight


def test_checkpoint_load_and_from_pretrained_read_the_same_directory(tmp_path):
    lm = TransformerLM(CASES["lm"][1]).eval()
    via_save = checkpoint.save(lm, tmp_path / "a")
    via_method = lm.save_pretrained(tmp_path / "b")
    for path in (via_save, via_method):
        assert torch.equal(run(TransformerLM.from_pretrained(path), TransformerLM), run(lm, TransformerLM))
        assert torch.equal(run(checkpoint.load(path), TransformerLM), run(lm, TransformerLM))


def test_from_pretrained_refuses_a_checkpoint_of_another_class(tmp_path):
    path = Transformer(config()).save_pretrained(tmp_path / "mt")
    with pytest.raises(ValueError, match=r"TransformerLM.from_pretrained\(\): .* holds a 'Transformer', not a "):
        TransformerLM.from_pretrained(path)


def test_from_pretrained_names_a_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TransformerLM.from_pretrained(tmp_path / "nothing")


def test_save_pretrained_is_atomic_and_refuses_foreign_directories(tmp_path, monkeypatch):
    lm = TransformerLM(CASES["lm"][1])
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(FileExistsError, match="not an attnkit checkpoint"):
        lm.save_pretrained(foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["cat.jpg"]

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(_checkpoint_io, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        lm.save_pretrained(tmp_path / "lm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # no half-written directory, no temp left
