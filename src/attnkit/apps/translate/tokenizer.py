"""A joint source+target subword tokenizer: byte-pair encoding (Sennrich et al., 2016) via Hugging Face ``tokenizers``.

One vocabulary for both languages, so the Transformer can tie its source and target
embeddings and the output projection (paper 3.4). Layout:

* special tokens with the ids :class:`~attnkit.nn.TransformerConfig` expects:
  ``<pad>`` = 0, ``<s>`` = 1 (BOS), ``</s>`` = 2 (EOS), ``<unk>`` = 3;
* NFC normalization; words keep their leading space as ``▁`` (SentencePiece style),
  so decoding restores the spacing exactly;
* every digit is a token of its own, so numbers and years never seen in training
  are still spelled with known pieces.

Saved as one ``tokenizer.json`` (the ``tokenizers`` format) beside the model.

Example:
    >>> tok = SubwordTokenizer.train(["one thousand", "eintausend", "two", "zwei"], vocab_size=60)
    >>> tok.decode(tok.encode("zwei thousand"))
    'zwei thousand'
    >>> tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id
    (0, 1, 2, 3)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["SubwordTokenizer", "SPECIAL_TOKENS", "TOKENIZER_NAME"]

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0, 1, 2, 3: pad, bos, eos, unk
TOKENIZER_NAME = "tokenizer.json"


class SubwordTokenizer:
    """BPE tokenizer with fixed special ids; wraps a ``tokenizers.Tokenizer``."""

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, tokenizer):
        from tokenizers import Tokenizer

        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"SubwordTokenizer(): expected a tokenizers.Tokenizer, got {type(tokenizer).__name__}; "
                            "build one with SubwordTokenizer.train() or .load()")  # fmt: skip
        ids = [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS]
        if ids != [0, 1, 2, 3]:
            raise ValueError(f"SubwordTokenizer(): special tokens {SPECIAL_TOKENS} must have ids [0, 1, 2, 3] "
                             f"(TransformerConfig pad/bos/eos ids), got {ids}")  # fmt: skip
        tokenizer.encode_special_tokens = True  # "<s>" typed in a text is text, not BOS
        self._tok = tokenizer

    # ------------------------------------------------------------------ building
    @classmethod
    def train(cls, texts: Iterable[str], *, vocab_size: int = 8000, min_frequency: int = 2) -> SubwordTokenizer:
        """Learn BPE merges from ``texts`` (both languages) up to ``vocab_size`` tokens (fewer if the data runs out)."""
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < len(SPECIAL_TOKENS) + 1:
            raise ValueError(f"SubwordTokenizer.train(): vocab_size must be an int > {len(SPECIAL_TOKENS)}, got "
                             f"{vocab_size!r}; a few thousand suits most corpora")  # fmt: skip
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Metaspace(), pre_tokenizers.Digits(individual_digits=True)]
        )
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
            show_progress=False, initial_alphabet=list("0123456789"),
        )  # fmt: skip
        texts = list(texts)
        if not texts:
            raise ValueError("SubwordTokenizer.train(): texts is empty; pass the training sentences of both languages")
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: str | Path) -> SubwordTokenizer:
        """Read a ``tokenizer.json`` (or the directory holding one)."""
        from tokenizers import Tokenizer

        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_NAME
        if not path.is_file():
            raise FileNotFoundError(f"SubwordTokenizer.load(): {str(path)!r} does not exist; expected the "
                                    f"{TOKENIZER_NAME} saved beside a translation model")  # fmt: skip
        try:
            return cls(Tokenizer.from_str(path.read_text(encoding="utf-8")))
        except Exception as e:  # tokenizers raises its own Exception type for malformed JSON
            if isinstance(e, (TypeError, ValueError)):
                raise
            raise ValueError(f"SubwordTokenizer.load(): {str(path)!r} is not a tokenizers JSON file ({e})") from None

    def save(self, path: str | Path) -> Path:
        """Write ``tokenizer.json`` atomically; ``path`` is the file or its directory."""
        from ...checkpoint import write_atomic

        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_NAME
        return write_atomic(path, self.to_str())

    def to_str(self) -> str:
        """The tokenizer as JSON text (what :meth:`save` writes)."""
        return self._tok.to_str()

    @classmethod
    def from_str(cls, text: str) -> SubwordTokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(text))

    # ------------------------------------------------------------------ using
    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without BOS/EOS."""
        if not isinstance(text, str):
            raise TypeError(f"SubwordTokenizer.encode(): text must be a str, got {type(text).__name__}")
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` for many texts at once (parallel in Rust)."""
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; stops at the first EOS, drops padding and BOS."""
        ids = [int(i) for i in ids]
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self._tok.decode([i for i in ids if i not in (self.pad_id, self.bos_id)], skip_special_tokens=False)

    def tokens(self, ids: Sequence[int]) -> list[str]:
        """The subword strings of ``ids`` (``▁`` marks a word start), e.g. for plot labels."""
        return [self._tok.id_to_token(int(i)) or "?" for i in ids]

    def __repr__(self) -> str:
        model = json.loads(self.to_str())["model"]["type"]
        return f"SubwordTokenizer({model}, vocab_size={self.vocab_size})"
