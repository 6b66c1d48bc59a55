"""Two tensor helpers shared by :mod:`attnkit.masks`, :mod:`attnkit.functional` and
:mod:`attnkit.distributed`; this module sits below all of them and imports only torch.

Example:
    >>> import torch
    >>> as_4d(torch.ones(3, 5)).shape
    torch.Size([1, 1, 3, 5])
    >>> compute_dtype(torch.bfloat16), compute_dtype(torch.float64)
    (torch.float32, torch.float64)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["as_4d", "compute_dtype"]


def as_4d(t: Tensor) -> Tensor:
    """Leading singleton dims until ``t`` has 4: ``(..., X, Y) -> (1.., 1.., X, Y)``, e.g. ``(Bm, Hm, Lq, Lk)``."""
    while t.dim() < 4:
        t = t.unsqueeze(0)  # (...) -> (1, ...)
    return t


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype attention computes in: float32 for bf16/fp16 (softmax statistics and, on CPU, the
    matmuls: these CPUs have no fast half matmul), else the input dtype."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
