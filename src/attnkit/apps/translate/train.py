"""Train a translation Transformer the way the paper did, at the size this machine affords.

"Attention Is All You Need", section 5, on the project's :class:`~attnkit.train.Trainer`:

* **loss**: cross-entropy with label smoothing ``eps_ls = 0.1`` (5.4), normalized by the
  number of target tokens of the *global* batch (:func:`translation_loss`);
* **optimizer**: Adam with ``beta1 = 0.9, beta2 = 0.98, eps = 1e-9`` and the
  inverse-square-root warm-up schedule (5.3);
* **batches** by similar length with a budget of tokens (5.1, :mod:`.batching`);
* **validation BLEU** every ``eval_every`` steps: greedy decoding of the first
  ``eval_sentences`` validation pairs;
* **confidence calibration** of the final model on the validation sentences
  (:mod:`.confidence`), stored in ``translate.json`` for out-of-domain warnings;
* checkpoints every ``checkpoint_every`` steps and on Ctrl-C; ``resume=True`` continues
  exactly (the batch of each step is a function of the seed and the step);
* **noise augmentation** (``noise=p``, ``--noise p``): each training source is
  perturbed afresh at every step it is drawn, each word misspelled with probability
  ``p`` and the sentence case-changed with probability ``p`` (:mod:`.noise`);
* **data parallel** under ``torchrun`` (:mod:`attnkit.distributed.data_parallel`).

Example (a few seconds on a CPU)::

    >>> from attnkit.apps.translate import TranslationTrainConfig, train_translation
    >>> result = train_translation(TranslationTrainConfig(steps=20, out_dir="/tmp/tiny-mt", corpus_size=500),
    ...                            progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ...distributed import data_parallel as dp
from ...nn import Transformer
from ...train import NoamSchedule, Trainer, TrainerConfig, label_smoothed_cross_entropy
from ...train.state import latest_checkpoint
from ...train.trainer import Callback
from .batching import Batch, TokenBatches
from .confidence import INFO_KEY as CONFIDENCE_KEY
from .confidence import calibrate
from .evaluate import evaluate
from .model import MODEL_DIR, SIZES, Translator, model_config
from .noise import NoisySources, Perturbation
from .run import RunFiles, open_run, prepare_run

__all__ = ["TranslationTrainConfig", "TrainResult", "train_translation", "translation_loss", "translation_trainer",
           "SIZE_DEFAULTS"]

#: (event, payload): "corpus" CorpusSummary | "eval" dict | "resumed" int | "step" dict (time-budgeted runs:
#: every update's {"step", "loss", "lr", "tokens"}, for a time-based progress bar)
Report = Callable[[str, object], None]
#: per size: (max_tokens per global batch, warmup_steps). small: 2048 rather than 3072 tokens, measured on
#: numbers-dates en-de with 2 threads: the same valid BLEU per update (63.8 vs 65.4 at 500), 1.4x the updates
SIZE_DEFAULTS = {"tiny": (2048, 400), "small": (2048, 400), "base": (6144, 4000)}
#: fixed for a run; a resume keeps the saved values
_WHAT = ("corpus", "pair", "size", "seed", "corpus_size", "vocab_size", "max_tokens", "warmup_steps", "lr_scale",
         "label_smoothing", "dropout", "max_len", "ema_decay", "noise")  # fmt: skip


@dataclass(frozen=True)
class TranslationTrainConfig:
    """What to train and for how long (``run.json`` keeps the first group; resume reuses it).

    Example:
        >>> TranslationTrainConfig(size="base").resolved().max_tokens
        6144
        >>> TranslationTrainConfig(size="huge")
        Traceback (most recent call last):
        ...
        ValueError: TranslationTrainConfig: size must be one of ('tiny', 'small', 'base'), got 'huge'
    """

    corpus: str = "numbers-dates"  # numbers-dates | gettext | tsv:PATH
    pair: str | None = None  # e.g. "en-de"; None = the corpus default
    size: str = "tiny"  # model preset: tiny | small | base
    seed: int = 0  # corpus split, tokenizer, initialization, batch order
    corpus_size: int | None = None  # numbers-dates: pairs generated (default 20000); others: at most this many
    vocab_size: int | None = None  # BPE vocabulary; None = 1000 for numbers-dates, 8000 otherwise
    max_tokens: int | None = None  # padded source+target tokens per global batch; None = SIZE_DEFAULTS
    warmup_steps: int | None = None  # linear warm-up of the schedule; None = SIZE_DEFAULTS (paper: 4000)
    lr_scale: float = 1.0  # multiplies d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)
    label_smoothing: float = 0.1  # eps_ls of the paper
    dropout: float | None = None  # None = the preset's (0.1)
    max_len: int = 128  # training pairs with more subword tokens on either side are skipped
    ema_decay: float | None = 0.995  # validate and save the moving average of the weights; None = the last weights
    noise: float = 0.0  # augmentation: probability of a misspelling per source word and of a case change per source
    steps: int | None = None  # total optimizer updates; None = 2000, or unlimited when minutes is set
    minutes: float | None = None  # wall-clock budget of this call (stops with a checkpoint)
    out_dir: str = "out/translate"  # run directory (see .run); `attnkit translate train --out`
    eval_every: int = 250  # steps between validation BLEU; 0 = never
    eval_sentences: int = 200  # validation pairs decoded for it
    checkpoint_every: int = 500  # steps between checkpoints (also at the end and on Ctrl-C)
    log_every: int = 10  # steps per history record and progress refresh
    device: str = "cpu"  # "cpu" or "cuda"
    threads: int | None = None  # torch threads; None = torch's default, or 1 on a busy machine (see _auto_threads)

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"TranslationTrainConfig: size must be one of {SIZES}, got {self.size!r}")
        if self.steps is not None and (type(self.steps) is not int or self.steps < 1):
            raise ValueError(f"TranslationTrainConfig: steps must be a positive int, got {self.steps!r}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"TranslationTrainConfig: minutes must be > 0, got {self.minutes!r}; e.g. minutes=10")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"TranslationTrainConfig: label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"TranslationTrainConfig: noise must be a probability in [0, 1], got {self.noise!r}")

    def resolved(self) -> TranslationTrainConfig:
        """A copy with the size-dependent defaults filled in."""
        max_tokens, warmup_steps = self.tokens_and_warmup()
        return dataclasses.replace(self, max_tokens=max_tokens, warmup_steps=warmup_steps)

    def tokens_and_warmup(self) -> tuple[int, int]:
        """``(max_tokens, warmup_steps)``: the values given, else the size's :data:`SIZE_DEFAULTS`."""
        tokens, warmup = SIZE_DEFAULTS[self.size]
        return self.max_tokens or tokens, self.warmup_steps or warmup


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_translation` did.

    Example:
        >>> r = TrainResult(Path("run"), Path("run/model"), steps=600, stop_reason="max_minutes", seconds=60.0,
        ...                 train_loss=1.9, valid=None, planned_steps=1400)
        >>> r.under_trained, r.to_dict()["model_dir"]  # the time cap stopped it before the planned steps
        (True, 'run/model')
    """

    run_dir: Path  # the run directory
    model_dir: Path | None  # the final model (rank 0), None on other ranks
    steps: int  # optimizer updates done in total
    stop_reason: str  # "max_steps" | "max_minutes"
    seconds: float  # wall-clock time of this call
    train_loss: float | None  # mean loss of the last logged window
    valid: dict | None  # final validation scores (bleu, chrf, exact_match) on eval_sentences pairs
    planned_steps: int | None = None  # the steps asked for; None = no step limit (a time budget only)

    @property
    def under_trained(self) -> bool:
        """True when the time cap (``minutes``) stopped training before ``planned_steps``."""
        planned = self.planned_steps
        return self.stop_reason == "max_minutes" and planned is not None and self.steps < planned

    def to_dict(self) -> dict:
        """Plain types for JSON, with ``under_trained``."""
        doc = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}
        return {**doc, "under_trained": self.under_trained}


def translation_loss(forward: torch.nn.Module | None, *, smoothing: float, world_size: int = 1, pad_id: int = 0):
    """Trainer loss ``(model, Batch) -> (loss, global tokens)``, label-smoothed.

    ``forward`` runs the forward pass (the DDP wrapper; None = the model the Trainer
    passes). Each rank returns ``sum of its token losses * world_size / global tokens``:
    DDP averages gradients over ranks, so the update equals that of the mean loss over
    the whole global batch on one process.
    """

    def loss_fn(model: torch.nn.Module, batch: Batch):
        device = next(model.parameters()).device
        src, tgt = batch.src.to(device), batch.tgt.to(device)
        tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]  # (B, T+1) -> (B, T), (B, T)
        logits = (forward or model)(src, tgt_in)  # (B, T, V)
        mean = label_smoothed_cross_entropy(logits, tgt_out, smoothing=smoothing, ignore_index=pad_id)
        local = int((tgt_out != pad_id).sum())
        return mean * (local * world_size / batch.global_tokens), batch.global_tokens

    return loss_fn


def train_translation(
    config: TranslationTrainConfig, *, resume: bool = False, progress: bool = True, report: Report | None = None
) -> TrainResult:
    """Prepare (or reopen) the run directory, train, and save the final model in ``out_dir/model``.

    Under ``torchrun`` every process calls this; rank 0 writes the files and shows progress.
    """
    threads, before = config.threads or _auto_threads(), torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _train(config, resume, progress, report or (lambda event, payload: None))
    finally:
        torch.set_num_threads(before)


def _train(config: TranslationTrainConfig, resume: bool, progress: bool, report: Report) -> TrainResult:
    started = time.monotonic()
    info = dp.init_from_env()
    run_dir = Path(config.out_dir)
    run = _open_or_prepare(run_dir, config.resolved(), resume, info, report)
    saved = {"ema_decay": None, "noise": 0.0, **run.info["settings"]}  # older runs: no averaging, no noise
    settings = TranslationTrainConfig(**{**saved, **_how_long(config)})
    torch.manual_seed(settings.seed)
    model = Transformer(model_config(settings.size, run.tokenizer.vocab_size, dropout=settings.dropout))
    model.to(settings.device)
    trainer = _trainer(model, run, settings, info, report, progress)
    if resume:
        report("resumed", trainer.resume(run_dir))
    history = trainer.fit()
    last = next((r for r in reversed(history) if r.get("kind") == "train"), None)
    model_dir, valid = None, None
    if info.is_main:
        if trainer.ema is not None:
            trainer.ema.copy_to(model)  # the saved model is the weight average (the checkpoint keeps both)
        model_dir, valid = _save_final(model, run, trainer.step)
    dp.barrier(info)
    return TrainResult(run_dir, model_dir, trainer.step, _stop_reason(trainer), round(time.monotonic() - started, 1),
                       None if last is None else last["loss"], valid, _planned_steps(settings))  # fmt: skip


def translation_trainer(model: torch.nn.Module, run: RunFiles, settings: TranslationTrainConfig, *,
                        progress: bool = False, report: Report | None = None) -> Trainer:
    """The :class:`~attnkit.train.Trainer` that :func:`train_translation` uses, for a model built elsewhere.

    The same loss, optimizer, schedule, batches, clipping and validation hook, on the
    prepared run ``run`` (:func:`~attnkit.apps.translate.run.prepare_run`); history and
    checkpoints go to ``run.directory``. ``attnkit lab heads`` trains its sweep with it.
    """
    info = dp.init_from_env()
    return _trainer(model, run, settings, info, report or (lambda event, payload: None), progress)


def _auto_threads() -> int | None:
    """1 when the machine is already busy (load average >= cores), else None (torch's default).

    Measured on a shared 2-core machine: with other processes running, two intra-op
    threads made a training step about 6x slower than one (they spin waiting for each
    other); on an idle machine two threads are faster.
    """
    import os

    try:
        busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    except OSError:  # no load average on this platform
        return None
    return 1 if busy and torch.get_num_threads() > 1 else None


def _planned_steps(settings: TranslationTrainConfig) -> int | None:
    """The step limit: ``steps``, else 2000 without a time budget, else None (until the time is up)."""
    return settings.steps or (2000 if settings.minutes is None else None)


def _how_long(config: TranslationTrainConfig) -> dict:
    fields = {f.name for f in dataclasses.fields(config)} - set(_WHAT)
    return {name: getattr(config, name) for name in fields}


def _open_or_prepare(run_dir: Path, config, resume: bool, info, report: Report) -> RunFiles:
    if info.is_main:
        has_checkpoint = latest_checkpoint(run_dir) is not None if run_dir.is_dir() else False
        if resume and not has_checkpoint:
            raise FileNotFoundError(f"--resume: {str(run_dir)!r} holds no checkpoint to resume; "
                                    "start a new run without --resume")  # fmt: skip
        if not resume and has_checkpoint:
            raise FileExistsError(f"--out {str(run_dir)!r} already holds a training run; add --resume to "
                                  "continue it, or choose another --out")  # fmt: skip
        if not resume:
            report("corpus", prepare_run(run_dir, {name: getattr(config, name) for name in _WHAT}))
    dp.barrier(info)
    return open_run(run_dir)


def _trainer(model, run: RunFiles, settings: TranslationTrainConfig, info, report: Report, progress: bool) -> Trainer:
    tok = run.tokenizer
    sources, targets = tok.encode_batch([s for s, _ in run.train]), tok.encode_batch([t for _, t in run.train])
    fits = range(1, settings.max_len + 1)
    kept = [i for i, (s, t) in enumerate(zip(sources, targets, strict=True)) if len(s) in fits and len(t) in fits]
    max_tokens, warmup_steps = settings.tokens_and_warmup()
    batches: TokenBatches | NoisySources = TokenBatches(
        [(sources[i], targets[i]) for i in kept], max_tokens=max_tokens, seed=settings.seed, rank=info.rank,
        world_size=info.world_size)  # fmt: skip
    if settings.noise:
        noise = Perturbation(misspell=settings.noise, case=settings.noise)
        batches = NoisySources(batches, [run.train[i][0] for i in kept], tok, noise, seed=settings.seed,
                               max_len=settings.max_len)  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr_scale, betas=(0.9, 0.98), eps=1e-9)
    schedule = NoamSchedule(optimizer, model.config.d_model, warmup_steps)
    steps = _planned_steps(settings) or 10**9
    trainer_config = TrainerConfig(
        max_steps=steps, max_minutes=None if info.distributed else settings.minutes, log_every=settings.log_every,
        checkpoint_every=settings.checkpoint_every, eval_every=settings.eval_every, seed=settings.seed,
        out_dir=str(run.directory) if info.is_main else None, grad_clip=1.0, ema_decay=settings.ema_decay,
    )  # fmt: skip
    forward = dp.wrap(model, info)
    loss_fn = translation_loss(None if forward is model else forward, smoothing=settings.label_smoothing,
                               world_size=info.world_size, pad_id=tok.pad_id)  # fmt: skip
    callbacks: list[Callback] = []
    if info.distributed and settings.minutes:
        callbacks.append(_SharedDeadline(settings.minutes, info))
    timed = settings.steps is None  # a time budget: the Trainer's bar counts steps, so report steps instead
    if timed and info.is_main:
        callbacks.append(lambda trainer, record: report("step", record))
    return Trainer(model, optimizer, loss_fn=loss_fn, data=batches, config=trainer_config, scheduler=schedule,
                   eval_fn=_validation(run, settings, info, report), callbacks=callbacks,
                   progress=progress and info.is_main and not timed)  # fmt: skip


def _validation(run: RunFiles, settings: TranslationTrainConfig, info, report: Report):
    """Trainer eval hook: greedy BLEU on the first ``eval_sentences`` validation pairs (rank 0 only)."""

    def eval_fn(model, step: int) -> dict:
        if not info.is_main:
            return {}
        result = evaluate(model, run.tokenizer, run.valid, split="valid", beam_size=1, limit=settings.eval_sentences)
        metrics = {"valid_bleu": result.model.bleu, "valid_chrf": result.model.chrf,
                   "valid_exact": result.model.exact_match}  # fmt: skip
        report("eval", {"step": step, **metrics, "example": result.examples[0]})
        return metrics

    return eval_fn


class _SharedDeadline:
    """Trainer callback for data-parallel runs: stop every rank at the same step when rank 0's time is up.

    Each rank checking its own clock could stop at different steps and leave the others
    waiting in an all-reduce; here rank 0 decides and all ranks agree by an all-reduce.
    """

    def __init__(self, minutes: float, info):
        self.deadline, self.info = time.monotonic() + 60 * minutes, info

    def __call__(self, trainer: Trainer, record: dict) -> None:
        if dp.any_rank(self.info.is_main and time.monotonic() >= self.deadline, self.info):
            trainer.request_stop("max_minutes")  # fit() ends after this step, then checkpoints


def _stop_reason(trainer: Trainer) -> str:
    return trainer.stop_reason or "max_steps"


def _save_final(model, run: RunFiles, steps: int) -> tuple[Path, dict]:
    """Score the model on the validation subset and write ``run/model`` (Translator.save)."""
    settings = run.info["settings"]
    result = evaluate(model, run.tokenizer, run.valid, split="valid", beam_size=1, limit=200)
    valid = {"bleu": result.model.bleu, "chrf": result.model.chrf, "exact_match": result.model.exact_match,
             "sentences": result.model.sentences, "decoding": result.decoding}  # fmt: skip
    calibration = calibrate(model, run.tokenizer, [source for source, _ in run.valid[:200]])
    info = {**run.info, "steps": steps, "valid": valid, "settings": settings, CONFIDENCE_KEY: calibration.to_dict()}
    path = Translator(model.eval(), run.tokenizer, info).save(run.directory / MODEL_DIR)
    return path, valid
