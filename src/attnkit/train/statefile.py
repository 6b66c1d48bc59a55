"""Nested training state (optimizer, scheduler, RNG) as safetensors + JSON, never pickle.

``optimizer.state_dict()`` and friends are trees of dicts, lists and tuples whose
leaves are tensors, numbers, strings, booleans and None. :func:`split` moves every
tensor into a flat ``{name: Tensor}`` dict (stored with safetensors) and leaves a JSON
tree where each tensor is ``{"__tensor__": name}``; :func:`join` puts them back.
What JSON cannot say exactly is tagged: dicts whose keys are not all strings (the
optimizer's integer parameter ids) become ``{"__dict__": [[key, value], ...]}``,
tuples ``{"__tuple__": [...]}``, non-finite floats ``{"__float__": "nan"}``. Any
other object is refused with its path, so nothing is silently lost.

Example:
    >>> import torch
    >>> state = {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"betas": (0.9, 0.98)}]}
    >>> tree, tensors = split(state)
    >>> tree["state"], sorted(tensors)
    ({'__dict__': [[0, {'step': {'__tensor__': 'state.0.step'}}]]}, ['state.0.step'])
    >>> join(tree, tensors) == {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"betas": (0.9, 0.98)}]}
    True
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["split", "join"]

_TAGS = ("__tensor__", "__dict__", "__tuple__", "__float__")


def split(obj, prefix: str = "") -> tuple[object, dict[str, Tensor]]:
    """``(JSON-able tree, {name: tensor})`` of a nested state; tensor names are their dotted paths."""
    tensors: dict[str, Tensor] = {}
    seen: set[int] = set()
    return _encode(obj, prefix, tensors, seen), tensors


def join(tree, tensors: dict[str, Tensor]):
    """Inverse of :func:`split`."""
    if isinstance(tree, list):
        return [join(item, tensors) for item in tree]
    if not isinstance(tree, dict):
        return tree
    if "__tensor__" in tree:
        name = tree["__tensor__"]
        if name not in tensors:
            raise ValueError(
                f"trainer state: tensor {name!r} is named in the JSON but missing from the safetensors file"
            )
        return tensors[name]
    if "__tuple__" in tree:
        return tuple(join(item, tensors) for item in tree["__tuple__"])
    if "__dict__" in tree:
        return {key: join(value, tensors) for key, value in tree["__dict__"]}
    if "__float__" in tree:
        return float(tree["__float__"])
    return {key: join(value, tensors) for key, value in tree.items()}


def _encode(obj, path: str, tensors: dict[str, Tensor], seen: set[int]):
    if isinstance(obj, Tensor):
        return {"__tensor__": _store(obj, path or "tensor", tensors, seen)}
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, (list, tuple)):
        items = [_encode(item, _join(path, str(i)), tensors, seen) for i, item in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        return _encode_dict(obj, path, tensors, seen)
    raise TypeError(
        f"trainer state: {path or 'the state'} is a {type(obj).__name__}; only tensors, numbers, strings, "
        "booleans, None, lists, tuples and dicts can be stored without pickle (make the object's state_dict() "
        "return those)"
    )


def _encode_dict(obj: dict, path: str, tensors: dict[str, Tensor], seen: set[int]):
    plain = all(isinstance(key, str) and key not in _TAGS for key in obj)
    for key in obj:
        if not (key is None or isinstance(key, (bool, int, float, str))):
            raise TypeError(f"trainer state: {path or 'the state'} has a key of type {type(key).__name__}; "
                            "expected str or int keys")  # fmt: skip
    values = {key: _encode(value, _join(path, str(key)), tensors, seen) for key, value in obj.items()}
    return values if plain else {"__dict__": [[key, value] for key, value in values.items()]}


def _store(t: Tensor, name: str, tensors: dict[str, Tensor], seen: set[int]) -> str:
    while name in tensors:  # e.g. keys 0 and "0" in one dict
        name += "_"
    t = t.detach().cpu()
    ptr = t.untyped_storage().data_ptr()
    if t.numel() and (ptr in seen or not t.is_contiguous()):  # safetensors stores no aliases: own storage each
        t = t.clone(memory_format=torch.contiguous_format)
    seen.add(t.untyped_storage().data_ptr())
    tensors[name] = t
    return name


def _join(path: str, key: str) -> str:
    return key if not path else f"{path}.{key}"
