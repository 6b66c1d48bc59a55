"""``attnkit lab prune``: which heads matter, and what removing them costs and saves.

::

    attnkit lab prune [--corpus numbers-dates|gettext|tsv:PATH] [--pair en-de] [--d-model 64] [--heads 8]
                      [--layers 2] [--steps 1500] [--step-fraction 0.1] [--out out/lab/pruning] [--json]

Trains a translation model, ranks its heads by gate-gradient importance (Michel, Levy &
Neubig, 2019), switches off 10% of the heads per step (least important first; also in a
random order, and encoder heads only), scores validation BLEU after each step, and
removes the heads for real (``MultiHeadAttention.prune_heads``) to time the smaller model.
Library code: :mod:`attnkit.lab.pruning`. This module imports torch only inside :func:`run`.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_arguments(parser)
    >>> parser.parse_args(["--heads", "4"]).heads
    4
"""

from __future__ import annotations

import argparse

from .._argtypes import positive_int

__all__ = ["add_arguments", "run", "DEFAULT_OUT"]

DEFAULT_OUT = "out/lab/pruning"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``attnkit lab prune`` (defaults: :class:`attnkit.lab.pruning.PruneConfig`)."""
    add = parser.add_argument
    add("--corpus", default=None, metavar="NAME", help="numbers-dates | gettext | tsv:PATH (default: numbers-dates)")
    add("--pair", default=None, metavar="SRC-TGT", help="language pair (default: en-de)")
    add("--d-model", type=positive_int, default=None, metavar="D", help="model width (default: 64)")
    add("--heads", type=positive_int, default=None, metavar="H", help="heads per attention module (default: 8)")
    add("--layers", type=positive_int, default=None, metavar="N", help="encoder = decoder layers (default: 2)")
    add("--steps", type=positive_int, default=None, metavar="N", help="training updates (default: 1500)")
    add("--seed", type=int, default=None, metavar="S", help="initialization and batch order (default: 0)")
    add("--corpus-size", type=positive_int, default=None, metavar="N", help="pairs to generate / keep")
    add("--importance-sentences", type=positive_int, default=None, metavar="N",
        help="training pairs the head importance is averaged over (default: 512)")  # fmt: skip
    add("--valid-sentences", type=positive_int, default=None, metavar="N",
        help="validation pairs decoded for BLEU (default: 300)")  # fmt: skip
    add("--step-fraction", type=float, default=None, metavar="F",
        help="share of the heads pruned per step (default: 0.1, as Michel et al.)")  # fmt: skip
    add("--out", default=DEFAULT_OUT, metavar="DIR", help="results.json, pruning.png, the prepared corpus")


def run(args: argparse.Namespace) -> int:
    """Run the experiment (:func:`attnkit.lab.pruning.run_pruning`), print the curve, write the plot."""
    import sys
    from pathlib import Path

    from ..console import print_json, stderr_console
    from .plots import plot_pruning
    from .pruning import PruneConfig, run_pruning
    from .render import print_pruning

    given = dict(corpus=args.corpus, pair=args.pair, d_model=args.d_model, num_heads=args.heads, layers=args.layers,
                 steps=args.steps, seed=args.seed, valid_sentences=args.valid_sentences, corpus_size=args.corpus_size,
                 importance_sentences=args.importance_sentences,
                 step_fraction=args.step_fraction, out_dir=args.out)  # fmt: skip
    if args.corpus and args.corpus != "numbers-dates" and args.pair is None:
        given["pair"] = "en-fr" if args.corpus == "gettext" else None
    config = PruneConfig(**{k: v for k, v in given.items() if v is not None})
    err = stderr_console()
    say = (lambda line: None) if args.json else (lambda line: err.print(f"lab prune: {line}"))
    doc = run_pruning(config, report=say, extra={"command": " ".join(["attnkit", *sys.argv[1:]])})
    title = f"{config.corpus} {config.pair or ''}: {doc['model']['heads_total']} heads"
    picture = plot_pruning(doc["curves"], Path(config.out_dir) / "pruning.png", title=title)
    if args.json:
        print_json({**doc, "files": [str(Path(config.out_dir) / "results.json"), str(picture)]})
    else:
        print_pruning(doc, picture)
    return 0
