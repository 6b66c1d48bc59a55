"""``torch.nn`` modules on ``(B, L, d_model)`` tensors: attention, positions, feed-forward.

From one :class:`TransformerConfig`: :class:`MultiHeadAttention` (with its :class:`KVCache`),
positional encodings, :class:`FeedForward`, encoder and decoder layers and stacks, the
encoder-decoder :class:`Transformer` and the decoder-only :class:`TransformerLM`.

Example:
    >>> import torch
    >>> from attnkit.nn import Transformer, TransformerConfig
    >>> config = TransformerConfig(vocab_size=10, d_model=16, num_heads=2, d_ff=32,
    ...                            num_encoder_layers=1, num_decoder_layers=1)
    >>> src, tgt = torch.tensor([[4, 5, 6]]), torch.tensor([[1, 7]])  # (B, S), (B, T) token ids
    >>> Transformer(config)(src, tgt).shape  # next-token logits (B, T, vocab_size)
    torch.Size([1, 2, 10])
"""

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
