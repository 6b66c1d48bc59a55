"""``Trainer``: the training loop, with logging, evaluation, atomic checkpoints and exact resume.

One update: fetch the batch of the step, ``loss_fn(model, batch)``, backward, clip the
global gradient norm, ``optimizer.step()``, ``scheduler.step()``. Checkpoints hold the
model, the optimizer and scheduler, the step, the data position and every global RNG
state, so a run stopped at step k and resumed produces the same losses, bit for bit, as
one that never stopped (same seed, same machine, deterministic kernels).

A ``KeyboardInterrupt`` (Ctrl-C, or raised by the data or a callback) saves a checkpoint
of the last completed step, then propagates. The update itself (optimizer + scheduler +
counters, and the history record when one is due) runs with SIGINT deferred, so it is
never half applied. An interrupt inside the hooks that follow an update (eval, periodic
checkpoint, callbacks) saves that completed step; its hooks that did not run are not re-run.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from .clip import clip_grad_norm
from .config import TrainerConfig
from .ema import ExponentialMovingAverage
from .history import HistoryLog, Progress
from .state import (
    DataStream,
    capture_rng,
    latest_checkpoint,
    read_checkpoint,
    restore_rng,
    seed_everything,
    write_checkpoint,
)

__all__ = ["Trainer"]

EvalFn = Callable[[nn.Module, int], dict]  # (model, step) -> {metric name: number}
Callback = Callable[["Trainer", dict], None]  # (trainer, {"step", "loss", "lr", "tokens"}) after every update


class Trainer:
    """Train ``model`` with ``optimizer`` (and ``scheduler``) on ``data`` for ``config.max_steps`` updates.

    Args:
        model: any ``nn.Module``; saved with :mod:`attnkit.checkpoint`.
        optimizer: a ``torch.optim.Optimizer`` over the model's parameters.
        loss_fn: ``(model, batch) -> loss`` or ``-> (loss, tokens)`` (tokens give tokens/s);
            see :func:`~attnkit.train.lm_loss` and :func:`~attnkit.train.seq2seq_loss`.
        data: a callable ``step -> batch`` or a re-iterable yielding a seeded order
            (see :class:`~attnkit.train.state.DataStream`).
        config: a :class:`TrainerConfig`.
        scheduler: an LR scheduler stepped after every update (e.g. :class:`NoamSchedule`).
        eval_fn: ``(model, step) -> dict`` of metrics, called every ``config.eval_every``
            steps in eval mode under ``torch.no_grad()`` (on the weight average when
            ``config.ema_decay`` is set); logged as ``{"kind": "eval", ...}``.
        callbacks: called as ``callback(trainer, record)`` after every update.
        progress: show a rich progress bar (loss, tokens/s, ETA).

    Example:
        >>> from attnkit.nn import TransformerConfig, TransformerLM
        >>> from attnkit.train import lm_loss
        >>> cfg = TransformerConfig(vocab_size=12, d_model=16, num_heads=2, d_ff=32,
        ...                         num_encoder_layers=0, num_decoder_layers=1)
        >>> model = TransformerLM(cfg)
        >>> data = lambda step: torch.randint(3, 12, (4, 9))
        >>> trainer = Trainer(model, torch.optim.Adam(model.parameters(), 1e-3), loss_fn=lm_loss(), data=data,
        ...                   config=TrainerConfig(max_steps=3, log_every=1), progress=False)
        >>> [r["step"] for r in trainer.fit()]
        [1, 2, 3]
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        loss_fn: Callable,
        data: Callable[[int], object] | Iterable,
        config: TrainerConfig | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        eval_fn: EvalFn | None = None,
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
    ):
        _check_args(model, optimizer, loss_fn, config, eval_fn)
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.loss_fn, self.eval_fn, self.callbacks = loss_fn, eval_fn, list(callbacks)
        self.config = config if config is not None else TrainerConfig()
        self.progress = progress
        self.out_dir = None if self.config.out_dir is None else Path(self.config.out_dir)
        self.step = 0  # completed updates
        self.tokens = 0  # target tokens seen
        self.history: list[dict] = []  # train and eval records, as written to history.jsonl
        self.stop_reason: str | None = None  # "max_steps" | "max_minutes" after fit()
        self._data = DataStream(data)
        self._window = {"loss_sum": 0.0, "steps": 0, "tokens": 0, "seconds": 0.0}  # since the last record
        self._log = None if self.out_dir is None else HistoryLog(self.out_dir / "history.jsonl")
        self._pending_rng: dict | None = None  # restored at the start of fit() after resume()
        self._started = False  # RNGs seeded or restored
        self._saved_step = -1  # step of the newest checkpoint written by this trainer
        self._lr = float("nan")  # learning rate of the last update
        self._last: dict = {}  # per-update record passed to callbacks
        self._logged: dict | None = None  # history record written by the last update, if one was due
        self._stop: str | None = None  # set by request_stop(): end fit() after the current update
        #: the weight average (``config.ema_decay``), evaluated instead of the raw weights; None when off
        self.ema = None if self.config.ema_decay is None else ExponentialMovingAverage(model, self.config.ema_decay)

    # ------------------------------------------------------------------ public

    def fit(self) -> list[dict]:
        """Train until ``config.max_steps`` (or ``max_minutes``); return the history records."""
        self._start()
        deadline = None if self.config.max_minutes is None else time.monotonic() + 60 * self.config.max_minutes
        self.stop_reason = "max_steps"
        saving = self.out_dir is not None
        boundary, boundary_step = (self._snapshot() if saving else None), self.step
        try:
            with Progress(self.progress, self.config.max_steps, self.step) as bar:
                while self.step < self.config.max_steps:
                    boundary, boundary_step = (self._snapshot() if saving else None), self.step  # before the update
                    self._update()
                    self._after_update(bar)
                    if deadline is not None and time.monotonic() >= deadline:
                        self._stop = "max_minutes"
                    if self._stop is not None:
                        self.stop_reason, self._stop = self._stop, None
                        break
        except KeyboardInterrupt:
            if saving:
                committed = self.step != boundary_step  # the update is applied whole (SIGINT deferred) or not at all
                self.save_checkpoint(_state=self._snapshot() if committed else boundary)
            raise
        if saving:
            self.save_checkpoint()
        return self.history

    def request_stop(self, reason: str = "requested") -> None:
        """End :meth:`fit` after the current update (it checkpoints as usual); ``stop_reason`` becomes ``reason``.

        For callbacks, e.g. a time budget shared by all ranks of a data-parallel run.
        """
        self._stop = str(reason)

    def save_checkpoint(self, *, _state: dict | None = None) -> Path:
        """Write a checkpoint of the current step under ``out_dir/checkpoints`` (atomically)."""
        if self.out_dir is None:
            raise ValueError("Trainer.save_checkpoint(): config.out_dir is None; set TrainerConfig(out_dir=...)")
        state = self._snapshot() if _state is None else _state
        path = self.out_dir / "checkpoints" / f"step-{self.step:08d}"
        if self._saved_step == self.step and path.is_dir():
            return path
        meta = {"step": self.step, "tokens": self.tokens, "data": state["data"], "window": state["window"],
                "trainer_config": self.config.to_dict()}  # fmt: skip
        path = write_checkpoint(self.out_dir, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                                meta=meta, rng=state["rng"], keep=self.config.keep_checkpoints,
                                ema=None if self.ema is None else self.ema.state_dict())  # fmt: skip
        self._saved_step = self.step
        return path

    def resume(self, path: str | Path | None = None) -> int:
        """Load the checkpoint at ``path`` (default: the latest in ``config.out_dir``); return its step.

        The next :meth:`fit` continues exactly where that run stopped. The history file
        is cut back to the checkpoint's step.
        """
        if path is None:
            if self.out_dir is None or latest_checkpoint(self.out_dir) is None:
                raise FileNotFoundError(f"Trainer.resume(): no checkpoint in out_dir={self.config.out_dir!r} "
                                        "(expected out_dir/latest.json); train first or pass a path")  # fmt: skip
            path = self.out_dir
        ckpt, meta, tensors = read_checkpoint(path)
        self._load_state(ckpt, tensors)
        self.step, self.tokens = int(meta["step"]), int(meta["tokens"])
        self._data.restore(meta["data"])
        self._window = dict(meta["window"])
        self._pending_rng = {"torch": tensors["torch_rng"], "cuda": tensors["cuda_rng"], **meta["rng"]}
        self._started = False
        self._saved_step = self.step
        self.history = self._log.rewind(self.step) if self._log is not None else []
        return self.step

    # ------------------------------------------------------------------ one update

    def _start(self) -> None:
        if self._pending_rng is not None:
            restore_rng(self._pending_rng)
            self._pending_rng, self._started = None, True
        if self._started:
            return
        if self.out_dir is not None and self.step == 0:
            if latest_checkpoint(self.out_dir) is not None:
                raise FileExistsError(f"Trainer.fit(): out_dir {str(self.out_dir)!r} already holds a checkpoint; "
                                      "call trainer.resume() first, or choose a new out_dir")  # fmt: skip
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if self._log is not None:  # there is one whenever there is an out_dir
                self._log.rewind(0)
        seed_everything(self.config.seed)
        self._started = True

    def _update(self) -> None:
        started = time.perf_counter()
        self.model.train()
        batch = self._data.next(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss, tokens = _unpack_loss(self.loss_fn(self.model, batch), self.step)
        loss.backward()
        if self.config.grad_clip is not None:
            clip_grad_norm(self.model.parameters(), self.config.grad_clip)
        self._lr = float(self.optimizer.param_groups[0]["lr"])  # the rate this update uses
        with _sigint_deferred():
            self._commit(float(loss.detach()), tokens, time.perf_counter() - started)

    def _commit(self, loss: float, tokens: int, seconds: float) -> None:
        """Apply the update and advance every counter together (runs with SIGINT deferred)."""
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        self.tokens += tokens
        w = self._window
        w["loss_sum"], w["steps"], w["tokens"] = w["loss_sum"] + loss, w["steps"] + 1, w["tokens"] + tokens
        w["seconds"] += seconds
        self._last = {"step": self.step, "loss": loss, "lr": self._lr, "tokens": self.tokens}
        due = self.step % self.config.log_every == 0 or self.step == self.config.max_steps
        self._logged = self._flush_window() if due else None  # logged with the update, so never lost

    def _after_update(self, bar: Progress) -> None:
        cfg = self.config
        if self._logged is None:
            bar.update(self.step)
        else:
            bar.update(self.step, self._logged["loss"], self._logged["tokens_per_s"])
        eval_fn = self.eval_fn
        if cfg.eval_every and eval_fn is not None and self.step % cfg.eval_every == 0:
            self._record({"kind": "eval", "step": self.step, **self._evaluate(eval_fn)})
        if cfg.checkpoint_every and self.out_dir is not None and self.step % cfg.checkpoint_every == 0:
            self.save_checkpoint()
        for callback in self.callbacks:
            callback(self, dict(self._last))

    def _flush_window(self) -> dict:
        w = self._window
        record = {
            "kind": "train",
            "step": self.step,
            "loss": w["loss_sum"] / max(w["steps"], 1),  # mean over the updates since the last record
            "lr": self._lr,
            "tokens": self.tokens,
            "tokens_per_s": w["tokens"] / w["seconds"] if w["seconds"] > 0 else 0.0,
        }
        self._window = {"loss_sum": 0.0, "steps": 0, "tokens": 0, "seconds": 0.0}
        self._record(record)
        return record

    def _record(self, record: dict) -> None:
        self.history.append(record)
        if self._log is not None:
            self._log.append(record)

    def _evaluate(self, eval_fn: EvalFn) -> dict:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), (self.ema.applied(self.model) if self.ema else contextlib.nullcontext()):
                metrics = eval_fn(self.model, self.step)
        finally:
            self.model.train(was_training)
        if not isinstance(metrics, dict):
            raise TypeError(f"Trainer(): eval_fn must return a dict of metric name -> number, got "
                            f"{type(metrics).__name__} at step {self.step}")  # fmt: skip
        return {str(k): float(v) if isinstance(v, Tensor) else v for k, v in metrics.items()}

    def _snapshot(self) -> dict:
        return {"rng": capture_rng(), "data": self._data.position(), "window": dict(self._window)}

    def _load_state(self, ckpt: Path, tensors: dict) -> None:
        from .. import checkpoint

        checkpoint.load_state(self.model, ckpt)
        self.optimizer.load_state_dict(tensors["optimizer"])
        if (tensors["scheduler"] is None) != (self.scheduler is None):
            saved, here = ("without", "one") if tensors["scheduler"] is None else ("with", "none")
            raise ValueError(f"Trainer.resume(): {str(ckpt)!r} was saved {saved} a scheduler but this Trainer "
                             f"has {here}; build the Trainer as in the saved run")  # fmt: skip
        if self.scheduler is not None:
            self.scheduler.load_state_dict(tensors["scheduler"])
        saved_ema = tensors.get("ema")
        if (saved_ema is None) != (self.ema is None):
            saved, here = ("without", "ema_decay set") if saved_ema is None else ("with", "ema_decay=None")
            raise ValueError(f"Trainer.resume(): {str(ckpt)!r} was saved {saved} a weight average but this "
                             f"Trainer has {here}; use the saved run's TrainerConfig.ema_decay")  # fmt: skip
        if self.ema is not None and saved_ema is not None:  # both or neither, checked above
            self.ema.load_state_dict(saved_ema)


