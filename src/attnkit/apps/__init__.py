"""Applications built on the Transformer: each a small package with data, model, training or evaluation.

* :mod:`attnkit.apps.translate` — machine translation (``attnkit translate``): corpora
  made without downloads (numbers and dates, the system's gettext catalogs, your TSV),
  a BPE tokenizer, training with the project's Trainer, BLEU/chrF evaluation, beam
  search and cross-attention alignment pictures.
* :mod:`attnkit.apps.summarize` — summarization (``attnkit summarize``).
* :mod:`attnkit.apps.qa` — question answering over your files (``attnkit qa``).
* :mod:`attnkit.apps.inspect` — attention heatmaps and per-head statistics (``attnkit inspect``).

Importing ``attnkit.apps`` imports no application; import the one you need.
"""
