"""``attnkit cost``: what a Transformer configuration costs — parameters, FLOPs, memory — and the measurement.

Modules, in dependency order:

* :mod:`~attnkit.cost.architecture` — :class:`Architecture`: a ``TransformerConfig``, the model kind
  built from it, and the presets ``paper_base``, ``paper_big``, ``minilm``, ``smollm2``;
* :mod:`~attnkit.cost.calculator` — parameter counts per component, FLOPs per token (projections
  ∝ d², scores ∝ L·d, logits ∝ d·V), the crossover length, memory (weights, Adam, activations
  materialized vs tiled, KV cache);
* :mod:`~attnkit.cost.report` — :func:`estimate`, the whole calculation as JSON-ready data, and its tables;
* :mod:`~attnkit.cost.measure` — a training step and a decoding step timed on this machine;
* :mod:`~attnkit.cost.command` — the command line (``add_arguments``, ``run``).

Example:
    >>> from attnkit.cost import PRESETS, Architecture, parameter_count, crossover_length
    >>> PRESETS
    ('paper_base', 'paper_big', 'minilm', 'smollm2')
    >>> base = Architecture.preset("paper_base")
    >>> parameter_count(base), round(crossover_length(base))
    (63082496, 2389)
"""

from .._lazy import lazy_exports

__all__ = [
    "Architecture",
    "PRESETS",
    "parameter_counts",
    "parameter_count",
    "Flops",
    "forward_flops_per_token",
    "training_flops_per_token",
    "decode_flops",
    "decode_bytes",
    "crossover_length",
    "Memory",
    "memory",
    "activation_bytes_per_layer",
    "kv_cache_bytes_per_token",
    "estimate",
    "build_model",
    "measure_steps",
]

#: public name -> the module that defines it; imported on first use, so `attnkit cost --help` needs no torch
__getattr__, __dir__ = lazy_exports(__name__, {
    "Architecture": ".architecture",
    "PRESETS": ".architecture",
    **dict.fromkeys(["parameter_counts", "parameter_count", "Flops", "forward_flops_per_token",
                     "training_flops_per_token", "decode_flops", "decode_bytes", "crossover_length", "Memory", "memory",
                     "activation_bytes_per_layer", "kv_cache_bytes_per_token"], ".calculator"),
    "estimate": ".report",
    "build_model": ".measure",
    "measure_steps": ".measure",
})
