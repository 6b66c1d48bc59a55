"""attnkit: self-attention done right.

``softmax(QK^T / sqrt(d_k)) V`` as exact, fast, memory-efficient code, and the
Transformer built from it:

* :func:`attention` (and :func:`explain`): the formula on ``(B, H, L, D)`` tensors,
  on the fastest exact backend; :mod:`masks`: what may attend to what;
* :class:`MultiHeadAttention`, :class:`FeedForward`, :class:`SinusoidalPositionalEncoding`,
  :class:`RotaryEmbedding`: the building blocks on ``(B, L, d_model)`` tensors;
* :class:`Transformer` (encoder-decoder, the 2017 paper), :class:`TransformerLM`
  (decoder-only), both built from a :class:`TransformerConfig`.

Names are imported on first use (PEP 562), so ``import attnkit`` and the
``attnkit --help`` command line do not import torch until a name needs it.

Example:
    >>> import torch
    >>> from attnkit import MultiHeadAttention, masks
    >>> mha = MultiHeadAttention(8, 512, 64, 64, 0.1)
    >>> mha(torch.randn(2, 10, 512), masks.causal()).shape
    torch.Size([2, 10, 512])
    >>> from attnkit import Transformer, TransformerConfig
    >>> config = TransformerConfig(vocab_size=50, d_model=32, num_heads=4, d_ff=64, num_encoder_layers=1,
    ...                            num_decoder_layers=1)
    >>> Transformer.from_config(config)(torch.randint(0, 50, (2, 7)), torch.randint(0, 50, (2, 5))).shape
    torch.Size([2, 5, 50])
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the submodule that defines it (imported on first access)
_EXPORTS: dict[str, str] = {
    "attention": ".functional",
    "explain": ".functional",
    "MultiHeadAttention": ".nn",
    "FeedForward": ".nn",
    "RotaryEmbedding": ".nn",
    "SinusoidalPositionalEncoding": ".nn",
    "Transformer": ".nn",
    "TransformerLM": ".nn",
    "TransformerConfig": ".nn",
}
_SUBMODULES = ("functional", "masks")

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
    "Transformer",
    "TransformerLM",
    "TransformerConfig",
]

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from . import functional, masks
    from .functional import attention, explain
    from .nn import (
        FeedForward,
        MultiHeadAttention,
        RotaryEmbedding,
        SinusoidalPositionalEncoding,
        Transformer,
        TransformerConfig,
        TransformerLM,
    )


def __getattr__(name: str) -> Any:
    """Import a public name on first access and cache it in the module (PEP 562)."""
    if name in _EXPORTS:
        value: Any = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    elif name in _SUBMODULES or (not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}")):
        value = importlib.import_module(f".{name}", __name__)  # attnkit.nn etc., as before the lazy imports
    else:
        raise AttributeError(f"module 'attnkit' has no attribute {name!r}; public names: {', '.join(__all__)}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
