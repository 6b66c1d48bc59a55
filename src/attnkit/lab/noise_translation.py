"""The translation half of ``attnkit lab noise``: how much input noise costs a translation Transformer, and the remedy.

For each corpus and each training noise level (0 = clean training; ``p`` = ``attnkit
translate train --noise p``), a model is trained (or reused, or resumed) under
``OUT/models/``, then translated on its test split clean and under each perturbation of
:data:`TEST_PERTURBATIONS` — misspellings with ``p`` in {0.05, 0.1, 0.2} per word and case
changes with ``q = 0.5`` per sentence, the settings of Niu et al. (ACL 2020) — with
``noise_seeds`` different draws of the noise. Each (model, perturbation, draw) is a row
of :func:`robustness`'s measures: BLEU on clean and on perturbed input, robustness (their
ratio) and consistency (the harmonic mean of BLEU between the two translations both ways).

Rows are appended to ``OUT/results.json`` (atomically) as they come, so ``--resume``
skips what is done; an interrupted training resumes from its checkpoint.

Example:
    >>> config = TranslationNoiseConfig(corpora=("numbers-dates",), train_noise=(0.0, 0.1), seeds=1)
    >>> [job.name for job in translation_jobs(config)]
    ['numbers-dates-en-de-noise0-seed0', 'numbers-dates-en-de-noise0.1-seed0']
    >>> [p.name for p in TEST_PERTURBATIONS]
    ['misspell 0.05', 'misspell 0.1', 'misspell 0.2', 'case 0.5']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..apps.translate.noise import Perturbation

__all__ = ["TranslationNoiseConfig", "TranslationJob", "translation_jobs", "run_translation", "TEST_PERTURBATIONS",
           "DEFAULT_PAIRS"]  # fmt: skip

#: the perturbations every model is tested under (Niu et al. 2020 use misspell 0.1 and case 0.5)
TEST_PERTURBATIONS = (Perturbation(misspell=0.05), Perturbation(misspell=0.1), Perturbation(misspell=0.2),
                      Perturbation(case=0.5))  # fmt: skip
#: corpus -> language pair (gettext: en-fr has the most messages on these machines)
DEFAULT_PAIRS = {"numbers-dates": "en-de", "gettext": "en-fr"}
#: corpus -> optimizer updates of the tiny model (numbers-dates: ~99 valid BLEU at 1400; gettext learns slower and
#: needs more: 2400 fit a shared 2-core machine in ~10 min and still leave the model under-trained)
DEFAULT_STEPS = {"numbers-dates": 1400, "gettext": 2400}


@dataclass(frozen=True)
class TranslationNoiseConfig:
    """What the translation part trains and measures."""

    corpora: tuple[str, ...] = ("numbers-dates", "gettext")  # translate corpora (pairs from DEFAULT_PAIRS)
    train_noise: tuple[float, ...] = (0.0, 0.1)  # --noise of each trained model; 0 = clean training
    seeds: int = 1  # training seeds per (corpus, train noise)
    size: str = "tiny"  # model preset
    steps: int | None = None  # updates per model; None = DEFAULT_STEPS of the corpus
    test_sentences: int = 500  # test pairs translated per perturbation
    noise_seeds: int = 3  # draws of the test noise per perturbation (the spread of the measures)
    beam_size: int = 1  # 1 = greedy decoding
    corpus_size: int | None = None  # pairs generated / kept per corpus; None = the corpus default (tests: small)

    def __post_init__(self) -> None:
        unknown = [c for c in self.corpora if c not in DEFAULT_PAIRS]
        if unknown:
            raise ValueError(f"TranslationNoiseConfig: corpora must be among {tuple(DEFAULT_PAIRS)}, got {unknown}")
        for name in ("seeds", "test_sentences", "noise_seeds", "beam_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TranslationNoiseConfig: {name} must be an int >= 1, got {value!r}")
        if any(not 0.0 <= p <= 1.0 for p in self.train_noise):
            raise ValueError(f"TranslationNoiseConfig: train_noise must hold probabilities, got {self.train_noise}")


@dataclass(frozen=True)
class TranslationJob:
    """One model to train and measure."""

    corpus: str  # e.g. "numbers-dates"
    pair: str  # e.g. "en-de"
    train_noise: float  # --noise it is trained with
    seed: int  # training seed
    steps: int  # optimizer updates

    @property
    def name(self) -> str:
        """The run directory's name under ``OUT/models``."""
        return f"{self.corpus}-{self.pair}-noise{self.train_noise:g}-seed{self.seed}"


