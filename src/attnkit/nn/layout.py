"""Memory layout of weights for one-token decoding: same values, same shapes, faster matrix-vector products.

Decoding one token multiplies a ``(1, in)`` row by every weight matrix, so a step
streams all weights from memory once and its speed is the speed of ``F.linear``'s
matrix-vector product. On CPU (MKL, torch 2.13, 2 threads) that product depends on
how the ``(out, in)`` weight lies in memory (measured on this project's machine,
60 distinct matrices each, so they come from DRAM, not cache):

=====================  ==================  =====================
weight ``(out, in)``   row-major (torch)   stored transposed
=====================  ==================  =====================
576 x 576              11.0 GB/s           12.6 GB/s
1536 x 576 (gate, up)  11.3 GB/s           18.0 GB/s
49152 x 576 (LM head)  11.1 GB/s           21.4 GB/s
192 x 576 (k, v)       12.5 GB/s           8.8 GB/s
576 x 1536 (down)      15.7 GB/s           12.5 GB/s
=====================  ==================  =====================

so :func:`decode_layout` stores the weights of linear layers with more outputs
than inputs transposed (``weight`` keeps its shape ``(out, in)`` and values; only
its strides change), and fuses the attention's ``W^Q, W^K, W^V`` (and SwiGLU's
``W_gate, W_up``) into one wide transposed block multiplied at once: 30 SmolLM2
layers' projections take 23.9 ms per token that way against 27.3 ms separately.
For SmolLM2-135M the layout makes a greedy decoding step about a fifth faster. Training and
batched matmuls are unaffected in results; checkpoints are written contiguous as
always. A tied embedding shares the storage: its row lookups become strided,
which costs nothing noticeable at one token per step.

Example:
    >>> import torch
    >>> lin = torch.nn.Linear(4, 16)
    >>> x = torch.randn(1, 4)
    >>> before = lin(x)
    >>> _ = decode_layout(lin)
    >>> lin.weight.shape, lin.weight.stride(), torch.allclose(lin(x), before)
    (torch.Size([16, 4]), (1, 16), True)
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

__all__ = ["decode_layout"]

ModuleT = TypeVar("ModuleT", bound=nn.Module)


@torch.no_grad()
def decode_layout(model: ModuleT) -> ModuleT:
    """Lay the weights out for one-token steps (same values and shapes); return ``model``.

    * the bias-free ``W^Q, W^K, W^V`` of each attention layer, and ``W_gate, W_up`` of each
      SwiGLU feed-forward, are stored side by side, transposed, in one block that the
      layer multiplies at once (one wide matrix-vector product instead of three or two;
      each ``weight`` stays a Parameter, now a view of that block);
    * every other ``nn.Linear`` with ``out_features > in_features`` is stored transposed.
    """
    from .attention import MultiHeadAttention
    from .feedforward import FeedForward

    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            _fuse(module, ("w_q", "w_k", "w_v"), "_fused_qkv")
        elif isinstance(module, FeedForward) and module.activation == "swiglu":
            _fuse(module, ("w_gate", "w_up"), "_fused_gate_up")
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.out_features > module.in_features:
            w = module.weight
            if w.stride()[0] != 1:  # not yet stored transposed (alone or in a fused block)
                w.data = w.data.t().contiguous().t()  # (out, in) values, (in, out) storage
    return model


def _fuse(module: nn.Module, names: tuple[str, ...], attr: str) -> None:
    """Store the named bias-free Linear weights in one transposed block; ``module.<attr>`` is the block."""
    linears = [getattr(module, n) for n in names]
    if any(lin.bias is not None for lin in linears) or len({lin.in_features for lin in linears}) != 1:
        return
    block = torch.cat([lin.weight.detach().t() for lin in linears], dim=1).contiguous()  # (in, sum of out)
    start = 0
    for lin in linears:
        lin.weight.data = block[:, start : start + lin.out_features].t()  # (out, in) view, strides (1, sum)
        start += lin.out_features
    setattr(module, attr, block.t())  # (sum of out, in)
