"""What is being costed: a :class:`~attnkit.nn.TransformerConfig` and which model attnkit builds from it.

An :class:`Architecture` is the config plus the model class around it:

* ``"encoder-decoder"`` — :class:`attnkit.nn.Transformer` (the 2017 paper);
* ``"decoder-only"`` — :class:`attnkit.nn.TransformerLM` (GPT/Llama layout; SmolLM2);
* ``"encoder-only"`` — :class:`attnkit.pretrained.BertModel` (BERT layout; MiniLM), whose
  embeddings add a token-type table and a LayerNorm, and whose pooler is one more
  ``d x d`` projection.

Presets are the published configurations attnkit builds or loads, written out here so
that costing them reads no file:

=========== ================================================================================
preset      configuration
=========== ================================================================================
paper_base  Vaswani et al. 2017, table 3 "base": d 512, h 8, d_ff 2048, N 6+6, 37000 shared vocab
paper_big   table 3 "big": d 1024, h 16, d_ff 4096, N 6+6, 37000 shared vocab
minilm      all-MiniLM-L6-v2 (``config.json`` of the packaged checkpoint): BERT, d 384, h 12, 6 layers
smollm2     SmolLM2-135M (the GGUF metadata ``llama_config_from_gguf`` reads): d 576, 9 heads, 3 KV heads
=========== ================================================================================

Example:
    >>> PRESETS
    ('paper_base', 'paper_big', 'minilm', 'smollm2')
    >>> arch = Architecture.preset("smollm2")
    >>> arch.kind, arch.config.num_kv_heads, arch.config.num_decoder_layers
    ('decoder-only', 3, 30)
    >>> Architecture.preset("paper_bse")
    Traceback (most recent call last):
    ...
    ValueError: Architecture.preset(): name must be one of paper_base, ..., got 'paper_bse'; did you mean 'paper_base'?
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

from ..nn.config import TransformerConfig

__all__ = ["Architecture", "PRESETS", "KINDS"]

KINDS = ("encoder-decoder", "decoder-only", "encoder-only")
PRESETS = ("paper_base", "paper_big", "minilm", "smollm2")
_MODEL_CLASS_KINDS = {"Transformer": "encoder-decoder", "TransformerLM": "decoder-only"}


@dataclass(frozen=True)
class Architecture:
    """A configuration and the kind of model built from it (see the module docstring)."""

    config: TransformerConfig  # every width, depth and switch
    kind: str = "encoder-decoder"  # encoder-decoder | decoder-only | encoder-only
    name: str = "custom"  # a label for tables: the preset, the checkpoint folder, or "custom"
    token_types: int = 0  # rows of a BERT token-type (segment) embedding; 0 = none
    embedding_norm: bool = False  # a LayerNorm right after the embeddings (BERT)
    pooler: bool = False  # BERT's tanh(W h_[CLS] + b) pooler: one d x d projection of the first token

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Architecture: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        cfg = self.config
        if self.kind == "encoder-decoder" and (cfg.num_encoder_layers < 1 or cfg.num_decoder_layers < 1):
            raise ValueError(
                f"Architecture: an encoder-decoder needs >= 1 encoder and decoder layer, got "
                f"{cfg.num_encoder_layers} and {cfg.num_decoder_layers}; use kind='decoder-only' or 'encoder-only'"
            )
        if self.kind == "decoder-only" and cfg.num_decoder_layers < 1:
            raise ValueError("Architecture: a decoder-only model needs num_decoder_layers >= 1, got 0")
        if self.kind == "encoder-only" and cfg.num_encoder_layers < 1:
            raise ValueError("Architecture: an encoder-only model needs num_encoder_layers >= 1, got 0")

    # ------------------------------------------------------------------ layer counts
    @property
    def encoder_layers(self) -> int:
        """Layers with self-attention and a feed-forward network (no cross-attention)."""
        if self.kind == "decoder-only":
            return 0
        return self.config.num_encoder_layers

    @property
    def decoder_layers(self) -> int:
        """Layers with causal self-attention (and cross-attention in an encoder-decoder)."""
        return 0 if self.kind == "encoder-only" else self.config.num_decoder_layers

    @property
    def cross_attention(self) -> bool:
        return self.kind == "encoder-decoder"

    @property
    def has_lm_head(self) -> bool:
        """Whether the model ends in a ``d_model x vocabulary`` projection (BERT's encoder does not)."""
        return self.kind != "encoder-only"

    # ------------------------------------------------------------------ constructors
    @classmethod
    def preset(cls, name: str, **overrides) -> Architecture:
        """One of :data:`PRESETS`; ``overrides`` replace fields of its config (validated again)."""
        if name not in PRESETS:
            hint = difflib.get_close_matches(str(name), PRESETS, n=1)
            raise ValueError(f"Architecture.preset(): name must be one of {', '.join(PRESETS)}, got {name!r}"
                             + (f"; did you mean {hint[0]!r}?" if hint else ""))  # fmt: skip
        if name in ("paper_base", "paper_big"):
            config = getattr(TransformerConfig, name)(**overrides)
            return cls(config, "encoder-decoder", name)
        if name == "minilm":
            config = TransformerConfig(**{**_MINILM, **overrides})
            return cls(config, "encoder-only", name, token_types=2, embedding_norm=True, pooler=True)
        return cls(TransformerConfig(**{**_SMOLLM2, **overrides}), "decoder-only", name)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> Architecture:
        """The architecture of a model directory written by :func:`attnkit.checkpoint.save`.

        Only its ``config.json`` is read (weights are not loaded).
        """
        folder = Path(path)
        file = folder / "config.json"
        if not file.is_file():
            raise FileNotFoundError(
                f"Architecture.from_checkpoint(): {str(file)!r} not found; expected a model directory written "
                "by attnkit.checkpoint.save() (config.json + model.safetensors), e.g. from `attnkit translate train`"
            )
        try:
            meta = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"Architecture.from_checkpoint(): {str(file)!r} is not valid JSON ({e})") from None
        model_class = meta.get("model_class") if isinstance(meta, dict) else None
        if model_class not in _MODEL_CLASS_KINDS or not isinstance(meta.get("config"), dict):
            raise ValueError(
                f"Architecture.from_checkpoint(): {str(file)!r} names model_class {model_class!r} with "
                f"{'a' if isinstance(meta, dict) and isinstance(meta.get('config'), dict) else 'no'} config; "
                f"expected one of {sorted(_MODEL_CLASS_KINDS)} with its TransformerConfig"
            )
        config = TransformerConfig.from_dict(meta["config"])
        return cls(config, _MODEL_CLASS_KINDS[model_class], folder.name or str(folder))

    def replace(self, **changes) -> Architecture:
        """A copy whose config has ``changes`` applied (validated again)."""
        return Architecture(self.config.replace(**changes), self.kind, self.name, self.token_types,
                            self.embedding_norm, self.pooler)  # fmt: skip

    def describe(self) -> str:
        """One line: kind, widths, depths, vocabulary."""
        c = self.config
        grouped = c.num_kv_heads not in (None, c.num_heads)
        heads = f"{c.num_heads} heads" + (f" ({c.num_kv_heads} KV)" if grouped else "")
        depth = {"encoder-decoder": f"{c.num_encoder_layers}+{c.num_decoder_layers} layers",
                 "decoder-only": f"{c.num_decoder_layers} layers", "encoder-only": f"{c.num_encoder_layers} layers"}
        vocab = c.vocab_size if c.tgt_vocab_size in (None, c.vocab_size) else f"{c.vocab_size}/{c.tgt_vocab_size}"
        return (f"{self.name}: {self.kind}, d_model {c.d_model}, {heads} x head_dim {c.d_head}, d_ff {c.d_ff} "
                f"({c.activation}), {depth[self.kind]}, vocabulary {vocab}"
                + (", tied embeddings" if c.tie_embeddings and self.has_lm_head else ""))  # fmt: skip


_MINILM = dict(  # all-MiniLM-L6-v2 config.json, as BertConfig.transformer_config() turns it into attnkit's
    vocab_size=30522, d_model=384, num_heads=12, d_ff=1536, num_encoder_layers=6, num_decoder_layers=0,
    dropout=0.1, attention_dropout=0.1, activation="gelu", norm="layernorm", norm_eps=1e-12, norm_first=False,
    positional="learned", max_len=512, bias=True, scale_embeddings=False, pad_id=0,
)  # fmt: skip
_SMOLLM2 = dict(  # SmolLM2-135M(-Instruct) GGUF metadata, as llama_config_from_gguf() reads it
    vocab_size=49152, d_model=576, num_heads=9, num_kv_heads=3, head_dim=64, d_ff=1536, num_encoder_layers=0,
    num_decoder_layers=30, dropout=0.0, activation="swiglu", norm="rmsnorm", norm_eps=1e-5, norm_first=True,
    positional="rotary", max_len=8192, rope_base=100000.0, bias=False, tie_embeddings=True, scale_embeddings=False,
    pad_id=2, bos_id=1, eos_id=2,
)  # fmt: skip
