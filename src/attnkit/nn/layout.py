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
its strides change, to ``(1, out)``), and leaves the others as they are. For
SmolLM2-135M it makes a greedy decoding step about a fifth faster. Training and
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

import torch
from torch import nn

__all__ = ["decode_layout"]


@torch.no_grad()
def decode_layout(model: nn.Module) -> nn.Module:
    """Store the weights of ``nn.Linear`` layers with ``out_features > in_features`` transposed; return ``model``."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.out_features > module.in_features:
            w = module.weight
            if w.stride() != (1, w.shape[0]):
                w.data = w.data.t().contiguous().t()  # (out, in) values, (in, out) storage
    return model
