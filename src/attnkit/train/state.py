"""What a training run must save to continue exactly: data position, RNG states, trainer checkpoints.

A trainer checkpoint is a directory ``out_dir/checkpoints/step-00000100/``::

    model.safetensors, config.json   the model (attnkit.checkpoint)
    trainer.safetensors              every tensor of the optimizer, scheduler and weight-average
                                     states and the torch/CUDA RNG states (uint8 tensors)
    trainer.json                     step, tokens, data position, python/numpy RNG states, loss window,
                                     and the structure of those states with their numbers
                                     (see :mod:`attnkit.train.statefile`); nothing is pickled

Checkpoints of attnkit before format 2 hold a pickled ``trainer.pt`` instead; resuming one
stops with a ValueError that names :func:`convert_legacy_checkpoint`, a one-time explicit
conversion (it reads the file with ``torch.load(weights_only=True)``).

``out_dir/latest.json`` names the newest complete one; it is replaced atomically after the
checkpoint directory is in place, so it never points at a partial checkpoint.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors.torch import save as save_bytes

from .. import checkpoint
from . import statefile

try:  # numpy is a dependency of attnkit, but the trainer does not need it
    import numpy as np
except ImportError:  # pragma: no cover
    np = None  # type: ignore[assignment]  # mypy's idiom for an optional module: the name stays, bound to None

__all__ = ["DataStream", "capture_rng", "restore_rng", "seed_everything", "write_checkpoint", "read_checkpoint",
           "latest_checkpoint", "convert_legacy_checkpoint"]  # fmt: skip

FORMAT_VERSION = 2  # of trainer.json / trainer.safetensors (1: trainer.pt, a pickle)
STATE_NAME = "trainer.safetensors"
META_NAME = "trainer.json"
LEGACY_NAME = "trainer.pt"
LATEST_NAME = "latest.json"
CHECKPOINTS_DIR = "checkpoints"


# ---------------------------------------------------------------------------- data position


class DataStream:
    """Batches in a reproducible order, with a position that can be saved and restored.

    ``data`` is either a callable ``step -> batch`` (the position is the step) or a
    re-iterable (a list, a ``DataLoader`` with a seeded generator...) that yields the same
    order each time ``iter()`` is called on it; its epochs restart with ``iter()`` (and
    ``data.set_epoch(epoch)`` when it has one). Restoring re-reads and skips the batches
    already consumed in the current epoch.

    Example:
        >>> stream = DataStream([10, 11, 12])
        >>> [stream.next(step) for step in range(4)], stream.position()
        ([10, 11, 12, 10], {'epoch': 1, 'index': 1})
    """

    def __init__(self, data: Callable[[int], object] | Iterable):
        if isinstance(data, Iterator) or not (callable(data) or isinstance(data, Iterable)):
            raise TypeError(
                f"Trainer(): data must be a callable step -> batch or a re-iterable with a seeded order, got "
                f"{type(data).__name__}; a one-shot iterator or generator cannot be resumed: wrap it as "
                "lambda step: ... or pass a list / DataLoader(generator=torch.Generator().manual_seed(s))"
            )
        self.data = data
        self._batch_at: Callable[[int], object] | None = None  # data as a function step -> batch
        self._iterable: Iterable | None = None  # data as a re-iterable
        if isinstance(data, Iterable):
            self._iterable = data
        else:
            self._batch_at = data
        self.is_callable = self._batch_at is not None
        self.epoch = 0  # completed passes over an iterable
        self.index = 0  # batches consumed in the current pass
        self._iterator: Iterator | None = None

    def position(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def restore(self, position: dict) -> None:
        self.epoch, self.index = int(position["epoch"]), int(position["index"])
        self._iterator = None  # re-created and fast-forwarded on the next batch

    def next(self, step: int):
        """The batch of (0-based) update ``step``."""
        if self._batch_at is not None:
            batch = self._batch_at(step)
            self.index = step + 1
            return batch
        if self._iterator is None:
            self._iterator = self._open(skip=self.index)
        try:
            batch = next(self._iterator)
        except StopIteration:
            self.epoch, self.index = self.epoch + 1, 0
            self._iterator = self._open(skip=0)
            batch = next(self._iterator, _EMPTY)
            if batch is _EMPTY:
                raise ValueError(
                    "Trainer(): data yielded no batches in an epoch; expected a non-empty iterable"
                ) from None  # the StopIteration above is the expected end of an epoch, not the cause
        self.index += 1
        return batch

    def _open(self, skip: int) -> Iterator:
        data = self._iterable
        assert data is not None, "DataStream._open() is for iterable data; a callable is called by next()"
        if hasattr(data, "set_epoch"):
            data.set_epoch(self.epoch)
        iterator = iter(data)
        for done in range(skip):
            if next(iterator, _EMPTY) is _EMPTY:
                raise ValueError(f"Trainer.resume(): data has {done} batches in epoch {self.epoch} but the checkpoint "
                                 f"consumed {skip}; the data must yield the same order as the saved run")  # fmt: skip
        return iterator


_EMPTY = object()


# ---------------------------------------------------------------------------- random states


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), python ``random`` and numpy's global generator."""
    torch.manual_seed(seed)
    random.seed(seed)
    if np is not None:
        np.random.seed(seed % 2**32)


