"""The training run directory: everything a run needs to start, resume and be evaluated.

::

    out/translate/            (the default of `attnkit translate train --out`)
      run.json              settings, language pair, corpus summary (written once, at the start)
      tokenizer.json        joint BPE vocabulary trained on the training split
      data/train.tsv        the three splits, as used (resume and eval read them back)
      data/valid.tsv
      data/test.tsv
      history.jsonl         training and validation records (attnkit.train.Trainer)
      latest.json           -> checkpoints/step-NNNNNNNN (Trainer; used by --resume)
      checkpoints/
      model/                the final model (Translator.save): weights, config, tokenizer, translate.json

Only rank 0 writes. Every file is written atomically (temp file + rename).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> run_dir = Path(tempfile.mkdtemp())
    >>> settings = {"corpus": "numbers-dates", "pair": "en-de", "seed": 0, "corpus_size": 100, "vocab_size": 200}
    >>> prepare_run(run_dir, settings).splits[0].name
    'train'
    >>> run = open_run(run_dir)
    >>> run.info["pair"], len(run.train) > 0, (run_dir / RUN_NAME).is_file()
    ('en-de', True, True)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ...checkpoint import write_atomic
from .data import Corpus, CorpusSummary, Pair, load_corpus, read_tsv, write_tsv
from .tokenizer import TOKENIZER_NAME, SubwordTokenizer

__all__ = ["RunFiles", "prepare_run", "open_run", "RUN_NAME", "DATA_DIR", "test_pairs_for"]

RUN_NAME = "run.json"
DATA_DIR = "data"
DEFAULT_VOCAB = {"numbers-dates": 1000}  # other corpora: 8000


@dataclass(frozen=True)
class RunFiles:
    """The inputs of a run, read back from its directory."""

    directory: Path  # the run directory
    info: dict  # run.json: settings, pair, corpus summary
    tokenizer: SubwordTokenizer  # trained on the training split
    train: tuple[Pair, ...]  # training pairs
    valid: tuple[Pair, ...]  # validation pairs


def prepare_run(directory: Path, settings: dict) -> CorpusSummary:
    """Load the corpus, write its splits, train and save the tokenizer, write ``run.json``."""
    corpus = load_corpus(settings["corpus"], settings["pair"], seed=settings["seed"], size=settings["corpus_size"])
    for split in ("train", "valid", "test"):
        write_tsv(directory / DATA_DIR / f"{split}.tsv", corpus.split(split))
    vocab = settings["vocab_size"] or DEFAULT_VOCAB.get(corpus.name, 8000)
    tokenizer = SubwordTokenizer.train([text for pair in corpus.train for text in pair], vocab_size=vocab)
    tokenizer.save(directory / TOKENIZER_NAME)
    summary = corpus.summary()
    info = {"app": "translate", "pair": corpus.pair, "settings": settings, "corpus": summary.to_dict(),
            "vocab_size": tokenizer.vocab_size}  # fmt: skip
    write_atomic(directory / RUN_NAME, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return summary


def open_run(directory: Path) -> RunFiles:
    """Read a prepared run directory (any rank)."""
    path = directory / RUN_NAME
    if not path.is_file():
        raise FileNotFoundError(f"--out {str(directory)!r} holds no training run ({RUN_NAME} is missing); "
                                "start one without --resume")  # fmt: skip
    info = json.loads(path.read_text(encoding="utf-8"))
    tokenizer = SubwordTokenizer.load(directory / TOKENIZER_NAME)
    train, valid = (tuple(read_tsv(directory / DATA_DIR / f"{split}.tsv")) for split in ("train", "valid"))
    return RunFiles(directory, info, tokenizer, train, valid)


def test_pairs_for(model_dir: Path, info: dict, split: str = "test") -> list[Pair]:
    """The ``split`` pairs a model was held out from: its run's ``data/<split>.tsv``, else regenerated.

    ``model_dir`` is ``run/model`` (or the run itself for an interrupted run).
    """
    for run in (model_dir, model_dir.parent):
        path = run / DATA_DIR / f"{split}.tsv"
        if path.is_file():
            return read_tsv(path)
    settings = info.get("settings")
    if not settings:
        raise FileNotFoundError(f"eval: no {DATA_DIR}/{split}.tsv beside {str(model_dir)!r} and no settings to "
                                "regenerate it; pass --data tsv:PATH")  # fmt: skip
    corpus: Corpus = load_corpus(settings["corpus"], settings["pair"], seed=settings["seed"],
                                 size=settings["corpus_size"])  # fmt: skip
    return list(corpus.split(split))
