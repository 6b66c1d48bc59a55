"""``attnkit translate demo``: a translation Transformer trained, scored and inspected in a few minutes.

1. generate the ``numbers-dates`` corpus (English -> German by default) and train a
   ``tiny`` model for a fixed number of optimizer steps (:data:`DEMO_STEPS`) on one CPU
   thread: the same seed and steps give the same weights on a quiet or a busy machine
   (a busy one only takes longer); ``minutes`` optionally caps the time, and a run it
   stops early says so (:attr:`TrainResult.under_trained`);
2. score it on the held-out test split (numbers and years never seen in training):
   BLEU, chrF and exact match, next to the copy-the-source baseline;
3. translate a few more held-out sentences with beam search;
4. draw the cross-attention alignment of one of them (a PNG, per layer and head).

Everything lands in ``out_dir`` (default ``out/translate-demo``), which is replaced if
it holds an earlier run (and refused if it holds anything else).

Example::

    >>> result = demo(steps=100, out_dir="/tmp/mt-demo", progress=False)  # doctest: +SKIP
    >>> result.alignment_png.suffix  # doctest: +SKIP
    '.png'
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .alignment import cross_attention, plot_alignment
from .evaluate import EvalReport, evaluate
from .model import Translator
from .run import RUN_NAME, test_pairs_for
from .train import Report, TrainResult, TranslationTrainConfig, train_translation

__all__ = ["DemoResult", "demo", "DEFAULT_DEMO_DIR"]

DEFAULT_DEMO_DIR = "out/translate-demo"
EVAL_PAIRS = 200  # held-out pairs scored (beam search is the slow part)
SAMPLES = 6  # further held-out sentences translated for show
#: optimizer updates of the demo. Calibrated on this 2-core machine (seed 0, en-de, tiny, 1 thread). Validation
#: exact match (EMA weights, greedy, 200 pairs) by step: 4.0% at 200, 66.5% at 400, 83.5% at 600, 90.0% at 800,
#: 95.5% at 1000, 97.0% at 1200, 98.5% at 1400 (the schedule does not depend on the total, so the first N steps
#: of a longer run are an N-step run; a calibration run and a demo run, at different loads, gave these same
#: figures). Test split, beam 4, 200 pairs: 95.0% at 1200 (no margin), 98.0% at 1400, hence 1400. Time: 6.2
#: steps per CPU-second on one thread (1370 steps in 222 s of CPU, evaluations included), so ~225 s of
#: training plus ~30 s of scoring and pictures: about 4 minutes on a quiet machine (under load: 731 s for 1200).
DEMO_STEPS = 1400
#: torch threads of the demo: the weights after N steps depend on the thread count (2 threads
#: round differently from 1), and one thread does not slow down on a busy machine the way two do
DEMO_THREADS = 1


@dataclass(frozen=True)
class DemoResult:
    """What the demo made, and where."""

    pair: str  # e.g. "en-de"
    train: TrainResult  # the training run (its directory holds the model)
    evaluation: EvalReport  # test split scores and the copy baseline
    samples: tuple[tuple[str, str, str], ...]  # (held-out source, translation, reference)
    alignment_png: Path  # cross-attention picture of one sample


def demo(
    steps: int = DEMO_STEPS, *, minutes: float | None = None, out_dir: str | Path = DEFAULT_DEMO_DIR,
    pair: str = "en-de", size: str = "tiny", threads: int = DEMO_THREADS, progress: bool = True,
    report: Report | None = None,
) -> DemoResult:  # fmt: skip
    """Train ``steps`` updates (at most ``minutes``), evaluate, translate samples, draw an alignment.

    See the module docstring; ``threads`` other than :data:`DEMO_THREADS` train a different
    (equally good) model.
    """
    out_dir = Path(out_dir)
    _clear_previous_run(out_dir)
    config = TranslationTrainConfig(corpus="numbers-dates", pair=pair, size=size, steps=steps, minutes=minutes,
                                    out_dir=str(out_dir), eval_every=200, checkpoint_every=1000,
                                    threads=threads)  # fmt: skip
    trained = train_translation(config, progress=progress, report=report)
    translator = Translator.load(out_dir)
    test = test_pairs_for(out_dir / "model", translator.info)
    evaluation = evaluate(translator.model, translator.tokenizer, test, beam_size=4, limit=EVAL_PAIRS)
    shown_pairs = test[EVAL_PAIRS : EVAL_PAIRS + SAMPLES] or test[-SAMPLES:]  # not among the scored examples
    sources = [source for source, _ in shown_pairs]
    samples = tuple(zip(sources, translator.translate(sources), [target for _, target in shown_pairs], strict=True))
    shown = _pick_for_picture([source for source, _ in test[:200]])
    alignment = cross_attention(translator.model, translator.tokenizer, shown)
    picture = plot_alignment(alignment, out_dir / "alignment.png")
    return DemoResult(translator.pair, trained, evaluation, samples, picture)


def _clear_previous_run(out_dir: Path) -> None:
    if not out_dir.exists():
        return
    if (out_dir / RUN_NAME).is_file():
        shutil.rmtree(out_dir)  # an earlier demo (or training) run: start afresh
        return
    if out_dir.is_file() or any(out_dir.iterdir()):
        raise FileExistsError(f"demo(): out_dir {str(out_dir)!r} exists and is not a translation run; "
                              "choose another directory")  # fmt: skip


def _pick_for_picture(sources: list[str]) -> str:
    """A date with its weekday if there is one ("Monday, June 20, 2005" -> "Montag, 20. Juni 2005"
    reorders day and month: a telling alignment), else the sentence with the most words."""
    import re

    dated = [s for s in sources if re.match(r"[A-Z][a-z]+day, ", s)]
    return dated[0] if dated else max(sources, key=lambda s: (len(s.split()), -sources.index(s)))
