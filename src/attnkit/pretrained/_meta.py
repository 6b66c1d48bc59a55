"""Build a model without computing random weights that loading replaces at once.

``torch.device("meta")`` alone is not enough: on meta tensors ``nn.init.normal_`` runs
through ``torch._refs``, whose first call imports ``torch._dynamo`` (sympy, mpmath:
2-3 s on a 2-core machine) only to initialize tensors that have no data. So, as
``transformers`` does in ``no_init_weights`` (``modeling_utils.py``), the
``torch.nn.init`` functions are no-ops while the model is built, on the meta device.
The loader then assigns real tensors (``load_state_dict(..., assign=True)``: memory
mapped safetensors stay mapped, nothing is copied). The patch is process-wide while a
model is built: do not build other models in other threads at the same moment.

Example:
    >>> model = empty_model(torch.nn.Linear, 3, 2)
    >>> model.weight.is_meta
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from torch import nn

__all__ = ["empty_model", "materialize_buffers"]

M = TypeVar("M", bound=nn.Module)
_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                   "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
                   "sparse_")  # fmt: skip


@contextlib.contextmanager
def _no_init() -> Iterator[None]:
    saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS if hasattr(nn.init, name)}
    try:
        for name in saved:
            setattr(nn.init, name, _keep)
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def _keep(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return tensor


def empty_model(cls: Callable[..., M], *args, **kwargs) -> M:
    """``cls(*args, **kwargs)`` with parameters on the meta device (no data, no random init)."""
    with _no_init(), torch.device("meta"):
        return cls(*args, **kwargs)


def materialize_buffers(model: nn.Module) -> None:
    """Non-persistent buffers built on the meta device (RoPE cos/sin caches) become empty CPU ones."""
    for module in model.modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            if buffer is not None and buffer.is_meta:
                module.register_buffer(name, torch.empty(0, *buffer.shape[1:]), persistent=False)  # refilled on use
