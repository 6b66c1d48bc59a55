"""Accuracy vs dependency distance: the sweep behind ``attnkit lab long-range``.

For every model of :data:`MODELS` (Transformer 1 and 2 layers, 2 layers with a sliding
window, LSTM 1 and 2 layers — all at the same parameter budget, the same number of
updates and examples), every distance ``d`` and every seed: train on
:class:`~attnkit.lab.tasks.RecallTask` at distance ``d`` and measure recall accuracy on
held-out sequences; then the same models on :class:`~attnkit.lab.tasks.ListOpsTask` and on
:class:`~attnkit.lab.tasks.InductionTask` at one distance.
Each finished cell is appended to ``results.json`` (written atomically), so an
interrupted sweep resumes where it stopped and a partial file is still a result.

Example:
    >>> cfg = LongRangeConfig(distances=(4,), seeds=1, steps=5, listops_steps=5, eval_examples=8,
    ...                       budget=2000, models=("lstm-1L",), induction_distance=8)
    >>> [c.key for c in plan(cfg)]
    ['recall/lstm-1L/d4/s0', 'listops/lstm-1L/s0', 'induction/lstm-1L/d8/s0']
    >>> cell = run_cell(cfg, plan(cfg)[0])
    >>> sorted(cell) == ['accuracy', 'd', 'key', 'loss', 'lr', 'model', 'parameters', 'seconds', 'seed', 'steps',
    ...                  'task']
    True
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import write_atomic
from .models import ModelSpec, build_model, count_parameters, evaluate, pool_stream, task_stream, train_model
from .tasks import InductionTask, ListOpsTask, RecallTask

__all__ = ["LongRangeConfig", "Cell", "MODELS", "plan", "run_cell", "run_sweep", "load_results", "summarize"]

#: the models of the sweep, by name -> spec (width follows from the parameter budget)
MODELS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("transformer", 1), ModelSpec("transformer", 2), ModelSpec("transformer", 2, window=4),
    ModelSpec("lstm", 1), ModelSpec("lstm", 2),
)}  # fmt: skip


@dataclass(frozen=True)
class LongRangeConfig:
    """What the long-range sweep trains and measures (saved in results.json; resume needs the same)."""

    distances: tuple[int, ...] = (4, 16, 64, 256, 1024)  # key -> query distances d of the recall task
    seeds: int = 3  # seeds per (model, task, d): 0..seeds-1
    models: tuple[str, ...] = tuple(MODELS)  # names from MODELS
    budget: int = 20_000  # parameters per model (matched within a few %)
    steps: int = 800  # updates per recall run (every model, every d)
    batch_size: int = 16  # sequences per update
    vocab_size: int = 32  # recall vocabulary: keys 1..15, values 16..31
    num_pairs: int = 2  # key-value pairs (= queries) per recall sequence
    eval_examples: int = 200  # held-out sequences per cell
    listops_steps: int = 800  # updates per ListOps run
    listops_batch_size: int = 32
    listops_lengths: tuple[int, int] = (16, 64)  # min, max tokens (exclusive), LRA: (500, 2000)
    listops_train_examples: int = 4000  # fixed training set per seed, as LRA's (96k there); batches drawn from it
    lr_transformer: float = 3e-3  # AdamW peak rate (warm-up, cosine); 1e-2 failed to learn recall at d=64
    lr_lstm: float = 1e-2  # the LSTM learned faster at 1e-2 than at 3e-3 (d=4 probe)
    induction_distance: int | None = 16  # also train on InductionTask at this distance (None: skip)

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ValueError(f"LongRangeConfig: unknown models {unknown}; choose among {list(MODELS)}")
        bad = [d for d in self.distances if not isinstance(d, int) or d < 2 * self.num_pairs]
        if bad:
            raise ValueError(f"LongRangeConfig: distances must be ints >= 2 * num_pairs = {2 * self.num_pairs}, "
                             f"got {bad}")  # fmt: skip
        for name in ("seeds", "budget", "steps", "batch_size", "eval_examples", "listops_steps",
                     "listops_train_examples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LongRangeConfig: {name} must be a positive int, got {value!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LongRangeConfig:
        data = dict(data)
        for name in ("distances", "models", "listops_lengths"):
            data[name] = tuple(data[name])
        return cls(**data)


@dataclass(frozen=True)
class Cell:
    """One training run: a model on a task (recall at distance ``d``, or ListOps with ``d=None``) with one seed."""

    task: str  # "recall" | "induction" | "listops"
    model: str  # a name of MODELS
    seed: int
    d: int | None = None  # recall distance

    @property
    def key(self) -> str:
        return f"{self.task}/{self.model}/" + (f"d{self.d}/" if self.d is not None else "") + f"s{self.seed}"

    def cost(self, cfg: LongRangeConfig) -> float:
        """Rough work units (updates x tokens per update), for the progress bar's ETA."""
        if self.task == "listops":
            return cfg.listops_steps * cfg.listops_batch_size * cfg.listops_lengths[1]
        assert self.d is not None
        length = self.d + (8 if self.task == "induction" else 2 * cfg.num_pairs)
        attention = length / 64 if MODELS[self.model].kind == "transformer" else 1.0  # quadratic part
        return cfg.steps * cfg.batch_size * length * max(1.0, attention)


