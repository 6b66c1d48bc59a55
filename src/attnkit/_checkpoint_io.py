"""The checkpoint directory format, below :mod:`attnkit.nn`: safetensors + JSON, atomic writes, no pickle.

:mod:`attnkit.checkpoint` is the public face (its docstring describes the format); this module
holds everything of it that does not need attnkit's model classes, so that the models in
:mod:`attnkit.nn` can offer ``save_pretrained`` / ``from_pretrained`` without importing upward
(``checkpoint.load`` rebuilds any attnkit model, so it imports :mod:`attnkit.nn`).

Example:
    >>> import tempfile, torch
    >>> path = save(torch.nn.Linear(2, 3), tempfile.mkdtemp() + "/linear")
    >>> sorted(p.name for p in path.iterdir()), read_config(path)["model_class"]
    (['config.json', 'model.safetensors'], 'Linear')
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

__all__ = [
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "CONFIG_NAME",
    "save",
    "load_as",
    "load_state",
    "read_config",
    "read_state_dict",
    "write_model_files",
    "atomic_directory",
    "write_atomic",
]

FORMAT_VERSION = 1  # bump when config.json changes incompatibly; load() refuses newer versions
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin")

# ---------------------------------------------------------------------------- atomic files

FILE_MODE, DIR_MODE = 0o666, 0o777  # before the umask, as open() and mkdir() use them


def current_umask() -> int:
    """The process umask (read from /proc where it exists: setting it to read it races with other threads)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask



def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same directory and ``os.replace``.

    Readers see the old file or the new one, never a partial one. Missing parent folders
    are created; the file's mode follows the umask, like any new file.

    Example:
        >>> import tempfile
        >>> p = write_atomic(tempfile.mkdtemp() + "/notes/note.txt", "hello")
        >>> p.read_text()
        'hello'
    """
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        os.fchmod(fd, FILE_MODE & ~current_umask())  # mkstemp makes 0600; a plain open() would follow the umask
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield an empty temp directory that becomes ``path`` when the block exits without error.

    The temp directory is a hidden sibling (same filesystem, so the rename is atomic).
    A new ``path`` appears complete or not at all. An existing ``path`` (allowed with
    ``overwrite=True`` when it is an attnkit checkpoint or empty) is swapped out by two
    renames; a crash between them leaves it at ``.<name>.old-XXXX``, never half written.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> with atomic_directory(root / "ckpt") as tmp:
        ...     _ = (tmp / "a.txt").write_text("x")
        >>> sorted(p.name for p in root.iterdir()), (root / "ckpt" / "a.txt").read_text()
        (['ckpt'], 'x')
    """
    path = Path(path)
    _check_replaceable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        yield tmp
        umask = current_umask()
        for child in tmp.iterdir():
            _fsync_file(child)
            if child.is_file():
                child.chmod(FILE_MODE & ~umask)  # as open() would make it (safetensors writes 0600)
        tmp.chmod(DIR_MODE & ~umask)  # mkdtemp makes 0700
        _fsync_dir(tmp)
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_replaceable(path: Path, overwrite: bool) -> None:
    if not path.exists():
        return
    if not path.is_dir():
        raise FileExistsError(f"save(): path_dir {str(path)!r} exists and is a file, expected a directory; "
                              "choose another path")  # fmt: skip
    is_checkpoint = (path / CONFIG_NAME).is_file()
    if not overwrite or not (is_checkpoint or not any(path.iterdir())):
        raise FileExistsError(
            f"save(): path_dir {str(path)!r} exists and is not an attnkit checkpoint (no {CONFIG_NAME}); "
            "refusing to replace it; choose a new directory"
        )


def _swap_in(tmp: Path, path: Path) -> None:
    if not path.exists():
        os.replace(tmp, path)  # atomic: the directory appears complete
    else:
        old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
        os.replace(path, old / path.name)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(path.parent)


