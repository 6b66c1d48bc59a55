"""Inspecting attention: per-layer, per-head weights of MiniLM or SmolLM2 on a text (``attnkit inspect``).

* :func:`inspect` — ``inspect(text, model="minilm", out=None) -> Inspection``: weights
  ``(H, L, L)`` per layer, mean attention distance and entropy per head, grid PNGs;
* :func:`explore_text` / :func:`explore_model` — the interactive HTML explorer page
  (``attnkit inspect TEXT --html OUT.html``) for MiniLM, SmolLM2 (with generated tokens)
  or any attnkit ``Transformer`` / ``TransformerLM``;
* :mod:`~attnkit.apps.inspect.capture` — forward hooks that capture queries and keys
  and recompute the weights from the tiled backend's log-sum-exp.

Example:
    >>> from attnkit.apps.inspect import MODELS, inspect
    >>> MODELS  # what inspect() can load
    ('minilm', 'smollm2')
    >>> inspect("Attention is all you need", model="minilm", layers=[0]).layers[0].weights.shape[0]
    12
"""

from ..._lazy import lazy_exports

__all__ = [
    "inspect",
    "Inspection",
    "LayerInspection",
    "MODELS",
    "capture",
    "layer_weights",
    "LayerWeights",
    "weights_method",
    "explore_text",
    "explore_model",
]

#: public name -> the module that defines it; imported on first use, so `attnkit ... --help` needs no torch
__getattr__, __dir__ = lazy_exports(__name__, {
    "inspect": ".core",
    "Inspection": ".core",
    "LayerInspection": ".core",
    "MODELS": ".core",
    "capture": ".capture",
    "layer_weights": ".capture",
    "LayerWeights": ".capture",
    "weights_method": ".capture",
    "explore_text": ".explore",
    "explore_model": ".explore",
})