def capture_rng() -> dict:
    """The global RNG states: ``{"torch": ByteTensor, "cuda": [...], "python": list, "numpy": dict | None}``."""
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [version, list(internal), gauss],
        "numpy": None,
    }
    if np is not None:
        legacy = np.random.get_state(legacy=True)  # a tuple for the MT19937 generator of np.random
        if not isinstance(legacy, tuple):
            raise TypeError(f"capture_rng(): numpy's global generator is {legacy['bit_generator']}; expected MT19937 "
                            "(the generator of numpy.random.seed), whose state is saved with checkpoints")  # fmt: skip
        kind, keys, pos, has_gauss, cached = legacy
        state["numpy"] = {"kind": kind, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                          "cached_gaussian": float(cached)}  # fmt: skip
    return state


def restore_rng(state: dict) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if np is not None and state["numpy"] is not None:
        n = state["numpy"]
        keys = np.asarray(n["keys"], dtype=np.uint32)
        np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))


# ---------------------------------------------------------------------------- checkpoints


def write_checkpoint(
    out_dir: str | Path, *, model, optimizer, scheduler, meta: dict, rng: dict, keep: int, ema: dict | None = None
) -> Path:
    """Write ``checkpoints/step-NNNNNNNN`` atomically, point ``latest.json`` at it, prune old ones."""
    out_dir = Path(out_dir)
    step = int(meta["step"])
    name = f"step-{step:08d}"
    state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "torch_rng": rng["torch"],
        "cuda_rng": rng["cuda"],
        "ema": ema,  # ExponentialMovingAverage.state_dict() or None
    }
    meta = {"format_version": FORMAT_VERSION, **meta, "rng": {"python": rng["python"], "numpy": rng["numpy"]}}
    with checkpoint.atomic_directory(out_dir / CHECKPOINTS_DIR / name) as tmp:
        checkpoint.write_model_files(model, tmp, extra={"step": step})
        _write_state(tmp, meta, state)
    checkpoint.write_atomic(out_dir / LATEST_NAME, json.dumps({"step": step, "path": f"{CHECKPOINTS_DIR}/{name}"}))
    _prune(out_dir / CHECKPOINTS_DIR, keep=keep, current=name)
    return out_dir / CHECKPOINTS_DIR / name


