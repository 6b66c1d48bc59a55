"""The FAQ as experiments: sweeps and measurements behind ``attnkit lab``.

========================  ==========================================================
``attnkit lab heads``     equal-budget sweeps of num_heads, d_k, d_model and layers
                          (:mod:`attnkit.lab.heads`)
========================  ==========================================================

Each action of ``attnkit lab`` is a module registered in
:data:`attnkit.lab.command.ACTION_MODULES`.

Example:
    >>> from attnkit.lab.command import ACTIONS
    >>> "heads" in ACTIONS
    True
"""

from .._lazy import lazy_exports

__all__: list[str] = []

__getattr__, __dir__ = lazy_exports(__name__, {})