def _fsync_file(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform/filesystem can fsync a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

# ---------------------------------------------------------------------------- save


def save(model: nn.Module, path_dir: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Save ``model`` to the directory ``path_dir`` (``model.safetensors`` + ``config.json``), atomically.

    ``model.config`` (a :class:`~attnkit.nn.TransformerConfig`, or anything with ``to_dict()``)
    is stored so :func:`attnkit.checkpoint.load` can rebuild the model; a model without one is saved too and
    can be restored with :func:`load_state`. ``extra`` is any JSON-serializable dict kept
    in ``config.json["extra"]``. An existing checkpoint at ``path_dir`` is replaced.

    Example:
        >>> import tempfile
        >>> from attnkit.nn import TransformerConfig, Transformer
        >>> cfg = TransformerConfig(vocab_size=20, d_model=16, num_heads=2, d_ff=32,
        ...                         num_encoder_layers=1, num_decoder_layers=1)
        >>> path = save(Transformer(cfg), tempfile.mkdtemp() + "/mt", extra={"bleu": 27.3})
        >>> sorted(p.name for p in path.iterdir())
        ['config.json', 'model.safetensors']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"save(): model must be a torch.nn.Module, got {type(model).__name__}")
    with atomic_directory(path_dir) as tmp:
        write_model_files(model, tmp, extra=extra)
    return Path(path_dir)


def write_model_files(model: nn.Module, directory: str | os.PathLike, *, extra: dict | None = None) -> None:
    """Write ``model.safetensors`` then ``config.json`` into an existing ``directory`` (not atomic alone:
    use it inside :func:`atomic_directory`, as :func:`save` and the Trainer do)."""
    directory = Path(directory)
    tensors, tied = _dedupe_state_dict(model.state_dict())
    save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    meta = {
        "format_version": FORMAT_VERSION,
        "model_class": type(model).__name__,
        "config": _config_dict(model),
        "tied": tied,
        "extra": {} if extra is None else extra,
    }
    try:
        text = json.dumps(meta, indent=2, sort_keys=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"save(): extra must be a JSON-serializable dict (str, numbers, lists, dicts); {exc}") from None
    (directory / CONFIG_NAME).write_text(text + "\n")


def _config_dict(model: nn.Module) -> dict | None:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return None
    return config.to_dict()


def _dedupe_state_dict(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Keep each aliased tensor once: ``(tensors to write, {alias name: kept name})``.

    Tensors that are the same view of the same storage are aliases; tensors that merely
    overlap a storage already kept are copied, since safetensors refuses shared memory.
    """
    kept: dict[str, Tensor] = {}
    tied: dict[str, str] = {}
    by_view: dict[tuple, str] = {}
    storages: set[int] = set()
    for name, tensor in state.items():
        view = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
                tensor.stride(), tensor.dtype, tensor.device)  # fmt: skip
        if view in by_view and tensor.numel() > 0:
            tied[name] = by_view[view]
            continue
        by_view[view] = name
        out = tensor.detach().to("cpu").contiguous()
        if out.untyped_storage().data_ptr() in storages:
            out = out.clone()  # overlaps a kept tensor without being the same view
        storages.add(out.untyped_storage().data_ptr())
        kept[name] = out
    return kept, tied


# ---------------------------------------------------------------------------- load


def load_as(cls: type[nn.Module], config_class, path_dir: str | os.PathLike, *,
            map_location: str | torch.device = "cpu", owner: str = "load()") -> nn.Module:  # fmt: skip
    """Build ``cls(config_class.from_dict(config))`` from the checkpoint at ``path_dir`` and load its weights.

    The checkpoint's ``model_class`` must be ``cls``'s name. Returns the model on ``map_location``
    in eval mode. ``owner`` starts the error messages (``"TransformerLM.from_pretrained()"``).
    """
    path_dir = Path(path_dir)
    meta = read_config(path_dir)
    where = repr(str(path_dir / CONFIG_NAME))
    if meta["model_class"] != cls.__name__:
        raise ValueError(f"{owner}: {where} holds a {meta['model_class']!r}, not a {cls.__name__}; load it with "
                         f"{meta['model_class']}.from_pretrained() or attnkit.checkpoint.load()")  # fmt: skip
    if meta.get("config") is None:
        raise ValueError(f"{owner}: {where} holds no model config; build the model "
                         "yourself and call load_state(model, path_dir)")  # fmt: skip
    try:
        config = config_class.from_dict(meta["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{owner}: invalid config in {where}: {exc}") from None
    model = cls(config)
    load_state(model, path_dir)
    return model.to(map_location).eval()


def read_config(path_dir: str | os.PathLike) -> dict:
    """Read and validate ``config.json`` of a checkpoint directory (format version, required keys)."""
    path_dir = Path(path_dir)
    expected = (f"expected a checkpoint directory with {CONFIG_NAME} and {WEIGHTS_NAME} "
                "written by attnkit.checkpoint.save()")  # fmt: skip
    if not path_dir.is_dir():
        raise FileNotFoundError(f"load(): path_dir {str(path_dir)!r} does not exist; {expected}")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (path_dir / name).is_file():
            raise FileNotFoundError(f"load(): {str(path_dir / name)!r} is missing; {expected}")
    config_path = path_dir / CONFIG_NAME
    try:
        meta = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"load(): {str(config_path)!r} is not valid JSON ({exc}); the file is damaged") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("format_version"), int) or "model_class" not in meta:
        raise ValueError(f"load(): {str(config_path)!r} lacks format_version/model_class; {expected}")
    if meta["format_version"] > FORMAT_VERSION:
        raise ValueError(
            f"load(): {str(config_path)!r} has format_version {meta['format_version']}, newer than the "
            f"{FORMAT_VERSION} this attnkit reads; upgrade attnkit to load it"
        )
    return meta


def load_state(model: nn.Module, path: str | os.PathLike, *, strict: bool = True) -> nn.Module:
    """Copy the weights at ``path`` into ``model`` (in place) and return it.

    ``path`` is a checkpoint directory, a ``.safetensors`` file, or a ``.pt``/``.pth``/``.bin``
    state dict (read with ``torch.load(weights_only=True)``). Names missing from the file
    but tied in ``model`` to a name that is present are filled from it. With ``strict``,
    any missing or unexpected key or shape mismatch raises a ``ValueError`` listing them.
    """
    path = Path(path)
    tied: dict[str, str] = {}  # alias -> the name stored in the file
    if path.is_dir():
        tied = read_config(path).get("tied") or {}
        path = path / WEIGHTS_NAME
    state = read_state_dict(path)
    for alias, kept in tied.items():
        if alias not in state and kept in state:
            state[alias] = state[kept]
    _fill_model_ties(model, state)
    _check_compatible(model, state, path, strict)
    with torch.no_grad():
        model.load_state_dict(state, strict=strict)
    return model


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a ``{name: tensor}`` dict from a ``.safetensors`` file or, without unpickling, a ``.pt``/``.bin``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_state(): {str(path)!r} does not exist; expected a .safetensors file, "
                                "a .pt/.bin state dict or a checkpoint directory")  # fmt: skip
    if path.suffix in _PICKLE_SUFFIXES:
        return _read_torch_file(path)
    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as exc:
        raise ValueError(f"load_state(): {str(path)!r} is truncated or not a safetensors file ({exc}); "
                         f"the file has {path.stat().st_size} bytes; re-save it") from None  # fmt: skip


def _read_torch_file(path: Path) -> dict[str, Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as exc:
        found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(exc))
        reason = found.group(1).strip() if found else str(exc).splitlines()[0]
        raise ValueError(
            f"load_state(): {str(path)!r} cannot be read as a tensors-only state dict ({reason}); attnkit reads "
            ".pt/.bin files with torch.load(weights_only=True) and never unpickles Python objects. Hint: convert "
            "it to safetensors in a trusted environment"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"load_state(): {str(path)!r} holds a {type(obj).__name__}, expected a dict of "
                         "name -> tensor (a state dict)")  # fmt: skip
    return dict(obj)


def _fill_model_ties(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Fill names tied in ``model`` from a present partner; refuse tied names with different values."""
    groups: dict[tuple, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if tensor.numel():
            groups.setdefault((tensor.data_ptr(), tuple(tensor.shape)), []).append(name)
    for names in groups.values():
        present = [n for n in names if n in state]
        if len(names) < 2 or not present:
            continue
        first = state[present[0]]
        for other in present[1:]:
            if state[other].shape == first.shape and not torch.equal(state[other], first):
                raise ValueError(f"load_state(): {names} are one tied parameter in the model but the file "
                                 f"holds different values for {present[0]!r} and {other!r}")  # fmt: skip
        for name in names:
            state.setdefault(name, first)


def _check_compatible(model: nn.Module, state: Mapping[str, Tensor], path: Path, strict: bool) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in expected if k in state and state[k].shape != expected[k].shape]  # fmt: skip
    if not strict:
        missing, unexpected = [], []
    if missing or unexpected or shapes:
        labelled = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
        parts = [f"{label} ({len(keys)}): {_head(keys)}" for label, keys in labelled if keys]
        raise ValueError(
            f"load_state(): {str(path)!r} does not match {type(model).__name__}: " + "; ".join(parts)
            + ". Hint: build the model from the checkpoint's config.json (attnkit.checkpoint.load)"
        )


def _head(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")