def _prune(directory: Path, *, keep: int, current: str) -> None:
    steps = sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith("step-"))
    for old in steps[:-keep]:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint directory named by ``out_dir/latest.json``, or None when there is none."""
    pointer = Path(out_dir) / LATEST_NAME
    if not pointer.is_file():
        return None
    try:
        return Path(out_dir) / json.loads(pointer.read_text())["path"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"Trainer.resume(): {str(pointer)!r} is damaged ({exc}); pass the checkpoint "
                         "directory explicitly: trainer.resume(out_dir/checkpoints/step-...)") from None  # fmt: skip


def _checkpoint_dir(path: str | Path) -> Path:
    """``path`` itself, or the checkpoint that ``path/latest.json`` names when ``path`` is an out_dir."""
    latest = latest_checkpoint(path)
    return Path(path) if latest is None else latest


def _write_state(directory: Path, meta: dict, state: dict) -> None:
    """``trainer.safetensors`` (the tensors of ``state``) and ``trainer.json`` (``meta`` + the rest of ``state``)."""
    tree, tensors = statefile.split(state)
    save_file(tensors, str(directory / STATE_NAME), metadata={"format": "attnkit-trainer"})
    text = json.dumps({**meta, "state": tree}, allow_nan=True)  # the loss window may hold a non-finite number
    (directory / META_NAME).write_text(text + "\n")


def read_checkpoint(path: str | Path) -> tuple[Path, dict, dict]:
    """``(checkpoint dir, trainer.json contents, optimizer/scheduler/RNG state)`` of a checkpoint dir or an out_dir."""
    path = _checkpoint_dir(path)
    if (path / LEGACY_NAME).is_file() and not (path / STATE_NAME).is_file():
        raise ValueError(
            f"Trainer.resume(): {str(path)!r} holds {LEGACY_NAME}, the pickled trainer state of attnkit before "
            f"format 2; attnkit no longer unpickles on resume. If you trust this run, convert it once with "
            f"python -c \"from attnkit.train.state import convert_legacy_checkpoint; "
            f"convert_legacy_checkpoint('{path}')\" (reads it with torch.load(weights_only=True), writes "
            f"{STATE_NAME} + {META_NAME}, removes {LEGACY_NAME}), then resume again"
        )
    expected = f"expected an out_dir with latest.json or a checkpoint directory with {META_NAME} and {STATE_NAME}"
    for name in (META_NAME, STATE_NAME):
        if not (path / name).is_file():
            raise FileNotFoundError(f"Trainer.resume(): {str(path / name)!r} does not exist; {expected}")
    meta = _read_meta(path)
    try:
        tensors = load_file(str(path / STATE_NAME))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"Trainer.resume(): {str(path / STATE_NAME)!r} is not a readable safetensors file "
                         f"({exc}); resume an earlier checkpoint") from None  # fmt: skip
    return path, meta, statefile.join(meta.pop("state"), tensors)


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads((path / META_NAME).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"Trainer.resume(): {str(path / META_NAME)!r} is not valid JSON ({exc})") from None
    version = meta.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise ValueError(f"Trainer.resume(): {str(path)!r} has trainer format_version {version}, "
                         f"newer than the {FORMAT_VERSION} this attnkit reads; upgrade attnkit")  # fmt: skip
    if version < FORMAT_VERSION or "state" not in meta:
        raise ValueError(f"Trainer.resume(): {str(path / META_NAME)!r} has trainer format_version {version} "
                         f"without its {STATE_NAME}; expected format {FORMAT_VERSION}")  # fmt: skip
    return meta


def convert_legacy_checkpoint(path: str | Path) -> Path:
    """Rewrite a format-1 checkpoint (pickled ``trainer.pt``) as ``trainer.safetensors`` + ``trainer.json``.

    An explicit, one-time step for runs saved by attnkit before format 2: ``trainer.pt`` is
    read with ``torch.load(weights_only=True)`` (tensors, numbers, strings, lists and dicts
    only; arbitrary Python objects are refused), the new files are written atomically,
    then ``trainer.pt`` is removed. ``path`` is a checkpoint directory or an out_dir.
    Returns the checkpoint directory.
    """
    path = _checkpoint_dir(path)
    legacy = path / LEGACY_NAME
    if not legacy.is_file():
        raise FileNotFoundError(f"convert_legacy_checkpoint(): {str(legacy)!r} does not exist; expected a "
                                "checkpoint directory written by attnkit before format 2")  # fmt: skip
    meta = json.loads((path / META_NAME).read_text())
    try:
        state = torch.load(legacy, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is reported the same way
        raise ValueError(f"convert_legacy_checkpoint(): {str(legacy)!r} cannot be read with "
                         f"torch.load(weights_only=True): {str(exc).splitlines()[0]}") from None  # fmt: skip
    tree, tensors = statefile.split(state)
    checkpoint.write_atomic(path / STATE_NAME, save_bytes(tensors, metadata={"format": "attnkit-trainer"}))
    meta = {**meta, "format_version": FORMAT_VERSION, "state": tree}
    checkpoint.write_atomic(path / META_NAME, json.dumps(meta, allow_nan=True) + "\n")
    legacy.unlink()
    return path

