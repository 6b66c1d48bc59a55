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

    The grid axes, and an implementation of one's own (``build`` returns the timed call):

    >>> from attnkit.bench import MASKS, PASSES, Impl
    >>> sorted(MASKS), PASSES
    (['causal', 'document', 'none', 'padding', 'sliding'], ('fwd', 'fwdbwd'))
    >>> MASKS["causal"].summary
    'query i sees keys j <= i'
    >>> double = Impl("double", "2 q (not attention)", build=lambda case, x: lambda: 2 * x.q,
    ...               memory=lambda case: (0, "no extra memory"))
    >>> case = Case("double", "causal", L=64, pass_="fwd", H=2, D=8)
    >>> double.kind, double.why_not(case)
    ('function', None)

    Running: a case planned with a skip reason is reported, not run; a worker request
    runs in a fresh process and any failure comes back as a dict:

    >>> from attnkit.bench import derive, run_cases, run_worker
    >>> [(r["impl"], r["status"], r["reason"]) for r in run_cases([(case, "a demo")])]
    [('double', 'skipped', 'a demo')]
    >>> reply = run_worker({"mode": "nonsense"})
    >>> reply["status"], reply["error"]
    ('error', "ValueError: worker: mode must be 'case', 'matmul', 'overhead' or 'models', got 'nonsense'")

    ``derive`` adds FLOP rates and the ratio to torch SDPA (the baseline) to measured rows:

    >>> sdpa = dict(Case("sdpa", "causal", L=64, pass_="fwd", H=2, D=8).to_json(), status="ok", median_ms=2.0)
    >>> naive = dict(Case("naive", "causal", L=64, pass_="fwd", H=2, D=8).to_json(), status="ok", median_ms=4.0)
    >>> [(r["impl"], r["flops"], r["ratio_sdpa"]) for r in derive([sdpa, naive], matmul_gflops=100.0)]
    [('sdpa', 133120.0, 1.0), ('naive', 133120.0, 2.0)]
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
