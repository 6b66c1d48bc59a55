r"""Removing attention heads for real: :meth:`MultiHeadAttention.prune_heads` shrinks the projections.

Head ``h`` owns rows ``h d_k .. (h+1) d_k - 1`` of :math:`W^Q` and :math:`W^K`, rows
``h d_v .. (h+1) d_v - 1`` of :math:`W^V` and the same *columns* of :math:`W^O`
(Vaswani et al., 2017, 3.2.2). Deleting them gives a smaller module whose output equals
the original one with the head's gate :math:`\xi_h` set to 0 (Michel et al., 2019):
the head's contribution to the concatenation is exactly what :math:`W^O` multiplies.

Grouped-query attention (``num_kv_heads < num_heads``) shares each key/value head among
several query heads, so removing one query head leaves groups of unequal size; it is
refused. ALiBi slopes of the removed heads are dropped; rotary embeddings are per
position, not per head, and stay.

Example:
    >>> import torch
    >>> from attnkit.nn import MultiHeadAttention
    >>> mha = MultiHeadAttention(4, 16, dropout=0.0)
    >>> prune_heads(mha, [0, 2])
    >>> mha.num_heads, tuple(mha.w_q.weight.shape), tuple(mha.w_o.weight.shape)
    (2, (8, 16), (16, 8))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["prune_heads", "head_rows"]


def head_rows(heads: Iterable[int], width: int) -> Tensor:
    """Row indices of ``heads`` in a projection with ``width`` features per head.

    Example:
        >>> head_rows([0, 2], 2).tolist()
        [0, 1, 4, 5]
    """
    return torch.tensor([h * width + i for h in heads for i in range(width)], dtype=torch.long)


def prune_heads(mha: Any, heads: Iterable[int]) -> None:
    """Remove the query heads ``heads`` (indices among ``mha``'s current heads) from ``mha``, in place.

    ``mha`` is a :class:`~attnkit.nn.MultiHeadAttention` (typed ``Any``: this module sits
    below ``attention.py``, which imports it).
    """
    H = mha.num_heads
    remove = sorted({_head_index(h, H) for h in heads})
    if not remove:
        return
    if mha.num_kv_heads != H:
        raise ValueError(
            f"prune_heads(): grouped-query attention (num_kv_heads={mha.num_kv_heads} < num_heads={H}) shares each "
            f"key/value head among {H // mha.num_kv_heads} query heads; removing query heads would leave groups of "
            "unequal size. Gate them off instead (mha.head_gates), or prune whole groups by hand"
        )
    if len(remove) == H:
        raise ValueError(f"prune_heads(): cannot remove all {H} heads of a layer; keep at least one, or set "
                         "mha.head_gates to zeros to switch the layer's attention off")  # fmt: skip
    keep = [h for h in range(H) if h not in remove]
    rows_k, rows_v = head_rows(keep, mha.d_k), head_rows(keep, mha.d_v)
    mha.w_q = _select(mha.w_q, rows_k, dim=0)  # (H*d_k, d_model) -> (H'*d_k, d_model)
    mha.w_k = _select(mha.w_k, rows_k, dim=0)  # (H*d_k, kdim) -> (H'*d_k, kdim)
    mha.w_v = _select(mha.w_v, rows_v, dim=0)  # (H*d_v, vdim) -> (H'*d_v, vdim)
    mha.w_o = _select(mha.w_o, rows_v, dim=1)  # (d_model, H*d_v) -> (d_model, H'*d_v)
    mha.num_heads = mha.num_kv_heads = len(keep)
    index = torch.tensor(keep)
    if mha.head_gates is not None:
        mha.head_gates = mha.head_gates.detach()[index.to(mha.head_gates.device)]  # (H,) -> (H',)
    if mha.alibi is not None:
        mha.alibi.slopes = mha.alibi.slopes[index.to(mha.alibi.slopes.device)]  # (H,) -> (H',)
    if hasattr(mha, "_fused_qkv"):  # decode_layout's fused block holds the old rows: call decode_layout again
        del mha._fused_qkv


def _head_index(h, H: int) -> int:
    if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h < H:
        raise ValueError(f"prune_heads(): heads must be ints in [0, {H}) (the layer's current heads), got {h!r}")
    return h


def _select(linear: nn.Linear, index: Tensor, dim: int) -> nn.Linear:
    """A new ``nn.Linear`` keeping output rows (``dim=0``) or input columns (``dim=1``) ``index`` of ``linear``."""
    weight = linear.weight.detach().index_select(dim, index.to(linear.weight.device))
    out_features, in_features = weight.shape
    bias = linear.bias is not None
    new = nn.Linear(in_features, out_features, bias=bias, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias:
            b = linear.bias.detach()
            new.bias.copy_(b.index_select(0, index.to(b.device)) if dim == 0 else b)
    new.weight.requires_grad_(linear.weight.requires_grad)
    if bias:
        new.bias.requires_grad_(linear.bias.requires_grad)
    return new
