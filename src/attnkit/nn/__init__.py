"""``torch.nn`` modules on ``(B, L, d_model)`` tensors: attention, positions, feed-forward."""

from ._torch_interop import masks_from_torch
from .attention import KVCache, MultiHeadAttention
from .config import TransformerConfig
from .feedforward import FeedForward
from .layout import decode_layout
from .positional import LearnedPositionalEmbedding, RotaryEmbedding, SinusoidalPositionalEncoding
from .transformer import (
    Decoder,
    DecoderCache,
    DecoderLayer,
    Encoder,
    EncoderLayer,
    Transformer,
    TransformerLM,
)

__all__ = [
    "decode_layout",
    "MultiHeadAttention",
    "KVCache",
    "masks_from_torch",
    "FeedForward",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "TransformerConfig",
    "EncoderLayer",
    "DecoderLayer",
    "Encoder",
    "Decoder",
    "DecoderCache",
    "Transformer",
    "TransformerLM",
]