def translation_jobs(config: TranslationNoiseConfig) -> list[TranslationJob]:
    """Every model of the experiment, seed-major (a short run has every corpus and noise level once)."""
    return [TranslationJob(corpus, DEFAULT_PAIRS[corpus], p, seed, config.steps or DEFAULT_STEPS[corpus])
            for seed in range(config.seeds) for corpus in config.corpora for p in config.train_noise]  # fmt: skip


Progress = Callable[[str, float], None]  # (what is happening, fraction of the part done)


def run_translation(
    config: TranslationNoiseConfig, out_dir: Path, rows: list[dict], *, save: Callable[[list[dict]], None],
    progress: Progress | None = None,
) -> list[dict]:  # fmt: skip
    """Train (or reuse) each job's model, measure it, append its rows to ``rows`` and ``save`` them after each model.

    A job whose rows are already in ``rows`` is skipped (``--resume``).
    """
    progress = progress or (lambda what, done: None)
    jobs = translation_jobs(config)
    for index, job in enumerate(jobs):
        if any(r.get("model") == job.name for r in rows):
            continue
        progress(f"training {job.name} ({job.steps} steps)", index / len(jobs))
        model_dir = _train(job, config, out_dir / "models" / job.name)
        progress(f"measuring {job.name} under {len(TEST_PERTURBATIONS)} perturbations", (index + 0.8) / len(jobs))
        rows.extend(_measure(job, config, model_dir))
        save(rows)
    progress("translation part done", 1.0)
    return rows


def _train(job: TranslationJob, config: TranslationNoiseConfig, run_dir: Path) -> Path:
    """The trained model of ``job``: reused if saved, resumed from a checkpoint, else trained."""
    from ..apps.translate.train import TranslationTrainConfig, train_translation
    from ..train.state import latest_checkpoint

    if (run_dir / "model").is_dir():
        return run_dir / "model"
    settings = TranslationTrainConfig(corpus=job.corpus, pair=job.pair, size=config.size, seed=job.seed,
                                      steps=job.steps, noise=job.train_noise, eval_every=0, out_dir=str(run_dir),
                                      corpus_size=config.corpus_size, threads=1)  # fmt: skip
    resume = run_dir.is_dir() and latest_checkpoint(run_dir) is not None
    result = train_translation(settings, resume=resume, progress=False)
    assert result.model_dir is not None  # one process: rank 0
    return result.model_dir


def _measure(job: TranslationJob, config: TranslationNoiseConfig, model_dir: Path) -> list[dict]:
    from ..apps.translate.evaluate import translate_batch
    from ..apps.translate.model import Translator
    from ..apps.translate.noise import robustness
    from ..apps.translate.run import test_pairs_for

    translator = Translator.load(model_dir)
    pairs = test_pairs_for(model_dir, translator.info)[: config.test_sentences]
    sources = [s for s, _ in pairs]
    clean = translate_batch(translator.model, translator.tokenizer, sources, beam_size=config.beam_size)
    rows = []
    for perturbation in TEST_PERTURBATIONS:
        for noise_seed in range(config.noise_seeds):
            report = robustness(translator.model, translator.tokenizer, pairs, perturbation, seed=noise_seed,
                                beam_size=config.beam_size, clean_translations=clean)  # fmt: skip
            rows.append({"part": "translation", "model": job.name, **dataclasses.asdict(job),
                         "noise_seed": noise_seed, **report.to_dict()})  # fmt: skip
    return rows
