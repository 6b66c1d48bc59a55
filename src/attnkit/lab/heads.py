"""``attnkit lab heads``: how to choose num_heads and d_model, measured on a translation corpus.

::

    attnkit lab heads [--corpus gettext|numbers-dates|tsv:PATH] [--pair en-fr]
                      [--sweep heads|head-dim|shape|all] [--seeds 3] [--steps N | --minutes M]
                      [--d-model 64] [--layers 2] [--out out/lab/heads] [--resume] [--json]

Every point of a sweep is trained with the same number of updates on the same batches
(the same tokens) for each of ``--seeds`` seeds, then scored on the validation split
(BLEU, chrF, loss) and timed (training and decoding tokens/s). ``--minutes M`` measures
the cost of each configuration first and sets the number of updates so the whole sweep
fits in M minutes. The results go to ``OUT/results.json`` after every run, so
``--resume`` continues an interrupted sweep; the end prints the quality-vs-cost
frontier and the recommended configuration.

Library code: :mod:`attnkit.lab.sweep`. This module imports torch only inside :func:`run`.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_arguments(parser)
    >>> parser.parse_args(["--sweep", "heads", "--steps", "300"]).sweep
    'heads'
"""

from __future__ import annotations

import argparse

from .._argtypes import positive_float, positive_int

__all__ = ["add_arguments", "run", "SWEEPS", "DEFAULT_OUT"]

#: the three sweeps of the issue (A, B, C of "Attention Is All You Need", table 3); kept equal to sweep.SWEEPS
SWEEPS = ("heads", "head-dim", "shape")
DEFAULT_OUT = "out/lab/heads"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``attnkit lab heads``."""
    add = parser.add_argument
    add("--corpus", default="gettext", metavar="NAME", help="gettext | numbers-dates | tsv:PATH")
    add("--pair", default=None, metavar="SRC-TGT", help="language pair (default: the corpus's, en-fr for gettext)")
    add("--sweep", default="all", choices=(*SWEEPS, "all"),
        help="heads: num_heads at fixed d_model; head-dim: d_k reduced at fixed heads; "
             "shape: d_model and layers at fixed head_dim")  # fmt: skip
    add("--seeds", type=positive_int, default=3, metavar="N", help="seeds per point (the spread is the noise floor)")
    add("--steps", type=positive_int, default=None, metavar="N", help="updates per run (default: 300)")
    add("--minutes", type=positive_float, default=None, metavar="M",
        help="fit the whole sweep into M minutes (measures each configuration, then sets --steps)")
    add("--d-model", type=positive_int, default=None, metavar="D", help="d_model of the heads/head-dim sweeps "
        "(default: 64)")  # fmt: skip
    add("--layers", type=positive_int, default=None, metavar="N", help="encoder = decoder layers (default: 2)")
    add("--max-tokens", type=positive_int, default=None, metavar="N", help="padded tokens per batch (default: 1024)")
    add("--corpus-size", type=positive_int, default=None, metavar="N", help="pairs to keep / generate")
    add("--valid-sentences", type=positive_int, default=None, metavar="N",
        help="validation pairs decoded for BLEU/chrF (default: 200)")  # fmt: skip
    add("--out", default=DEFAULT_OUT, metavar="DIR", help="results.json, plots and the prepared corpus")
    add("--resume", action="store_true", help="keep the runs already in OUT/results.json and do the rest")


def run(args: argparse.Namespace) -> int:
    """Run the sweep (library: :func:`attnkit.lab.sweep.run_sweep`), print the frontier, write the results."""
    raise NotImplementedError("attnkit lab heads: the sweep is being written on branch `heads`")
