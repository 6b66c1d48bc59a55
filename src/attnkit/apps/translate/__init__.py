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
:class:`Perturbation`,        seeded misspellings and case changes, and the robustness and
:func:`robustness`            consistency of Niu et al. (2020) under them (``--noise p``
                              trains with them)
:func:`demo`                  all of the above in a few minutes (``attnkit translate demo``)
============================  ==========================================================

Example:
    >>> from attnkit.apps.translate import load_corpus
    >>> corpus = load_corpus("numbers-dates", "en-fr", size=100)
    >>> corpus.pair, len(corpus.test) > 0
    ('en-fr', True)

    The model presets, and what :func:`demo` (minutes of training, so not run here; see
    :mod:`~attnkit.apps.translate.demo`) trains and returns:

    >>> import dataclasses, inspect
    >>> from attnkit.apps.translate import SIZES, DemoResult, demo
    >>> SIZES  # smallest first
    ('tiny', 'small', 'base')
    >>> inspect.signature(demo).parameters["steps"].default, inspect.signature(demo).parameters["size"].default
    (1400, 'tiny')
    >>> [f.name for f in dataclasses.fields(DemoResult)]
    ['pair', 'train', 'evaluation', 'samples', 'alignment_png']
"""

from ..._lazy import lazy_exports

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
    "Perturbation",
    "perturb_sentences",
    "robustness",
    "RobustnessReport",
]

#: public name -> the module that defines it; imported on first use, so `attnkit ... --help` needs no torch
__getattr__, __dir__ = lazy_exports(__name__, {
    "load_corpus": ".data",
    "read_tsv": ".data",
    "Corpus": ".data",
    "CorpusSummary": ".data",
    "SubwordTokenizer": ".tokenizer",
    "SIZES": ".model",
    "model_config": ".model",
    "Translator": ".model",
    "TranslationTrainConfig": ".train",
    "TrainResult": ".train",
    "train_translation": ".train",
    "evaluate": ".evaluate",
    "score": ".evaluate",
    "translate_batch": ".evaluate",
    "EvalReport": ".evaluate",
    "Scores": ".evaluate",
    "Alignment": ".alignment",
    "cross_attention": ".alignment",
    "plot_alignment": ".alignment",
    "demo": ".demo",
    "DemoResult": ".demo",
    "Calibration": ".confidence",
    "Confidence": ".confidence",
    "calibrate": ".confidence",
    "Perturbation": ".noise",
    "perturb_sentences": ".noise",
    "robustness": ".noise",
    "RobustnessReport": ".noise",
})
