"""Pure attention functions on ``(B, H, L, D)`` tensors.

``attention()`` validates its inputs once and runs the fastest exact backend;
``explain()`` says which and why. The reference backend is the spec. The backend
registry (``BACKENDS``, ``AUTO_ORDER``, ``Backend``, ``Problem``) lives in
:mod:`attnkit.functional.dispatch`.

Example:
    >>> import torch
    >>> from attnkit import functional, masks
    >>> q = k = v = torch.randn(1, 2, 6, 8)
    >>> out = functional.attention(q, k, v, masks.causal())
    >>> torch.allclose(out, sdpa_attention(q, k, v, masks.causal()), atol=1e-6)
    True
    >>> e = explain(q, k, v, return_weights=True)
    >>> isinstance(e, Explanation), e.backend
    (True, 'reference')
    >>> bias = TensorBias(torch.zeros(6, 6))  # a Bias: added to the scores
    >>> isinstance(bias, Bias) and torch.allclose(attention(q, k, v, bias=bias), attention(q, k, v))
    True
"""

from .bias import Alibi, Bias, TensorBias, alibi_slopes
from .dispatch import Explanation, attention, explain
from .reference import reference_attention
from .sdpa import sdpa_attention
from .tiled import attention_weights, tiled_attention

__all__ = [
    "attention",
    "explain",
    "Explanation",
    "reference_attention",
    "tiled_attention",
    "sdpa_attention",
    "attention_weights",
    "Alibi",
    "alibi_slopes",
    "Bias",
    "TensorBias",
]
