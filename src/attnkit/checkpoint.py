"""Checkpoints: weights in safetensors, the config in JSON, written atomically; never pickle.

A checkpoint is a directory::

    my-model/
      model.safetensors   every tensor of model.state_dict(), each shared storage once
      config.json         {"format_version", "model_class", "config", "tied", "extra"}

Tied weights (the shared embedding / output projection of paper 3.4) are one
storage under several names; safetensors refuses to store aliases, so the first
name is saved and ``config.json["tied"]`` maps every other name to it
(``{"generator.weight": "src_embed.tokens.weight", ...}``). Loading rebuilds
the model from its config, which re-creates the tie, and copies the one tensor
into it.

Writes are atomic: the files go to a hidden sibling ``.<name>.tmp-XXXX``
directory that is renamed into place only when complete, so a crash never
leaves a half-written checkpoint under ``path_dir``. Written files get mode
``0o666 & ~umask`` and directories ``0o777 & ~umask``, as ``open()`` and ``mkdir()``
would make them (``mkstemp``/``mkdtemp`` alone give 0600/0700). Loading reads safetensors,
JSON, and ``.pt``/``.bin`` state dicts only through
``torch.load(weights_only=True)``, which refuses pickled Python objects.

The format itself lives in :mod:`attnkit._checkpoint_io`, below :mod:`attnkit.nn`, whose models
offer the same as methods: ``model.save_pretrained(dir)`` and ``Model.from_pretrained(dir)``
(:mod:`attnkit.nn.pretrained_io`). :func:`load` is here because it rebuilds any attnkit model.

Example:
    >>> import tempfile, torch
    >>> from attnkit.nn import TransformerConfig, TransformerLM
    >>> cfg = TransformerConfig(vocab_size=20, d_model=16, num_heads=2, d_ff=32,
    ...                         num_encoder_layers=0, num_decoder_layers=1)
    >>> model = TransformerLM(cfg).eval()
    >>> path = save(model, tempfile.mkdtemp() + "/lm")
    >>> again = load(path)
    >>> ids = torch.tensor([[1, 2, 3]])
    >>> torch.equal(model(ids), again(ids)), again.lm_head.weight is again.embed.tokens.weight
    (True, True)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ._checkpoint_io import (  # noqa: F401  (importable from here, as before)
    CONFIG_NAME,
    DIR_MODE,
    FILE_MODE,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    atomic_directory,
    current_umask,
    load_as,
    load_state,
    read_config,
    read_state_dict,
    save,
    write_atomic,
    write_model_files,
)
from .nn.config import TransformerConfig
from .nn.transformer import Encoder, Transformer, TransformerLM

__all__ = [
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "CONFIG_NAME",
    "save",
    "load",
    "load_state",
    "read_config",
    "read_state_dict",
    "write_model_files",
    "atomic_directory",
    "write_atomic",
]

#: the classes load() rebuilds from config.json["model_class"]
_MODEL_CLASSES: dict[str, type[nn.Module]] = {"Transformer": Transformer, "TransformerLM": TransformerLM,
                                              "Encoder": Encoder}  # fmt: skip


def load(path_dir: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved by :func:`save` at ``path_dir`` (its class from ``config.json``).

    Returns the model on ``map_location`` in eval mode (call ``.train()`` to fine-tune).
    ``Model.from_pretrained(path_dir)`` does the same for a known class.

    Example:
        >>> load("/no/such/checkpoint")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: load(): path_dir '/no/such/checkpoint' does not exist; expected a checkpoint ...
    """
    path_dir = Path(path_dir)
    name = read_config(path_dir)["model_class"]
    if name not in _MODEL_CLASSES:
        raise ValueError(
            f"load(): {str(path_dir / CONFIG_NAME)!r} names model_class {name!r}; expected one of "
            f"{sorted(_MODEL_CLASSES)}. Hint: build the model yourself and call load_state(model, path_dir)"
        )
    return load_as(_MODEL_CLASSES[name], TransformerConfig, path_dir, map_location=map_location)
