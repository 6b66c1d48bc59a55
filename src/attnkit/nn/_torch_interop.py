"""Conversions between attnkit's MultiHeadAttention and ``torch.nn.MultiheadAttention``.

Mask polarity is the one real trap. ``nn.MultiheadAttention`` takes
``attn_mask`` and ``key_padding_mask`` where a boolean ``True`` means *may NOT
attend* (a float mask is added to the scores). attnkit's masks follow SDPA:
``True`` means *may attend*. :func:`masks_from_torch` negates booleans and turns
float masks into a bias, so the same call gives the same numbers.

Shape legend: B batch, H heads, L query length, S key length, E embed dim.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import masks

__all__ = ["from_torch", "to_torch", "masks_from_torch"]


def from_torch(cls, module: nn.MultiheadAttention):
    """Build ``cls`` (attnkit MultiHeadAttention) with the weights of ``module``."""
    if not isinstance(module, nn.MultiheadAttention):
        raise TypeError(f"from_torch(): expected an nn.MultiheadAttention, got {type(module).__name__}")
    if module.bias_k is not None or module.add_zero_attn:
        raise ValueError(
            "from_torch(): add_bias_kv=True and add_zero_attn=True have no attnkit equivalent; "
            "append the extra key/value position to your inputs instead"
        )
    E, H = module.embed_dim, module.num_heads
    has_bias = module.in_proj_bias is not None
    weight = module.out_proj.weight
    mha = cls(H, E, dropout=module.dropout, bias=has_bias, kdim=module.kdim, vdim=module.vdim)
    mha = mha.to(weight.device, weight.dtype)  # before the copy: a float64 module keeps its float64 weights
    if module._qkv_same_embed_dim:
        w_q, w_k, w_v = module.in_proj_weight.chunk(3, dim=0)  # (3E, E) -> 3 x (E, E)
    else:
        w_q, w_k, w_v = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
    with torch.no_grad():
        for linear, weight in ((mha.w_q, w_q), (mha.w_k, w_k), (mha.w_v, w_v), (mha.w_o, module.out_proj.weight)):
            linear.weight.copy_(weight)
        if has_bias:
            biases = module.in_proj_bias.chunk(3)  # (3E,) -> 3 x (E,)
            for linear, b in zip((mha.w_q, mha.w_k, mha.w_v), biases, strict=True):
                linear.bias.copy_(b)
            mha.w_o.bias.copy_(module.out_proj.bias)
    return mha


def to_torch(mha) -> nn.MultiheadAttention:
    """An ``nn.MultiheadAttention(batch_first=True)`` computing the same function as ``mha``."""
    reasons = []
    if mha.d_k != mha.d_model // mha.num_heads or mha.d_v != mha.d_k or mha.d_model % mha.num_heads:
        reasons.append(f"d_k={mha.d_k}, d_v={mha.d_v} (torch needs d_k = d_v = d_model // num_heads)")
    if mha.num_kv_heads != mha.num_heads:
        reasons.append(f"num_kv_heads={mha.num_kv_heads} (torch has no grouped-query attention)")
    if mha.rotary is not None or mha.alibi is not None:
        reasons.append("rotary or ALiBi positions (torch's module has none)")
    if reasons:
        raise ValueError(
            "to_torch(): this MultiHeadAttention has no nn.MultiheadAttention equivalent: " + "; ".join(reasons)
        )
    has_bias = mha.w_q.bias is not None
    weight = mha.w_o.weight
    module = nn.MultiheadAttention(
        mha.d_model, mha.num_heads, dropout=mha.dropout, bias=has_bias, kdim=mha.kdim, vdim=mha.vdim,
        batch_first=True, device=weight.device, dtype=weight.dtype,
    )  # fmt: skip
    with torch.no_grad():
        if module._qkv_same_embed_dim:
            module.in_proj_weight.copy_(torch.cat([mha.w_q.weight, mha.w_k.weight, mha.w_v.weight]))  # -> (3E, E)
        else:
            module.q_proj_weight.copy_(mha.w_q.weight)
            module.k_proj_weight.copy_(mha.w_k.weight)
            module.v_proj_weight.copy_(mha.w_v.weight)
        module.out_proj.weight.copy_(mha.w_o.weight)
        if has_bias:
            module.in_proj_bias.copy_(torch.cat([mha.w_q.bias, mha.w_k.bias, mha.w_v.bias]))  # -> (3E,)
            module.out_proj.bias.copy_(mha.w_o.bias)
    return module


def masks_from_torch(
    attn_mask: Tensor | None = None, key_padding_mask: Tensor | None = None, *, num_heads: int | None = None
) -> tuple[masks.Mask | None, Tensor | None]:
    """Translate ``nn.MultiheadAttention``'s masks into attnkit's ``(mask, bias)``.

    * bool ``attn_mask`` ``(L, S)`` or ``(B*H, L, S)``: ``True`` = blocked → ``masks.dense(~attn_mask)``;
    * float ``attn_mask``: added to the scores → returned as ``bias``;
    * bool ``key_padding_mask`` ``(B, S)``: ``True`` = padding → ``masks.dense(~kpm)`` broadcast over queries;
      a float one is added to the scores, like torch does.

    Example:
        >>> blocked = torch.tensor([[False, True], [False, False]])   # torch: True = may NOT attend
        >>> mask, bias = masks_from_torch(blocked)
        >>> mask.to_dense(2, 2)[0, 0]                                  # attnkit: True = may attend
        tensor([[ True, False],
                [ True,  True]])
    """
    mask, bias = None, None
    if attn_mask is not None:
        if attn_mask.dim() == 3:
            if num_heads is None:
                raise ValueError("masks_from_torch(): a 3-D attn_mask (B*H, L, S) needs num_heads= to unflatten")
            attn_mask = attn_mask.unflatten(0, (-1, num_heads))  # (B*H, L, S) -> (B, H, L, S)
        if attn_mask.dtype == torch.bool:
            mask = masks.dense(~attn_mask)
        else:
            bias = attn_mask
    if key_padding_mask is not None:
        if key_padding_mask.dtype == torch.bool:
            padding = masks.dense(~key_padding_mask[:, None, None, :])  # (B, S) -> (B, 1, 1, S)
            mask = padding if mask is None else mask & padding
        else:
            extra = key_padding_mask[:, None, None, :]  # (B, S) -> (B, 1, 1, S)
            bias = extra if bias is None else bias + extra
    return mask, bias
