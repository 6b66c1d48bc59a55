"""Argument checks shared by the pictures, the statistics and the explorer (errors that teach).

Example:
    >>> as_matrix_stack("f()", [[0.5, 0.5]], (2,), "(Lq, Lk)").dtype
    torch.float64
    >>> check_labels("f()", "tokens", ["a"], 2, "keys")
    Traceback (most recent call last):
    ...
    ValueError: f(): tokens has 1 labels but the weights have 2 keys
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def as_matrix_stack(fn: str, weights, dims: tuple[int, ...], layout: str) -> Tensor:
    """``weights`` as a finite float64 CPU tensor with ``dims`` dimensions, or a teaching error."""
    if not isinstance(weights, Tensor):
        try:
            weights = torch.as_tensor(weights)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(
                f"{fn}: weights must be a torch.Tensor or array-like {layout}, got {type(weights).__name__}"
            ) from e
    if weights.is_complex() or weights.dtype == torch.bool:
        raise TypeError(f"{fn}: weights must be real numbers, got dtype {weights.dtype}")
    if weights.dim() not in dims:
        hint = ""
        if weights.dim() == max(dims) + 1:
            hint = "; select one batch element first, e.g. weights[0]"
        elif weights.dim() == max(dims) - 1 and fn.startswith("plot_attention_grid"):
            hint = "; for a single matrix use plot_attention()"
        raise ValueError(f"{fn}: weights must be {layout}, got shape {tuple(weights.shape)}{hint}")
    if weights.numel() == 0:
        raise ValueError(f"{fn}: weights are empty (shape {tuple(weights.shape)}); nothing to show")
    weights = weights.detach().to("cpu", torch.float64)
    if not torch.isfinite(weights).all():
        raise ValueError(
            f"{fn}: weights contain NaN or inf; pass the normalized weights (step 2), not the "
            "masked scores (-inf where forbidden)"
        )
    return weights


def check_labels(fn: str, name: str, labels: Sequence[str] | None, n: int, axis: str) -> list[str] | None:
    """``axis`` is plural: "keys", "queries", "heads"."""
    if labels is None:
        return None
    if isinstance(labels, str):
        raise TypeError(
            f"{fn}: {name} must be a list of strings, one per entry, got the single string {labels!r}; "
            f"split it, e.g. {name}=text.split()"
        )
    labels = [str(x) for x in labels]
    if len(labels) != n:
        raise ValueError(f"{fn}: {name} has {len(labels)} labels but the weights have {n} {axis}")
    return labels