def plan(cfg: LongRangeConfig) -> list[Cell]:
    """The cells in run order: recall up to d=256 for every seed, ListOps, induction, then longer distances.

    Short distances come first so that a sweep stopped early has complete curves up to 256; at
    longer distances the LSTMs (cheap) come before the Transformers (quadratic in d).
    """
    short = [d for d in cfg.distances if d <= 256]
    long = [d for d in cfg.distances if d > 256]
    cells = [Cell("recall", m, s, d) for s in range(cfg.seeds) for d in short for m in cfg.models]
    cells += [Cell("listops", m, s) for s in range(cfg.seeds) for m in cfg.models]
    if cfg.induction_distance is not None:
        cells += [Cell("induction", m, s, cfg.induction_distance) for s in range(cfg.seeds) for m in cfg.models]
    cheap_first = sorted(cfg.models, key=lambda m: (MODELS[m].kind == "transformer", _LONG_PRIORITY.get(m, 9)))
    cells += [Cell("recall", m, s, d) for s in range(cfg.seeds) for d in long for m in cheap_first]
    return cells


#: at long distances the LSTMs (cheap) run first, then the Transformers most worth a late slot
_LONG_PRIORITY = {"transformer-2L": 0, "transformer-1L": 1, "transformer-2L-w4": 2}


def _task(cfg: LongRangeConfig, cell: Cell):
    if cell.task == "listops":
        return ListOpsTask(min_length=cfg.listops_lengths[0], max_length=cfg.listops_lengths[1])
    assert cell.d is not None  # a recall or induction cell always has its distance
    if cell.task == "induction":
        return InductionTask(vocab_size=cfg.vocab_size, distance=cell.d)
    return RecallTask(vocab_size=cfg.vocab_size, num_pairs=cfg.num_pairs, distance=cell.d)


def run_cell(cfg: LongRangeConfig, cell: Cell) -> dict:
    """Train ``cell.model`` on its task with its seed; return the cell's record (accuracy on held-out data)."""
    import torch

    task = _task(cfg, cell)
    spec = MODELS[cell.model]
    outputs = ListOpsTask.num_classes if cell.task == "listops" else cfg.vocab_size
    vocab = ListOpsTask.vocab_size if cell.task == "listops" else cfg.vocab_size
    torch.manual_seed(cell.seed)  # the same initial weights for the same cell, whatever ran before
    model = build_model(spec, vocab, outputs, cfg.budget)
    steps, batch = (cfg.listops_steps, cfg.listops_batch_size) if cell.task == "listops" else (cfg.steps,
                                                                                               cfg.batch_size)
    lr = cfg.lr_transformer if spec.kind == "transformer" else cfg.lr_lstm
    started = time.perf_counter()
    if cell.task == "listops":  # drawing trees is slow in Python: a fixed training set, as in LRA
        data = pool_stream(_training_set(task, cfg.listops_train_examples, cell.seed), batch, seed=cell.seed)
    else:
        data = task_stream(task, batch, seed=cell.seed)
    trainer = train_model(model, data, steps=steps, lr=lr, seed=cell.seed)
    test = task.generate(cfg.eval_examples, seed=10_000_000 + cell.seed)  # never a training seed (those are s*1e6+step)
    return {"key": cell.key, "task": cell.task, "model": cell.model, "seed": cell.seed, "d": cell.d,
            "accuracy": evaluate(model, test), "loss": trainer.history[-1]["loss"], "steps": steps, "lr": lr,
            "parameters": count_parameters(model), "seconds": round(time.perf_counter() - started, 2)}  # fmt: skip


