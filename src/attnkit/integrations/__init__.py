"""attnkit inside other libraries.

* :mod:`attnkit.integrations.transformers` — an attention backend for Hugging Face
  transformers (``attn_implementation="attnkit"``); needs the ``hf`` extra.
* :mod:`attnkit.integrations.onnx` — ONNX export (``attnkit export onnx``); needs the
  ``onnx`` extra.

Importing this package imports no optional dependency; each integration imports its
library when it is imported itself, so this package exports no names.

Example:
    >>> from attnkit.integrations import transformers as hf_backend  # imports transformers
    >>> hf_backend.register()
    'attnkit'
"""

__all__: list[str] = []  # the integrations are its modules
