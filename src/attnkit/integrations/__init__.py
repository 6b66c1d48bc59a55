"""attnkit inside other libraries: ONNX export (:mod:`.onnx`), and the Hugging Face transformers backend.

Each integration is a module of its own that imports its optional library (``pip install
'attnkit[onnx]'``); importing this package imports none of them, so it exports no names.

Example:
    >>> import attnkit.integrations
    >>> attnkit.integrations.__name__
    'attnkit.integrations'
"""

__all__: list[str] = []  # the integrations are its modules