@functools.lru_cache(maxsize=4)
def _training_set(task: ListOpsTask, examples: int, seed: int):
    """The fixed ListOps training set of a seed, drawn once per process and shared by the models."""
    return task.generate(examples, seed=seed)


def load_results(path: str | Path) -> dict:
    """``{"config": ..., "cells": [...]}`` from a results.json (FileNotFoundError if absent).

    The config gets every field of :class:`LongRangeConfig` (defaults for those added since it was saved).
    """
    results = json.loads(Path(path).read_text())
    results["config"] = LongRangeConfig.from_dict(results["config"]).to_dict()
    return results


def run_sweep(cfg: LongRangeConfig, out: str | Path, *, resume: bool = False, max_minutes: float | None = None,
              extra: dict | None = None,
              progress: Callable[[float, float, str], None] | None = None) -> dict:  # fmt: skip
    """Run the cells of :func:`plan` not yet in ``out/results.json``; append each as it finishes.

    ``resume=False`` refuses to overwrite an existing results file; ``resume=True`` requires
    the saved config to equal ``cfg``. ``max_minutes`` stops before starting a cell past the
    budget (the file stays valid). ``progress(done_units, total_units, key)`` is called
    before each cell. Returns the results dictionary.
    """
    path = Path(out) / "results.json"
    results = _start(cfg, path, resume, extra or {})
    done = {c["key"] for c in results["cells"]}
    cells = plan(cfg)
    total = sum(c.cost(cfg) for c in cells)
    finished = sum(c.cost(cfg) for c in cells if c.key in done)
    deadline = None if max_minutes is None else time.monotonic() + 60 * max_minutes
    for cell in cells:
        if cell.key in done:
            continue
        if deadline is not None and time.monotonic() > deadline:
            results["stopped"] = f"max_minutes={max_minutes} reached before {cell.key}"
            break
        if progress is not None:
            progress(finished, total, cell.key)
        results["cells"].append(run_cell(cfg, cell))
        results.pop("stopped", None)
        write_atomic(path, json.dumps(results, indent=1))
        finished += cell.cost(cfg)
    if progress is not None:
        progress(finished, total, "done")
    write_atomic(path, json.dumps(results, indent=1))
    return results


def _start(cfg: LongRangeConfig, path: Path, resume: bool, extra: dict) -> dict:
    if path.exists() and not resume:
        raise FileExistsError(f"lab long-range: {str(path)!r} exists; pass --resume to continue it or choose --out")
    if path.exists():
        results = load_results(path)
        if LongRangeConfig.from_dict(results["config"]) != cfg:
            raise ValueError(f"lab long-range --resume: {str(path)!r} was made with another configuration "
                             f"({results['config']}); rerun with the same options or a new --out")  # fmt: skip
        results["config"] = cfg.to_dict()  # the same configuration, with fields added since it was saved
        if "command" in extra:
            results.setdefault("resumed_with", []).append(extra["command"])
        return results
    path.parent.mkdir(parents=True, exist_ok=True)
    return {"config": cfg.to_dict(), **extra, "cells": []}


def summarize(cells: Iterable[dict]) -> dict[str, dict]:
    """``{task/model/dX: {"mean", "min", "max", "n", "accuracies"}}`` over seeds.

    Example:
        >>> summarize([{"task": "recall", "model": "m", "d": 4, "accuracy": a} for a in (0.5, 1.0)])
        {'recall/m/d4': {'mean': 0.75, 'min': 0.5, 'max': 1.0, 'n': 2, 'accuracies': [0.5, 1.0]}}
    """
    groups: dict[str, list[float]] = {}
    for c in cells:
        key = f"{c['task']}/{c['model']}" + (f"/d{c['d']}" if c.get("d") is not None else "")
        groups.setdefault(key, []).append(float(c["accuracy"]))
    return {k: {"mean": sum(v) / len(v), "min": min(v), "max": max(v), "n": len(v), "accuracies": v}
            for k, v in groups.items()}  # fmt: skip
