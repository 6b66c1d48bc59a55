"""Machine translation with the Transformer of "Attention Is All You Need" — trained on this machine.

The pieces, in the order a run uses them:

============================  ==========================================================
:func:`load_corpus`           ``numbers-dates`` (generated), ``gettext`` (the system's
                              translated catalogs) or ``tsv:PATH``; seeded disjoint splits
:class:`SubwordTokenizer`     joint BPE vocabulary, pad/bos/eos/unk = 0/1/2/3
:func:`model_config`          ``tiny | small | base`` presets of TransformerConfig
:func:`train_translation`     the paper's recipe on attnkit.train.Trainer (resumable,
                              data-parallel under torchrun)
:func:`evaluate`              BLEU, chrF, exact match, next to the copy baseline
:class:`Translator`           a saved model + tokenizer: ``translate([...])``
:func:`cross_attention`,      which source tokens each target token attended to, as a
:func:`plot_alignment`        per-layer, per-head heatmap grid
:func:`calibrate`             the model's confidence on validation sentences, stored with
                              it: ``attnkit translate`` flags inputs unlike the training data
:func:`demo`                  all of the above in a few minutes (``attnkit translate demo``)
============================  ==========================================================

Example:
    >>> corpus = load_corpus("numbers-dates", "en-fr", size=100)
    >>> corpus.pair, len(corpus.test) > 0
    ('en-fr', True)
"""

from .alignment import Alignment, cross_attention, plot_alignment
from .confidence import Calibration, Confidence, calibrate
from .data import Corpus, CorpusSummary, load_corpus, read_tsv
from .demo import DemoResult, demo
from .evaluate import EvalReport, Scores, evaluate, score, translate_batch
from .model import SIZES, Translator, model_config
from .tokenizer import SubwordTokenizer
from .train import TrainResult, TranslationTrainConfig, train_translation

__all__ = [
    "load_corpus",
    "read_tsv",
    "Corpus",
    "CorpusSummary",
    "SubwordTokenizer",
    "SIZES",
    "model_config",
    "Translator",
    "TranslationTrainConfig",
    "TrainResult",
    "train_translation",
    "evaluate",
    "score",
    "translate_batch",
    "EvalReport",
    "Scores",
    "Alignment",
    "cross_attention",
    "plot_alignment",
    "demo",
    "DemoResult",
    "Calibration",
    "Confidence",
    "calibrate",
]
