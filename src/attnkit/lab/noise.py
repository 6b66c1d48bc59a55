"""``attnkit lab noise``: is self-attention sensitive to noise? Measured on a synthetic task and on translation.

::

    attnkit lab noise [--part synthetic|translation|all] [--out out/lab/noise] [--resume] [--json]
                      [--fractions 0,0.1,0.2,0.3,0.4,0.5] [--seeds 2] [--steps 1000]            # synthetic
                      [--corpora numbers-dates,gettext] [--train-noise 0,0.1] [--translation-seeds 1]
                      [--translation-steps N] [--test-sentences 500] [--noise-seeds 3]    # translation

* ``synthetic`` (:mod:`attnkit.lab.noise_synthetic`): associative recall with 0-50%
  distractor tokens, a 2-layer Transformer vs an LSTM at the same parameter count and
  number of updates; accuracy, and where the Transformer's attention goes (on
  distractors, on the answer) with its entropy.
* ``translation`` (:mod:`attnkit.lab.noise_translation`): translation models trained
  clean and with ``--noise p``, measured under misspellings and case changes by the
  robustness and consistency of Niu et al. (ACL 2020).

Every finished run is appended to ``OUT/results.json`` (atomically), so ``--resume``
continues an interrupted experiment; at the end ``OUT/report.md`` and the plots
(``synthetic.png``, ``translation.png``) are written from all results so far.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["--part", "synthetic", "--fractions", "0,0.5"])
    >>> args.part, args.fractions
    ('synthetic', (0.0, 0.5))
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .._argtypes import names, positive_int

__all__ = ["add_arguments", "run", "PARTS", "DEFAULT_OUT"]

PARTS = ("synthetic", "translation", "all")
DEFAULT_OUT = "out/lab/noise"


def _floats(text: str) -> tuple[float, ...]:
    """``"0,0.1"`` -> ``(0.0, 0.1)``, each in [0, 1]."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0,0.1,0.2, got {text!r}") from None
    if any(not 0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers from 0 to 1, got {text!r}")
    return values



def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``attnkit lab noise``."""
    add = parser.add_argument
    add("--part", default="all", choices=PARTS, help="which experiment (default: all)")
    add("--out", default=DEFAULT_OUT, metavar="DIR", help=f"results.json, report.md, plots, models (default: "
        f"{DEFAULT_OUT})")  # fmt: skip
    add("--resume", action="store_true", help="keep the runs already in OUT/results.json and do the rest")
    synthetic = parser.add_argument_group("synthetic part")
    synthetic.add_argument("--fractions", type=_floats, default=None, metavar="F,F,...",
                           help="distractor shares of each sequence, each <= 0.5 (default: 0,0.1,0.2,0.3,0.4,0.5)")
    synthetic.add_argument("--seeds", type=positive_int, default=None, metavar="N", help="seeds (default: 2)")
    synthetic.add_argument("--steps", type=positive_int, default=None, metavar="N",
                           help="updates per model (default: 1000)")  # fmt: skip
    translation = parser.add_argument_group("translation part")
    translation.add_argument("--corpora", type=names, default=None, metavar="NAME,...",
                             help="numbers-dates and/or gettext (default: both)")  # fmt: skip
    translation.add_argument("--train-noise", type=_floats, default=None, metavar="P,P,...",
                             help="--noise of the trained models, 0 = clean (default: 0,0.1)")
    translation.add_argument("--translation-seeds", type=positive_int, default=None, metavar="N",
                             help="training seeds per model (default: 1)")  # fmt: skip
    translation.add_argument("--translation-steps", type=positive_int, default=None, metavar="N",
                             help="updates per model (default: numbers-dates 1400, gettext 2400)")
    translation.add_argument("--test-sentences", type=positive_int, default=None, metavar="N",
                             help="test pairs translated per perturbation (default: 500)")
    translation.add_argument("--noise-seeds", type=positive_int, default=None, metavar="N",
                             help="draws of the test noise per perturbation (default: 3)")


def _configs(args: argparse.Namespace):
    from .noise_synthetic import SyntheticNoiseConfig
    from .noise_translation import TranslationNoiseConfig

    synthetic = {"fractions": args.fractions, "seeds": args.seeds, "steps": args.steps}
    translation = {"corpora": args.corpora, "train_noise": args.train_noise, "seeds": args.translation_seeds,
                   "steps": args.translation_steps, "test_sentences": args.test_sentences,
                   "noise_seeds": args.noise_seeds}  # fmt: skip
    return (SyntheticNoiseConfig(**{k: v for k, v in synthetic.items() if v is not None}),
            TranslationNoiseConfig(**{k: v for k, v in translation.items() if v is not None}))  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Run the chosen parts, then write the report and plots (library: :mod:`attnkit.lab.noise_report`)."""
    from .noise_report import load_results, save_results, write_report
    from .noise_synthetic import run_synthetic
    from .noise_translation import run_translation

    synthetic, translation = _configs(args)
    out = Path(args.out)
    path = out / "results.json"
    if path.exists() and not args.resume:
        raise FileExistsError(f"--out {str(out)!r} already holds results.json; add --resume to continue it, or "
                              "choose another --out")  # fmt: skip
    doc = load_results(path) if args.resume else {"rows": []}
    doc["configs"] = {**doc.get("configs", {}), **_config_docs(args.part, synthetic, translation)}
    doc["commands"] = [*doc.get("commands", []), _command_line(args)]  # every run, in order
    rows: list[dict] = doc["rows"]

    def save(_rows: list[dict]) -> None:
        save_results(path, doc)

    show = _Progress(enabled=not args.json)
    if args.part in ("synthetic", "all"):
        run_synthetic(synthetic, rows, save=save, progress=show.part("synthetic"))
    if args.part in ("translation", "all"):
        run_translation(translation, out, rows, save=save, progress=show.part("translation"))
    save(rows)
    written = write_report(out, doc)
    if args.json:
        print(json.dumps({"results": str(path), **{k: str(v) for k, v in written.items()}, "rows": len(rows)},
                         indent=2))  # fmt: skip
    else:
        print(f"results: {path}\n" + "\n".join(f"{k}: {v}" for k, v in written.items()))
    return 0


#: options of this action, in the order a command line shows them
_OPTIONS = ("part", "fractions", "seeds", "steps", "corpora", "train_noise", "translation_seeds", "translation_steps",
            "test_sentences", "noise_seeds", "threads", "out", "resume")  # fmt: skip


def _command_line(args: argparse.Namespace) -> str:
    """The options given (or defaulted) as one ``attnkit lab noise ...`` line, for the report.

    Example:
        >>> _command_line(argparse.Namespace(part="all", fractions=(0.0, 0.5), seeds=None, out="o", resume=True))
        'attnkit lab noise --part all --fractions 0,0.5 --out o --resume'
    """
    words = ["attnkit", "lab", "noise"]
    for name in _OPTIONS:
        value = getattr(args, name, None)
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            words.append(flag)
        elif isinstance(value, tuple):
            words += [flag, ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)]
        else:
            words += [flag, str(value)]
    return " ".join(words)


def _config_docs(part: str, synthetic, translation) -> dict:
    import dataclasses

    docs = {"synthetic": dataclasses.asdict(synthetic), "translation": dataclasses.asdict(translation)}
    return {name: doc for name, doc in docs.items() if part in (name, "all")}


class _Progress:
    """One line per step on stderr with the share done and an ETA from the time so far."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def part(self, name: str):
        started, first = time.monotonic(), []  # first: the share done when this run began (--resume skips some)

        def report(what: str, done: float) -> None:
            if not self.enabled:
                return
            first.append(done)
            elapsed, progressed = time.monotonic() - started, done - first[0]
            eta = f", ETA {elapsed / progressed * (1 - done) / 60:.1f} min" if progressed > 0 and done < 1 else ""
            print(f"[{name} {done:4.0%}{eta}] {what}", file=sys.stderr, flush=True)

        return report
