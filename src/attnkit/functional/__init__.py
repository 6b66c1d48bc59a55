"""Pure attention functions on ``(B, H, L, D)`` tensors.

``attention()`` validates its inputs once and runs the fastest exact backend;
``explain()`` says which and why. The reference backend is the spec.
"""

from .bias import Alibi, Bias, TensorBias, alibi_slopes
from .dispatch import AUTO_ORDER, BACKENDS, Backend, Explanation, Problem, attention, explain
from .reference import reference_attention
from .tiled import attention_weights, tiled_attention

__all__ = [
    "attention",
    "explain",
    "Explanation",
    "Problem",
    "Backend",
    "BACKENDS",
    "AUTO_ORDER",
    "reference_attention",
    "tiled_attention",
    "attention_weights",
    "Alibi",
    "alibi_slopes",
    "Bias",
    "TensorBias",
]
