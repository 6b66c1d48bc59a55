"""attnkit: self-attention done right.

``softmax(QK^T / sqrt(d_k)) V`` as exact, fast, memory-efficient code, and the
Transformer built from it.

Example:
    >>> import torch
    >>> from attnkit import MultiHeadAttention, masks
    >>> mha = MultiHeadAttention(8, 512, 64, 64, 0.1)
    >>> mha(torch.randn(2, 10, 512), masks.causal()).shape
    torch.Size([2, 10, 512])
"""

from . import functional, masks
from .functional import attention, explain
from .nn import FeedForward, MultiHeadAttention, RotaryEmbedding, SinusoidalPositionalEncoding

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "attention",
    "explain",
    "functional",
    "masks",
    "MultiHeadAttention",
    "FeedForward",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
]