def _unpack_loss(out, step: int) -> tuple[Tensor, int]:
    loss, tokens = out if isinstance(out, tuple) else (out, 0)
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else ""
        raise TypeError(f"Trainer(): loss_fn must return a scalar tensor or (loss, tokens), got "
                        f"{type(loss).__name__}{shape}")  # fmt: skip
    if not math.isfinite(float(loss.detach())):
        raise FloatingPointError(
            f"Trainer: loss is {float(loss.detach())} at update {step + 1}; lower the learning rate or set "
            "TrainerConfig(grad_clip=...), then resume the last checkpoint"
        )
    return loss, int(tokens)


def _check_args(model, optimizer, loss_fn, config, eval_fn) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"Trainer(): model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"Trainer(): optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"Trainer(): loss_fn must be callable (model, batch) -> loss, got {type(loss_fn).__name__}")
    if config is not None and not isinstance(config, TrainerConfig):
        raise TypeError(f"Trainer(): config must be a TrainerConfig, got {type(config).__name__}")
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError(f"Trainer(): eval_fn must be callable (model, step) -> dict, got {type(eval_fn).__name__}")


@contextlib.contextmanager
def _sigint_deferred():
    """Hold SIGINT (Ctrl-C) until the block ends, so an update is applied whole or not at all.

    Nothing to hold outside the main thread (signals arrive there) or where SIGINT is ignored
    (e.g. a background job of a shell): an ignored SIGINT stays ignored.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(signal.SIGINT, received[0])
            else:
                raise KeyboardInterrupt
