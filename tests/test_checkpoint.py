"""attnkit.checkpoint: round trips with tied weights, atomic writes, and clear errors on bad files."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_model

from attnkit import _checkpoint_io, checkpoint
from attnkit.nn import Transformer, TransformerConfig, TransformerLM


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the shared machines are oversubscribed; one thread is fastest and deterministic
    yield
    torch.set_num_threads(before)


def _cfg(**overrides):
    base = dict(vocab_size=23, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=1, num_decoder_layers=2,
                dropout=0.1)  # fmt: skip
    return TransformerConfig(**{**base, **overrides})


def _lm(**overrides):
    torch.manual_seed(0)
    return TransformerLM(_cfg(num_encoder_layers=0, **overrides))


def _mt(**overrides):
    torch.manual_seed(0)
    return Transformer(_cfg(**overrides))


def _saved_keys(path):
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        return set(f.keys())


def test_save_load_transformer_lm_tied_outputs_equal_and_tie_preserved(tmp_path):
    model = _lm().eval()
    path = checkpoint.save(model, tmp_path / "lm", extra={"note": "tiny"})
    again = checkpoint.load(path)
    ids = torch.tensor([[1, 5, 7, 9, 3]])
    assert type(again) is TransformerLM and not again.training
    assert torch.equal(model(ids), again(ids))
    assert again.lm_head.weight is again.embed.tokens.weight
    meta = json.loads((path / "config.json").read_text())
    assert meta["format_version"] == checkpoint.FORMAT_VERSION and meta["model_class"] == "TransformerLM"
    assert meta["config"] == model.config.to_dict() and meta["extra"] == {"note": "tiny"}
    assert meta["tied"] == {"lm_head.weight": "embed.tokens.weight"}
    assert "lm_head.weight" not in _saved_keys(path)  # the shared storage is written once


def test_save_load_transformer_tied_three_ways(tmp_path):
    model = _mt().eval()
    path = checkpoint.save(model, tmp_path / "mt")
    again = checkpoint.load(path)
    src, tgt = torch.tensor([[4, 5, 6, 7]]), torch.tensor([[1, 8, 9]])
    assert type(again) is Transformer
    assert torch.equal(model(src, tgt), again(src, tgt))
    assert again.generator.weight is again.src_embed.tokens.weight is again.tgt_embed.tokens.weight
    tied = json.loads((path / "config.json").read_text())["tied"]
    assert tied == {"tgt_embed.tokens.weight": "src_embed.tokens.weight", "generator.weight": "src_embed.tokens.weight"}


def test_save_load_untied_model_keeps_separate_weights(tmp_path):
    model = _lm(tie_embeddings=False).eval()
    again = checkpoint.load(checkpoint.save(model, tmp_path / "untied"))
    assert again.lm_head.weight is not again.embed.tokens.weight
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_save_replaces_existing_checkpoint_and_leaves_no_temp_dirs(tmp_path):
    checkpoint.save(_lm(), tmp_path / "ckpt")
    model = _lm(d_model=8, d_ff=16)
    checkpoint.save(model, tmp_path / "ckpt")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    assert checkpoint.load(tmp_path / "ckpt").config.d_model == 8


def test_save_failure_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = checkpoint.save(_lm(), tmp_path / "ckpt")
    before = (path / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(_checkpoint_io, "save_file", crash)  # the writer below attnkit.checkpoint
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(_lm(d_model=8, d_ff=16), path)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(_lm(), tmp_path / "new")
    assert (path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no half-written "new", no temp dirs


def test_save_refuses_to_replace_a_directory_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "corpus.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not an attnkit checkpoint"):
        checkpoint.save(_lm(), tmp_path / "data")
    assert (tmp_path / "data" / "corpus.txt").read_text() == "precious"


def test_save_extra_not_json_serializable_raises_type_error(tmp_path):
    with pytest.raises(TypeError, match="extra must be a JSON-serializable"):
        checkpoint.save(_lm(), tmp_path / "x", extra={"tensor": torch.zeros(1)})
    assert not (tmp_path / "x").exists()


def test_load_missing_directory_and_missing_weights_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist.*config.json and model.safetensors"):
        checkpoint.load(tmp_path / "nowhere")
    path = checkpoint.save(_lm(), tmp_path / "ckpt")
    (path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors' is missing"):
        checkpoint.load(path)


@pytest.mark.parametrize("keep_fraction", [0.5, 0.001, 0.0])
def test_load_truncated_safetensors_raises_value_error_naming_path(tmp_path, keep_fraction):
    path = checkpoint.save(_lm(), tmp_path / "ckpt")
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep_fraction)])
    with pytest.raises(ValueError, match="model.safetensors' is truncated or not a safetensors file"):
        checkpoint.load(path)


def test_load_newer_format_version_raises_value_error(tmp_path):
    path = checkpoint.save(_lm(), tmp_path / "ckpt")
    meta = json.loads((path / "config.json").read_text())
    meta["format_version"] = checkpoint.FORMAT_VERSION + 1
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=f"format_version {checkpoint.FORMAT_VERSION + 1}, newer.*upgrade attnkit"):
        checkpoint.load(path)


def test_load_damaged_config_json_raises_value_error(tmp_path):
    path = checkpoint.save(_lm(), tmp_path / "ckpt")
    (path / "config.json").write_text('{"format_version": 1, "model_cl')
    with pytest.raises(ValueError, match="config.json' is not valid JSON"):
        checkpoint.load(path)


def test_load_state_mismatch_lists_missing_unexpected_and_shapes(tmp_path):
    path = checkpoint.save(_lm(), tmp_path / "ckpt")  # 2 decoder layers, d_ff 32
    other = _lm(num_decoder_layers=3, d_ff=48)
    with pytest.raises(ValueError) as info:
        checkpoint.load_state(other, path)
    message = str(info.value)
    assert "missing keys (16): decoder.layers.2.feed_forward.w_1.bias" in message and "(+8 more)" in message
    assert "shape mismatches (6): decoder.layers.0.feed_forward.w_1.weight: file (32, 16) vs model (48, 16)" in message
    smaller = _lm(num_decoder_layers=1)
    with pytest.raises(ValueError, match=r"unexpected keys \(\d+\): decoder.layers.1"):
        checkpoint.load_state(smaller, path)


def test_load_state_reads_plain_pt_state_dict_with_weights_only(tmp_path):
    model = _lm().eval()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    target = _lm(dropout=0.0)
    torch.nn.init.zeros_(target.embed.tokens.weight)
    checkpoint.load_state(target, tmp_path / "weights.pt")
    ids = torch.tensor([[2, 3, 4]])
    assert torch.equal(model(ids), target.eval()(ids))


class _Payload:
    """A custom class: unpickling it could run arbitrary code, so it must be refused."""


def test_load_state_refuses_pickled_custom_objects(tmp_path):
    state = dict(_lm().state_dict())
    state["payload"] = _Payload()
    torch.save(state, tmp_path / "evil.bin")
    with pytest.raises(ValueError, match=r"evil.bin' cannot be read as a tensors-only state dict \(Unsupported global"):
        checkpoint.load_state(_lm(), tmp_path / "evil.bin")


def test_load_state_fills_ties_missing_from_a_save_model_file(tmp_path):
    model = _lm().eval()
    save_model(model, str(tmp_path / "w.safetensors"))  # safetensors drops one name of each tied pair
    target = _lm()
    torch.nn.init.zeros_(target.lm_head.weight)
    checkpoint.load_state(target, tmp_path / "w.safetensors")
    assert target.lm_head.weight is target.embed.tokens.weight
    assert torch.equal(target.embed.tokens.weight, model.embed.tokens.weight)


def test_load_state_rejects_different_values_for_tied_names(tmp_path):
    state = {k: v.clone() for k, v in _lm().state_dict().items()}
    state["lm_head.weight"] += 1.0
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(ValueError, match="tied parameter.*different values"):
        checkpoint.load_state(_lm(), tmp_path / "w.pt")


def test_write_atomic_replaces_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.json"
    checkpoint.write_atomic(target, "old")
    checkpoint.write_atomic(target, b"new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


@pytest.mark.parametrize(
    "umask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)]
)
def test_save_and_write_atomic_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    import os

    old = os.umask(umask)
    try:
        assert checkpoint.current_umask() == umask
        path = checkpoint.save(_lm(), tmp_path / "lm")
        note = checkpoint.write_atomic(tmp_path / "note.json", "{}")
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == oct(dir_mode)
    for f in [*path.iterdir(), note]:
        assert oct(f.stat().st_mode & 0o777) == oct(file_mode), f.name
