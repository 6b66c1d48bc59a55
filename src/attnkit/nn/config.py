"""``TransformerConfig``: every hyper-parameter of the Transformer, validated once.

``TransformerConfig.paper_base()`` and ``paper_big()`` give the two models of
"Attention Is All You Need" (Vaswani et al., 2017, table 3).

Example:
    >>> cfg = TransformerConfig.paper_base()
    >>> cfg.d_model, cfg.num_heads, cfg.d_ff, cfg.num_encoder_layers
    (512, 8, 2048, 6)
    >>> TransformerConfig(vocab_size=100, d_model=10, num_heads=4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: TransformerConfig: d_model=10 is not divisible by num_heads=4; choose num_heads among [1, 2, 5, 10] ...
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .attention import check_backend  # the valid names come from the functional dispatcher's registry

__all__ = ["TransformerConfig"]

_ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "swiglu")
_NORMS = ("layernorm", "rmsnorm")
_POSITIONS = ("sinusoidal", "learned", "rotary", "alibi", "none")


@dataclass(frozen=True)
class TransformerConfig:
    """Hyper-parameters of :class:`~attnkit.nn.Transformer` and :class:`~attnkit.nn.TransformerLM`."""

    vocab_size: int  # source vocabulary (and target when tgt_vocab_size is None)
    tgt_vocab_size: int | None = None  # target vocabulary; None shares the source one
    d_model: int = 512  # width of every residual stream
    num_heads: int = 8  # query heads per attention layer
    num_kv_heads: int | None = None  # key/value heads (grouped-query attention); None = num_heads
    head_dim: int | None = None  # width per head; None = d_model // num_heads
    d_ff: int = 2048  # inner width of the feed-forward network
    num_encoder_layers: int = 6  # 0 for a decoder-only model
    num_decoder_layers: int = 6  # decoder stack depth
    dropout: float = 0.1  # on embeddings and every sublayer output (P_drop in the paper)
    attention_dropout: float = 0.0  # on attention weights
    activation: str = "relu"  # feed-forward activation: relu | gelu | gelu_tanh | swiglu
    norm: str = "layernorm"  # layernorm | rmsnorm
    norm_eps: float = 1e-5  # epsilon of the norms
    norm_first: bool = True  # pre-LN (stable); False = the paper's post-LN layout
    positional: str = "sinusoidal"  # sinusoidal | learned | rotary | alibi | none
    max_len: int = 4096  # positions of a learned embedding (sinusoidal/rotary extend beyond)
    rope_base: float = 10000.0  # RoPE base frequency
    bias: bool = True  # biases in attention and feed-forward projections
    tie_embeddings: bool = True  # share source/target embeddings and the output projection (paper 3.4)
    scale_embeddings: bool = True  # multiply embeddings by sqrt(d_model) (paper 3.4)
    pad_id: int = 0  # padding token id
    bos_id: int = 1  # beginning-of-sequence id (decoder start)
    eos_id: int = 2  # end-of-sequence id
    backend: str = "auto"  # attention backend (see attnkit.functional.explain)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "num_heads", "d_ff", "max_len"):
            _positive(name, getattr(self, name))
        for name in ("num_encoder_layers", "num_decoder_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"TransformerConfig: {name} must be an int >= 0, got {value!r}")
        for name in ("tgt_vocab_size", "num_kv_heads", "head_dim"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        if self.head_dim is None and self.d_model % self.num_heads:
            divisors = [d for d in range(1, self.d_model + 1) if self.d_model % d == 0]
            raise ValueError(
                f"TransformerConfig: d_model={self.d_model} is not divisible by num_heads={self.num_heads}; "
                f"choose num_heads among {divisors} or set head_dim"
            )
        if self.num_kv_heads is not None and self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"TransformerConfig: num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads}"
            )
        for name, value, allowed in (
            ("activation", self.activation, _ACTIVATIONS),
            ("norm", self.norm, _NORMS),
            ("positional", self.positional, _POSITIONS),
        ):
            if value not in allowed:
                raise ValueError(f"TransformerConfig: {name} must be one of {allowed}, got {value!r}")
        for name in ("dropout", "attention_dropout"):
            _fraction(name, getattr(self, name))
        for name in ("norm_eps", "rope_base"):
            _positive_float(name, getattr(self, name))
        for name in ("norm_first", "bias", "tie_embeddings", "scale_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"TransformerConfig: {name} must be True or False, got {getattr(self, name)!r}")
        self._check_token_ids()
        check_backend("TransformerConfig", "backend", self.backend)
        if self.tie_embeddings and self.tgt_vocab_size not in (None, self.vocab_size) and self.num_encoder_layers:
            raise ValueError(
                f"TransformerConfig: tie_embeddings=True needs one shared vocabulary, but vocab_size="
                f"{self.vocab_size} and tgt_vocab_size={self.tgt_vocab_size}; set tie_embeddings=False"
            )

    def _check_token_ids(self) -> None:
        """pad_id/bos_id/eos_id are ids of the vocabularies they index (else padding is silently off)."""
        vocab = min(self.vocab_size, self.target_vocab_size)
        for name, size in (("pad_id", vocab), ("bos_id", self.target_vocab_size), ("eos_id", self.target_vocab_size)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"TransformerConfig: {name} must be an int token id, got {value!r}")
            if not 0 <= value < size:
                raise ValueError(
                    f"TransformerConfig: {name}={value} is outside the vocabulary [0, {size}); "
                    f"choose an id the tokenizer uses for it or enlarge vocab_size"
                )

    @property
    def target_vocab_size(self) -> int:
        return self.vocab_size if self.tgt_vocab_size is None else self.tgt_vocab_size

    @property
    def d_head(self) -> int:
        return self.d_model // self.num_heads if self.head_dim is None else self.head_dim

    @classmethod
    def paper_base(cls, vocab_size: int = 37000, **overrides) -> TransformerConfig:
        """The 2017 base model: d_model 512, 8 heads, d_ff 2048, 6+6 layers, P_drop 0.1, post-LN."""
        defaults = dict(d_model=512, num_heads=8, d_ff=2048, num_encoder_layers=6, num_decoder_layers=6,
                        dropout=0.1, norm_first=False, positional="sinusoidal", tie_embeddings=True)  # fmt: skip
        return cls(vocab_size=vocab_size, **{**defaults, **overrides})

    @classmethod
    def paper_big(cls, vocab_size: int = 37000, **overrides) -> TransformerConfig:
        """The 2017 big model: d_model 1024, 16 heads, d_ff 4096, 6+6 layers, P_drop 0.3, post-LN."""
        defaults = dict(d_model=1024, num_heads=16, d_ff=4096, num_encoder_layers=6, num_decoder_layers=6,
                        dropout=0.3, norm_first=False, positional="sinusoidal", tie_embeddings=True)  # fmt: skip
        return cls(vocab_size=vocab_size, **{**defaults, **overrides})

    def replace(self, **changes) -> TransformerConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TransformerConfig:
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"TransformerConfig.from_dict(): unknown fields {unknown}")
        return cls(**data)


def _positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"TransformerConfig: {name} must be a positive int, got {value!r}")


def _fraction(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"TransformerConfig: {name} must be a float in [0, 1), got {value!r} "
                        f"({type(value).__name__})")  # fmt: skip
    if not 0.0 <= value < 1.0:
        raise ValueError(f"TransformerConfig: {name} must be a float in [0, 1), got {value!r}")


def _positive_float(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"TransformerConfig: {name} must be a positive float, got {value!r} ({type(value).__name__})")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"TransformerConfig: {name} must be a positive finite float, got {value!r}")
