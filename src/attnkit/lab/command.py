"""``attnkit lab``: the FAQ as experiments — sweeps and measurements a user can rerun on their own data.

::

    attnkit lab heads  [--corpus gettext|numbers-dates|tsv:PATH] [--sweep heads|head-dim|shape|all]
                       [--seeds 3] [--steps N | --minutes M] [--out DIR] [--resume]
    attnkit lab prune  [--model DIR | --corpus ... --steps N] [--out DIR]

Each action lives in its own module, registered with one line in :data:`ACTION_MODULES`
(``name -> (module, one line of help)``). The module defines::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...   # the action's own options
    def run(args: argparse.Namespace) -> int: ...                      # the exit code

and imports torch (and its library code) only inside ``run``, so ``attnkit lab ACTION --help``
starts without torch. This module adds ``--json`` and ``--threads`` to every action and
sets the torch threads before the action's ``run``.

Example:
    >>> sorted(ACTIONS) == sorted(ACTION_MODULES)
    True
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="attnkit lab heads")
    >>> add_arguments(parser, "heads")
    >>> args = parser.parse_args(["--seeds", "2", "--json"])
    >>> args.seeds, args.json, args.threads
    (2, True, None)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

__all__ = ["ACTIONS", "ACTION_MODULES", "add_arguments", "run"]

#: action -> (module defining add_arguments(parser) and run(args), one line of help); one line per action
ACTION_MODULES: dict[str, tuple[str, str]] = {
    "heads": ("attnkit.lab.heads", "equal-budget sweeps of num_heads, d_k, d_model and layers on a translation "
              "corpus: quality vs cost, with the seed spread"),
    "prune": ("attnkit.lab.prune", "which heads matter: gate-gradient head importance (Michel et al. 2019), "
              "BLEU vs fraction of heads pruned, measured speed-up"),
    "long-range": ("attnkit.lab.long_range", "accuracy vs dependency distance: Transformer (1-2 layers, sliding "
                   "window) vs LSTM on recall and ListOps; pretrained attention distances"),
    "noise": ("attnkit.lab.noise", "accuracy through distractor tokens (attention vs LSTM) and translation "
              "robustness to misspellings and case changes, clean vs --noise training"),
}  # fmt: skip
#: action -> one line of help (what attnkit.cli reads)
ACTIONS: dict[str, str] = {name: help_line for name, (_, help_line) in ACTION_MODULES.items()}


def _module(action: str) -> ModuleType:
    return importlib.import_module(ACTION_MODULES[action][0])


def add_arguments(parser: argparse.ArgumentParser, action: str | None = None) -> None:
    """Declare the options of ``attnkit lab ACTION`` (the action's own, then ``--json`` and ``--threads``)."""
    if action is not None:
        _module(action).add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch threads (default: torch's choice; 1 on a busy machine)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Run the action named by ``args.action`` (without one: print the list of actions, exit status 2)."""
    if args.action is None:
        args.parser.print_help(sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return int(_module(args.action).run(args) or 0)
