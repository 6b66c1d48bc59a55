"""Model sizes and the :class:`Translator` bundle: Transformer + tokenizer + what they were trained on.

Sizes (presets of :class:`~attnkit.nn.TransformerConfig`, vocabulary from the tokenizer):

=========  =======  =====  ====  ===============  ========  =====================
size       d_model  heads  d_ff  enc + dec layers  dropout   layout
=========  =======  =====  ====  ===============  ========  =====================
``tiny``   64       4      256   2 + 2            0.1       pre-LN (tests, demos)
``small``  256      4      1024  3 + 3            0.1       pre-LN (minutes on CPU)
``base``   512      8      2048  6 + 6            0.1       post-LN, the paper's base
=========  =======  =====  ====  ===============  ========  =====================

A translation model directory (written atomically, as one unit)::

    model/
      model.safetensors, config.json   weights and TransformerConfig (attnkit.checkpoint)
      tokenizer.json                   the joint BPE vocabulary
      translate.json                   pair, corpus, seed, size, scores, confidence calibration

Example:
    >>> cfg = model_config("tiny", vocab_size=500)
    >>> cfg.d_model, cfg.num_encoder_layers, cfg.tie_embeddings
    (64, 2, True)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...nn import Transformer, TransformerConfig
from .tokenizer import TOKENIZER_NAME, SubwordTokenizer

__all__ = ["SIZES", "model_config", "Translator", "MODEL_DIR", "INFO_NAME", "find_model_dir"]

SIZES = ("tiny", "small", "base")
MODEL_DIR = "model"  # the final model inside a training run directory
INFO_NAME = "translate.json"
_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(d_model=64, num_heads=4, d_ff=256, num_encoder_layers=2, num_decoder_layers=2),
    "small": dict(d_model=256, num_heads=4, d_ff=1024, num_encoder_layers=3, num_decoder_layers=3),
}


def model_config(size: str, vocab_size: int, *, dropout: float | None = None) -> TransformerConfig:
    """The :class:`TransformerConfig` of preset ``size`` for a joint vocabulary of ``vocab_size``."""
    if size not in SIZES:
        raise ValueError(f"model_config(): size must be one of {SIZES}, got {size!r}")
    overrides: dict[str, Any] = {} if dropout is None else {"dropout": dropout}
    if size == "base":
        return TransformerConfig.paper_base(vocab_size, **overrides)
    return TransformerConfig(vocab_size=vocab_size, tie_embeddings=True, **{**_PRESETS[size], **overrides})


def find_model_dir(path: str | Path) -> Path:
    """The model directory for ``path``: the directory itself, or ``path/model`` of a training run."""
    path = Path(path)
    for candidate in (path, path / MODEL_DIR):
        if (candidate / "config.json").is_file() and (candidate / TOKENIZER_NAME).is_file():
            return candidate
    if (path / "latest.json").is_file() and (path / TOKENIZER_NAME).is_file():
        return path  # an interrupted run: its latest checkpoint (see Translator.load)
    raise FileNotFoundError(
        f"--model {str(path)!r}: no translation model there (expected config.json, model.safetensors and "
        f"{TOKENIZER_NAME}, or a training run directory with {MODEL_DIR}/ or checkpoints); train one with "
        "`attnkit translate train --out DIR`"
    )


@dataclass
class Translator:
    """A trained translation model with its tokenizer; ``translate()`` turns sentences into sentences.

    ``info`` is the ``translate.json`` content (pair, corpus, seed, size, scores...).

    Example (an untrained model, so the output is noise):
        >>> import tempfile
        >>> tok = SubwordTokenizer.train(["one", "eins", "two", "zwei"], vocab_size=30)
        >>> model = Transformer(model_config("tiny", tok.vocab_size))
        >>> saved = Translator(model, tok, {"pair": "en-de"}).save(tempfile.mkdtemp() + "/model")
        >>> again = Translator.load(saved)
        >>> again.pair, len(again.translate(["one", "two"], beam_size=2))
        ('en-de', 2)
    """

    model: Transformer  # the encoder-decoder, in eval mode after load()
    tokenizer: SubwordTokenizer  # its joint BPE vocabulary (same size as the model's)
    info: dict = field(default_factory=dict)  # translate.json: pair, corpus, settings, steps, validation scores

    def __post_init__(self) -> None:
        vocab = self.model.config.vocab_size
        if vocab != self.tokenizer.vocab_size:
            raise ValueError(f"Translator(): the model has a vocabulary of {vocab} but the tokenizer has "
                             f"{self.tokenizer.vocab_size}; they were not trained together")  # fmt: skip

    @property
    def pair(self) -> str:
        return self.info.get("pair", "?-?")

    @property
    def calibration(self):
        """The stored :class:`~.confidence.Calibration`, or None (a model saved before attnkit stored one)."""
        from .confidence import INFO_KEY, Calibration

        doc = self.info.get(INFO_KEY)
        return None if doc is None else Calibration.from_dict(doc)

    def confidence(self, sentences: Sequence[str], translations: Sequence[str]) -> list:
        """Per pair, a :class:`~.confidence.Confidence`: the score and, if calibrated, out-of-domain or not."""
        from .confidence import check

        return check(self.model, self.tokenizer, sentences, translations, self.calibration)

    def translate(self, sentences: Sequence[str], *, beam_size: int = 4, batch_size: int = 32) -> list[str]:
        """Translate ``sentences`` (beam search; ``beam_size=1`` is greedy)."""
        from .evaluate import translate_batch

        return translate_batch(self.model, self.tokenizer, sentences, beam_size=beam_size, batch_size=batch_size)

    def save(self, path: str | Path) -> Path:
        """Write the model directory (weights, config, tokenizer, info) atomically."""
        from ... import checkpoint

        with checkpoint.atomic_directory(path) as tmp:
            checkpoint.write_model_files(self.model, tmp, extra={"app": "translate", "pair": self.pair})
            (tmp / TOKENIZER_NAME).write_text(self.tokenizer.to_str(), encoding="utf-8")
            (tmp / INFO_NAME).write_text(json.dumps(self.info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, *, map_location: str | torch.device = "cpu") -> Translator:
        """Load a model directory, or a training run (its final model, else its latest checkpoint)."""
        from ... import checkpoint
        from ...train.state import latest_checkpoint

        directory = find_model_dir(path)
        latest = None if (directory / "config.json").is_file() else latest_checkpoint(directory)
        if latest is not None:  # a training run without a final model: its latest checkpoint
            weights, info_path = latest, directory / "run.json"
        else:
            weights, info_path = directory, directory / INFO_NAME
        model = checkpoint.load(weights, map_location=map_location)
        if not isinstance(model, Transformer):
            raise ValueError(f"Translator.load(): {str(weights)!r} holds a {type(model).__name__}, expected an "
                             "encoder-decoder Transformer")  # fmt: skip
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
        return cls(model.eval(), SubwordTokenizer.load(directory / TOKENIZER_NAME), info)
