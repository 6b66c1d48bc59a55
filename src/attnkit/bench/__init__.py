"""``attnkit bench``: attention implementations measured against their peers.

A *case* is one implementation on one mask, sequence length and pass
(forward, or forward + backward). Each case runs in its own worker process
(:mod:`attnkit.bench.worker`) so its peak memory is its own; results are
reported with ratios to torch SDPA, useful GFLOP/s, the fraction of this
machine's measured matmul rate and peak memory (:mod:`attnkit.bench.report`).

Modules, in dependency order:

* :mod:`~attnkit.bench.cases` — :class:`Case`, the masks, FLOP counting;
* :mod:`~attnkit.bench.impls` — the implementations (attnkit backends, SDPA,
  naive, ``nn.MultiheadAttention``, FlexAttention) and their memory estimates;
* :mod:`~attnkit.bench.measure` — clocks and RSS gauges;
* :mod:`~attnkit.bench.worker` — one measurement in a fresh process;
* :mod:`~attnkit.bench.overhead` — the dispatch-overhead suite;
* :mod:`~attnkit.bench.runner` — plan, run and derive;
* :mod:`~attnkit.bench.report` — table, JSON, markdown, PNG;
* :mod:`~attnkit.bench.command` — the command line (``add_arguments``, ``run``).

Example:
    >>> from attnkit.bench import Case, useful_flops
    >>> useful_flops(Case("sdpa", "none", L=1024, pass_="fwdbwd", H=8, D=64)) / 1e9
    7.516192768
"""

from .._lazy import lazy_exports

__all__ = [
    "Case",
    "MASKS",
    "PASSES",
    "pairs",
    "useful_flops",
    "Impl",
    "implementations",
    "plan",
    "run_cases",
    "run_worker",
    "derive",
]

#: public name -> the module that defines it; imported on first use, so `attnkit ... --help` needs no torch
__getattr__, __dir__ = lazy_exports(__name__, {
    "Case": ".cases",
    "MASKS": ".cases",
    "PASSES": ".cases",
    "pairs": ".cases",
    "useful_flops": ".cases",
    "Impl": ".impls",
    "implementations": ".impls",
    "plan": ".runner",
    "run_cases": ".runner",
    "run_worker": ".runner",
    "derive": ".runner",
})
