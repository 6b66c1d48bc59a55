"""The FAQ as experiments: sweeps and measurements behind ``attnkit lab``.

==========================  ==========================================================
``attnkit lab heads``       equal-budget sweeps of num_heads, d_k, d_model and layers on
                            a translation corpus (:mod:`.sweep`, :mod:`.summary`)
``attnkit lab prune``       head importance through per-head gates and pruning by it
                            (:mod:`.importance`, :mod:`.pruning`)
``attnkit lab long-range``  accuracy vs dependency distance, Transformer vs LSTM
                            (:mod:`.long_range`; tasks in :mod:`.tasks`, models in
                            :mod:`.models`)
``attnkit lab noise``       accuracy through distractor tokens, translation robustness
                            to misspellings and case changes (:mod:`.noise`)
==========================  ==========================================================

Each action of ``attnkit lab`` is a module registered in
:data:`attnkit.lab.command.ACTION_MODULES`.

Example:
    >>> from attnkit.lab import SweepConfig, sweep_points, summarize, PruneConfig
    >>> [p.label for p in sweep_points("head-dim", d_model=64, num_heads=4)]
    ['d_k=16', 'd_k=8', 'd_k=4']
    >>> config = SweepConfig(corpus="numbers-dates", pair="en-de", sweeps=("heads",), seeds=3, steps=300)
    >>> len(config.points()) * config.seeds  # runs of the sweep; run_sweep(config) trains them (minutes)
    18
    >>> summarize({"config": {"sweeps": ["heads"]}, "runs": []})["recommended"] is None
    True
    >>> PruneConfig().step_fraction  # Michel et al.: 10% of the heads per step, ranked by head_importance
    0.1
    >>> from attnkit.lab import head_importance, pruning_order, run_pruning, run_sweep
"""

from .._lazy import lazy_exports

__all__ = ["SweepConfig", "sweep_points", "run_sweep", "summarize", "head_importance", "pruning_order", "PruneConfig",
           "run_pruning"]  # fmt: skip

__getattr__, __dir__ = lazy_exports(__name__, {
    "SweepConfig": ".sweep",
    "sweep_points": ".sweep",
    "run_sweep": ".sweep",
    "summarize": ".summary",
    "head_importance": ".importance",
    "pruning_order": ".importance",
    "PruneConfig": ".pruning",
    "run_pruning": ".pruning",
})
