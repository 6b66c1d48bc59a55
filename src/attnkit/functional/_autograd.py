"""The autograd glue shared by the tiled and ring backends (FlashAttention's middle tier).

Both compute ``(out, lse)`` with a pure forward function and differentiate with a pure
backward function that needs only ``(q, k, v, out, lse)``. :class:`OutLseFunction` saves
exactly those five tensors plus a non-tensor *call* object holding everything else; the
call object supplies the two kernels::

    call.forward(q, k, v) -> (out, lse)
    call.backward(dout, dlse, q, k, v, out, lse) -> (dq, dk, dv)   # dlse may be None

Example:
    >>> import torch
    >>> class Plain:  # softmax(q k^T) v without a mask, in the same three tiers
    ...     def forward(self, q, k, v):
    ...         s = q @ k.transpose(-1, -2)  # (B, H, Lq, D) @ (B, H, D, Lk) -> (B, H, Lq, Lk)
    ...         return s.softmax(-1) @ v, s.logsumexp(-1)
    ...     def backward(self, dout, dlse, q, k, v, out, lse):
    ...         p = (q @ k.transpose(-1, -2) - lse[..., None]).exp()  # (B, H, Lq, Lk)
    ...         ds = p * (dout @ v.transpose(-1, -2) - (dout * out).sum(-1, keepdim=True))
    ...         return ds @ k, ds.transpose(-1, -2) @ q, p.transpose(-1, -2) @ dout
    >>> q, k, v = (torch.randn(1, 1, 3, 2, dtype=torch.float64, requires_grad=True) for _ in range(3))
    >>> torch.autograd.gradcheck(lambda q, k, v: OutLseFunction.apply(q, k, v, Plain())[0], (q, k, v))
    True
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

__all__ = ["OutLseFunction"]


class OutLseFunction(torch.autograd.Function):
    """Saves only ``(q, k, v, out, lse)`` plus the non-tensor ``call``; both outputs are differentiable."""

    @staticmethod
    def forward(ctx, q, k, v, call):
        out, lse = call.forward(q, k, v)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.call = call
        ctx.set_materialize_grads(False)
        return out, lse

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dlse):
        q, k, v, out, lse = ctx.saved_tensors
        if dout is None:
            dout = torch.zeros_like(out)
        dq, dk, dv = ctx.call.backward(dout, dlse, q, k, v, out, lse)
        return dq, dk, dv, None
