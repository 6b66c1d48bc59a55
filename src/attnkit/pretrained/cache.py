"""Convert once, then load in about a second: a GGUF chat model cached as memory-mapped safetensors + JSON.

Reading SmolLM2's GGUF costs 25-35 s on a 2-core machine: the ``gguf`` package parses
49k tokenizer strings and merges one Python object at a time, and the Q4_1 weights
are dequantized in numpy. :func:`load_cached_llama` does that once and keeps the
result in a cache folder:

=======================  ==========================================================
file                     holds
=======================  ==========================================================
``model.safetensors``    the float32 weights, already in :func:`~attnkit.nn.decode_layout`'s
                         layout (fused ``W^Q, W^K, W^V`` blocks, transposed storage)
``tokenizer.json``       the tokenizer (``tokenizers``' own format)
``attnkit-cache.json``   format version, source file (path, size, mtime), model config,
                         chat template, and where each parameter lies in the weights file
=======================  ==========================================================

Later loads map the weights file into memory (safetensors, no copy, no pickle) and
point every parameter at its place in it: about a second instead of half a minute.

**Where.** ``$ATTNKIT_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/attnkit``, else
``~/.cache/attnkit`` (the XDG base directory convention); models go to ``gguf/`` in it.
Delete the folder at any time: it is rebuilt on the next load.

**Key.** An entry is named after the source file's stem plus a hash of its resolved
path, size, modification time (ns) and :data:`FORMAT_VERSION`. A ``stat`` costs
microseconds, where hashing the content would read the whole file (90 MB for
SmolLM2) on every load; replacing or editing the file changes its size or mtime, so
it is converted again (the stale entry stays until the folder is cleaned). A new
converter bumps :data:`FORMAT_VERSION`, which invalidates every entry.

**Atomic.** An entry is written in a hidden temp folder beside it, its JSON last,
fsynced, then renamed into place: readers see a complete entry or none. When two
processes convert at once, the first rename wins and the other uses its entry.

**Corruption.** Before use, an entry must have its three files, a JSON of the current
format naming the same source, files of exactly the recorded sizes (a truncated
copy is caught), a safetensors header that parses and lists the recorded tensors
with their shapes. An entry that fails is logged as a warning, deleted and rebuilt
from the GGUF. (A flipped bit inside the weights of a file of the right size is not
detected: checksumming 540 MB would cost more than the load itself.)

Example:
    >>> model, tokenizer, template = load_cached_llama(default_gguf_path())  # doctest: +SKIP
    >>> cache_dir()  # doctest: +SKIP
    PosixPath('/home/me/.cache/attnkit')
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..nn import TransformerConfig, TransformerLM
from ..nn.layout import decode_layout
from ._meta import empty_model, materialize_buffers
from .gguf_reader import GGUFFile, check_gguf_file

__all__ = ["ENV_VAR", "FORMAT_VERSION", "CorruptCache", "cache_dir", "cache_entry", "load_cached_llama"]

logger = logging.getLogger("attnkit.pretrained")

ENV_VAR = "ATTNKIT_CACHE_DIR"  #: environment variable that overrides the cache folder
FORMAT_VERSION = 1  #: bumped whenever the converter or the files change
WEIGHTS, TOKENIZER, META = "model.safetensors", "tokenizer.json", "attnkit-cache.json"


class CorruptCache(ValueError):
    """A cache entry exists but cannot be trusted (truncated, bad header, other format)."""


# ------------------------------------------------------------------------------ where
def cache_dir() -> Path:
    """The attnkit cache folder: ``$ATTNKIT_CACHE_DIR``, ``$XDG_CACHE_HOME/attnkit`` or ``~/.cache/attnkit``.

    Example:
        >>> previous = os.environ.get(ENV_VAR)
        >>> os.environ[ENV_VAR] = "/tmp/attnkit-doc-cache"
        >>> str(cache_dir())
        '/tmp/attnkit-doc-cache'
        >>> _ = os.environ.pop(ENV_VAR) if previous is None else os.environ.update({ENV_VAR: previous})
    """
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    absolute = bool(xdg) and Path(str(xdg)).is_absolute()  # the XDG spec: a relative path counts as unset
    base = Path(str(xdg)).expanduser() if absolute else Path.home() / ".cache"
    return base / "attnkit"


def _source(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cache_entry(path: str | os.PathLike) -> Path:
    """The cache folder of the GGUF file ``path`` (it may not exist yet); see the module docstring for the key."""
    path = Path(path)
    check_gguf_file(path)
    source = _source(path)
    key = json.dumps([FORMAT_VERSION, source["path"], source["size"], source["mtime_ns"]])
    return cache_dir() / "gguf" / f"{path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


# ------------------------------------------------------------------------------ load
def load_cached_llama(path: str | os.PathLike) -> tuple[TransformerLM, Any, str | None]:
    """``(model, tokenizer, chat_template)`` of a Llama GGUF, converted once and then read from the cache.

    ``model`` is a float32 :class:`~attnkit.nn.TransformerLM` in eval mode with
    :func:`~attnkit.nn.decode_layout` applied, its weights memory-mapped;
    ``tokenizer`` a ``tokenizers.Tokenizer``; ``chat_template`` the Jinja source or None.
    When the cache folder cannot be written (read-only home), the converted model is
    returned anyway, with a warning.

    Raises:
        FileNotFoundError, ValueError: as :class:`~attnkit.pretrained.GGUFFile` (no such
            file, not a GGUF, not a Llama).
    """
    path = Path(path)
    entry = cache_entry(path)
    try:
        return _read_entry(entry, _source(path))
    except FileNotFoundError:
        pass  # not converted yet
    except CorruptCache as error:
        logger.warning("attnkit cache: %s; converting %s again", error, path.name)
        shutil.rmtree(entry, ignore_errors=True)
    parts = _convert(path)
    try:
        _write_entry(entry, *parts, source=_source(path))
    except OSError as error:
        logger.warning("attnkit cache: cannot write %s (%s); set %s to a writable folder", entry, error, ENV_VAR)
        return parts
    return _read_entry(entry, _source(path))


def _convert(path: Path) -> tuple[TransformerLM, Any, str | None]:
    from .gguf_tokenizer import tokenizer_from_gguf
    from .llama import load_llama_gguf

    gguf_file = GGUFFile(path)
    model = load_llama_gguf(gguf_file)
    decode_layout(model)  # in place: same values, the one-token layout that the cache then stores
    return model, tokenizer_from_gguf(gguf_file.metadata), gguf_file.metadata.get("tokenizer.chat_template") or None


# ------------------------------------------------------------------------------ write
def _write_entry(entry: Path, model: TransformerLM, tokenizer, template: str | None, *, source: dict) -> None:
    from safetensors.torch import save_file

    storages, layout = _flatten(model)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.tmp-"))
    try:
        save_file(storages, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / TOKENIZER).write_text(tokenizer.to_str(), encoding="utf-8")
        meta = {"format_version": FORMAT_VERSION, "source": source, "config": model.config.to_dict(),
                "chat_template": template, "layout": layout,
                "bytes": {name: (tmp / name).stat().st_size for name in (WEIGHTS, TOKENIZER)}}  # fmt: skip
        (tmp / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")  # last: its presence means complete
        for name in (WEIGHTS, TOKENIZER, META):
            _fsync(tmp / name)
        _fsync(tmp)
        _rename_into_place(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after a successful rename


def _rename_into_place(tmp: Path, entry: Path) -> None:
    try:
        os.rename(tmp, entry)  # atomic; fails if another process put a (non-empty) entry there first
    except OSError:
        if not (entry / META).is_file():
            raise
    _fsync(entry.parent)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory
        pass
    finally:
        os.close(fd)


def _flatten(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, dict]]:
    """Each distinct storage as a 1-D tensor, and where every parameter / tensor attribute lies in one.

    Parameters that share storage (tied embeddings, the fused blocks of ``decode_layout``)
    keep sharing it after :func:`_restore`. Tensor attributes of modules (``_fused_qkv``)
    are recorded the same way.
    """
    storages: dict[str, Tensor] = {}
    names: dict[int, str] = {}

    def place(t: Tensor) -> list:
        t = t.detach()
        ptr = t.untyped_storage().data_ptr()
        if ptr not in names:
            names[ptr] = f"storage.{len(names)}"
            flat = torch.empty(0, dtype=t.dtype).set_(t.untyped_storage())  # the whole storage, 1-D
            storages[names[ptr]] = flat
        flat = storages[names[ptr]]
        if flat.dtype != t.dtype:
            raise ValueError(f"attnkit cache: a storage holds both {flat.dtype} and {t.dtype} tensors")
        return [names[ptr], t.storage_offset(), list(t.shape), list(t.stride())]

    parameters = {name: place(p) for name, p in model.named_parameters(remove_duplicate=False)}
    buffers = {name: place(b) for name, b in _persistent_buffers(model)}
    attributes = {f"{prefix}.{attr}".lstrip("."): place(value) for prefix, module in model.named_modules()
                  for attr, value in vars(module).items() if isinstance(value, Tensor)}  # fmt: skip
    stored = sum(t.numel() for t in storages.values())
    needed = sum(p.numel() for p in model.parameters())
    if stored > 1.01 * needed + 1_000_000:
        raise ValueError(f"attnkit cache: parameters view {stored} stored values for {needed} parameters")
    return storages, {"parameters": parameters, "buffers": buffers, "attributes": attributes}


def _persistent_buffers(model: nn.Module):
    state = set(model.state_dict(keep_vars=True))
    return [(name, b) for name, b in model.named_buffers() if name in state]


# ------------------------------------------------------------------------------ read
def _read_entry(entry: Path, source: dict) -> tuple[TransformerLM, Any, str | None]:
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    if not entry.is_dir():
        raise FileNotFoundError(entry)
    meta = _check_entry(entry, source)
    try:
        flat = load_file(str(entry / WEIGHTS))  # memory-mapped
    except Exception as error:  # safetensors raises its own SafetensorError
        raise CorruptCache(f"{entry / WEIGHTS} cannot be read: {error}") from error
    _check_storages(entry, flat, meta["layout"])
    try:
        config = TransformerConfig.from_dict(meta["config"])
        tokenizer = Tokenizer.from_file(str(entry / TOKENIZER))
    except Exception as error:  # a config attnkit refuses, or tokenizers' own parse error
        raise CorruptCache(f"{entry.name} holds an unreadable config or tokenizer: {error}") from error
    model = empty_model(TransformerLM, config)
    _restore(model, flat, meta["layout"])
    materialize_buffers(model)
    return model.eval(), tokenizer, meta["chat_template"]


def _check_entry(entry: Path, source: dict) -> dict:
    try:
        meta = json.loads((entry / META).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CorruptCache(f"{entry.name}/{META} is missing or not JSON ({error})") from error
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise CorruptCache(f"{entry.name} has format {meta.get('format_version') if isinstance(meta, dict) else '?'}, "
                           f"expected {FORMAT_VERSION}")  # fmt: skip
    if meta.get("source") != source:
        raise CorruptCache(f"{entry.name} was converted from {meta.get('source')}, not {source}")
    for name, size in meta.get("bytes", {}).items():
        actual = (entry / name).stat().st_size if (entry / name).is_file() else None
        if actual != size:
            raise CorruptCache(f"{entry.name}/{name} has {actual} bytes, expected {size} (truncated or replaced)")
    if set(meta.get("bytes", {})) != {WEIGHTS, TOKENIZER} or not {"layout", "config"} <= set(meta):
        raise CorruptCache(f"{entry.name}/{META} is incomplete")
    return meta


def _check_storages(entry: Path, flat: dict[str, Tensor], layout: dict) -> None:
    for group in ("parameters", "buffers", "attributes"):
        for name, (storage, offset, shape, stride) in layout[group].items():
            t = flat.get(storage)
            if len(shape) != len(stride):
                raise CorruptCache(f"{entry.name}/{META} gives {name} {len(shape)} sizes and {len(stride)} strides")
            extent = offset + sum((n - 1) * s for n, s in zip(shape, stride, strict=True)) + 1 if all(shape) else 0
            if t is None or t.dim() != 1 or extent > t.numel():
                raise CorruptCache(f"{entry.name}/{WEIGHTS} lacks the values of {name} ({storage})")


def _restore(model: nn.Module, flat: dict[str, Tensor], layout: dict) -> None:
    """Point parameters, buffers and tensor attributes at their views of the (mapped) storages."""
    made: dict[tuple, nn.Parameter] = {}

    def view(spec: list) -> Tensor:
        storage, offset, shape, stride = spec
        t = flat[storage]
        return t.as_strided(shape, stride, t.storage_offset() + offset)

    for name, spec in layout["parameters"].items():
        module, attr = _owner(model, name)
        key = (spec[0], spec[1], tuple(spec[2]), tuple(spec[3]))
        if key not in made:
            made[key] = nn.Parameter(view(spec), requires_grad=getattr(module, attr).requires_grad)
        module._parameters[attr] = made[key]  # tied names get the same Parameter
    for name, spec in layout["buffers"].items():
        module, attr = _owner(model, name)
        module._buffers[attr] = view(spec)
    for name, spec in layout["attributes"].items():
        module, attr = _owner(model, name)
        setattr(module, attr, view(spec))
    missing = [name for name, p in model.named_parameters() if p.is_meta]
    if missing:
        raise CorruptCache(f"the cache entry has no values for {missing[:4]}")


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    prefix, _, attr = name.rpartition(".")
    return (model.get_submodule(prefix) if prefix else model), attr
