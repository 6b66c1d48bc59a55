"""``save_pretrained(dir)`` / ``from_pretrained(dir)`` on attnkit's models, in the checkpoint format.

A saved model is a directory that :mod:`attnkit.checkpoint` reads and writes::

    my-model/
      model.safetensors   the weights (tied weights stored once), never a pickle
      config.json         {"format_version", "model_class", "config": TransformerConfig fields, "tied", "extra"}

The directory is written atomically (a hidden temp sibling renamed into place), so a crash
never leaves a half-written model; ``from_pretrained`` rebuilds the model from its config
(re-creating tied weights), loads the weights strictly and returns it in eval mode.
``attnkit.checkpoint.load(dir)`` reads the same directory without naming the class.

Example:
    >>> import tempfile, torch
    >>> from attnkit.nn import TransformerConfig, TransformerLM
    >>> cfg = TransformerConfig(vocab_size=20, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=0,
    ...                         num_decoder_layers=1)
    >>> lm = TransformerLM(cfg).eval()
    >>> path = lm.save_pretrained(tempfile.mkdtemp() + "/tiny-lm")
    >>> again = TransformerLM.from_pretrained(path)
    >>> ids = torch.tensor([[1, 2, 3]])
    >>> torch.equal(lm(ids), again(ids)), again.config == cfg
    (True, True)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from .._checkpoint_io import atomic_directory, load_as, write_model_files
from .config import TransformerConfig

__all__ = ["PretrainedMixin"]

Model = TypeVar("Model", bound="PretrainedMixin")


class PretrainedMixin:
    """Adds :meth:`save_pretrained` and :meth:`from_pretrained` to a module built as ``cls(config)``.

    The class stores its :class:`TransformerConfig` as ``self.config``.
    """

    config: TransformerConfig

    def save_pretrained(self, path_dir: str | os.PathLike, *, extra: dict | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` to the directory ``path_dir``, atomically.

        ``extra`` is any JSON-serializable dict kept in ``config.json["extra"]`` (a tokenizer
        name, a score). An existing attnkit checkpoint at ``path_dir`` is replaced; any other
        non-empty directory is refused. Returns ``Path(path_dir)``.
        """
        if not isinstance(self, nn.Module):  # the mixin is for modules only
            raise TypeError(f"save_pretrained(): {type(self).__name__} is not a torch.nn.Module")
        with atomic_directory(path_dir) as tmp:
            write_model_files(self, tmp, extra=extra)
        return Path(path_dir)

    @classmethod
    def from_pretrained(
        cls: type[Model], path_dir: str | os.PathLike, *, map_location: str | torch.device = "cpu"
    ) -> Model:
        """The model saved at ``path_dir`` by :meth:`save_pretrained` (or ``checkpoint.save``), in eval mode.

        The directory must hold a model of this class; its weights are loaded strictly (a missing,
        unexpected or differently shaped tensor raises ``ValueError`` naming it).
        """
        owner = f"{cls.__name__}.from_pretrained()"
        model = load_as(cls, TransformerConfig, path_dir, map_location=map_location, owner=owner)  # type: ignore[arg-type]
        return model  # type: ignore[return-value]
