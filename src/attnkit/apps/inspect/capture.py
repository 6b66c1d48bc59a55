"""Capture each attention layer's queries and keys with forward hooks; recompute its weights exactly.

The model runs as usual (its backend, its masks): hooks only watch. For every
:class:`~attnkit.nn.MultiHeadAttention` they record the projections ``W^Q x``,
``W^K x``, ``W^V x`` (forward hooks on ``w_q``/``w_k``/``w_v``), the call's ``mask``,
``positions`` and ``attn_bias`` (a pre-hook) and the layer's output. Then
:func:`layer_weights` rebuilds ``q (B, H, L, d_k)``, ``k``, ``v`` (heads split, RoPE
applied with the module's own :class:`~attnkit.nn.positional.RotaryEmbedding`) and
computes the weights one of two ways:

* ``"lse"`` (the fast path's statistics): the tiled backend runs the layer and
  returns the row log-sum-exp ``lse (B, H, L)``; :func:`attnkit.functional.attention_weights`
  turns it into exact weights ``P = exp(S - lse)`` — no second softmax;
* ``"need_weights"``: :func:`attnkit.functional.attention` with ``return_weights=True``
  (the reference backend), used when the tiled backend is not available.

Either way the recomputed attention output, projected by ``W^O``, is compared with
what the layer produced (:attr:`LayerWeights.max_error`): the weights shown are the
ones the model used.

Shape legend: B batch (1 here), H query heads, Hkv key/value heads, L tokens (Lq queries, Lk keys in
cross-attention), d_k head width.

Example:
    >>> import torch
    >>> from attnkit.nn import MultiHeadAttention
    >>> mha = MultiHeadAttention(2, 8, dropout=0.0).eval()
    >>> with capture([mha]) as calls:
    ...     _ = mha(torch.randn(1, 5, 8))
    >>> w = layer_weights(mha, calls[0])  # the method weights_method() picks
    >>> isinstance(w, LayerWeights), w.method == weights_method()[0]
    (True, True)
    >>> w.weights.shape, bool(w.weights.sum(-1).allclose(torch.ones(2, 5))), w.max_error < 1e-5
    (torch.Size([2, 5, 5]), True, True)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from attnkit.masks import Mask
from attnkit.nn import MultiHeadAttention

__all__ = ["capture", "layer_weights", "LayerCall", "LayerWeights", "weights_method"]


@dataclass
class LayerCall:
    """What the hooks saw during one forward call of one attention module."""

    q: Tensor | None = None  # (B, L, H * d_k), W^Q x
    k: Tensor | None = None  # (B, L, Hkv * d_k), W^K x
    v: Tensor | None = None  # (B, L, Hkv * d_v), W^V x
    output: Tensor | None = None  # (B, L, d_model), the module's output
    kwargs: dict = field(default_factory=dict)  # mask, positions, attn_bias, cache as passed


@dataclass(frozen=True)
class LayerWeights:
    """Attention weights of one layer, recomputed from the captured queries and keys."""

    weights: Tensor  # (H, Lq, Lk) float32, each row sums to 1
    method: str  # "lse" (tiled backend statistics) or "need_weights" (reference backend)
    max_error: float  # max |recomputed output - the layer's output|: ~1e-6 means these are the model's weights


def weights_method() -> tuple[str, str]:
    """``("lse", why)`` when the tiled backend and ``attention_weights`` exist, else ``("need_weights", why)``."""
    try:
        from attnkit.functional import attention_weights  # noqa: F401
        from attnkit.functional.dispatch import BACKENDS
    except ImportError as e:
        return "need_weights", f"attnkit.functional has no attention_weights ({e}); weights from the reference backend"
    if "tiled" not in BACKENDS:
        return "need_weights", "no tiled backend registered; weights from the reference backend"
    return "lse", "exp(S - lse) with the lse of the tiled (FlashAttention-2) backend"


@contextmanager
def capture(modules: Sequence[nn.Module]) -> Iterator[list[LayerCall]]:
    """Record one :class:`LayerCall` per module while the block runs (first call of each)."""
    calls = [LayerCall() for _ in modules]
    handles = []
    for call, m in zip(calls, modules, strict=True):
        handles.append(m.register_forward_pre_hook(_remember_kwargs(call), with_kwargs=True))
        handles.append(m.register_forward_hook(_remember(call, "output")))
        for name in ("q", "k", "v"):
            handles.append(getattr(m, f"w_{name}").register_forward_hook(_remember(call, name)))
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def _remember(call: LayerCall, name: str):
    def hook(module, args, output):
        if getattr(call, name) is None:
            setattr(call, name, output[0] if isinstance(output, tuple) else output)

    return hook


def _remember_kwargs(call: LayerCall):
    def hook(module, args, kwargs):
        if not call.kwargs:
            call.kwargs = dict(kwargs) | {"_query": args[0] if args else kwargs.get("query")}
            if len(args) > 1:
                call.kwargs["_positional"] = args[1:]  # key, value, mask given by position

    return hook


@torch.no_grad()
def layer_weights(module: nn.Module, call: LayerCall, *, method: str | None = None) -> LayerWeights:
    """Weights ``(H, Lq, Lk)`` of batch element 0 of ``call``; ``method`` None picks :func:`weights_method`."""
    from attnkit.functional import attention

    if not isinstance(module, MultiHeadAttention):
        raise TypeError(
            f"layer_weights(): module must be an attnkit.nn.MultiHeadAttention, got {type(module).__name__}"
        )
    method = method or weights_method()[0]
    if method not in ("lse", "need_weights"):
        raise ValueError(f"layer_weights(): method must be 'lse' or 'need_weights', got {method!r}")
    q, k, v, mask, bias = _inputs(module, call)
    if method == "lse":
        from attnkit.functional import attention_weights

        out, lse = attention(q, k, v, mask, bias=bias, return_lse=True, backend="tiled")  # (B, H, L, d_v), (B, H, L)
        weights = attention_weights(q, k, v, mask, bias=bias, lse=lse)  # (B, H, L, L)
    else:
        out, weights = attention(q, k, v, mask, bias=bias, return_weights=True, backend="reference")
    B, H, Lq, dv = out.shape
    projected = module.w_o(out.transpose(1, 2).reshape(B, Lq, H * dv))  # (B, H, Lq, d_v) -> (B, Lq, d_model)
    error = float((projected - call.output).abs().max())
    return LayerWeights(weights[0].float(), method, error)


def _inputs(module: MultiHeadAttention, call: LayerCall):
    """``q (B, H, Lq, d_k)``, ``k``, ``v (B, Hkv, Lk, d)``, mask and bias as the module used them.

    Self-attention (``module(x, mask=...)`` or ``module(x, mask)``) and cross-attention
    (``module(x, memory, memory, mask)``, keys from another sequence: no RoPE) are both
    read; a call that used a KV cache is refused (its keys were partly computed before).
    """
    if call.q is None or call.k is None or call.v is None or call.output is None:
        raise RuntimeError("layer_weights(): the hooks saw no forward call of this module")
    if call.kwargs.get("cache") is not None:
        raise ValueError("layer_weights(): calls with a KV cache are not supported (earlier keys were computed in "
                         "other calls); inspect a plain forward pass, e.g. teacher forcing")  # fmt: skip
    key, mask = call.kwargs.get("key"), call.kwargs.get("mask")
    positional = tuple(call.kwargs.get("_positional", ()))
    if positional and _is_mask(positional[0]):
        mask = positional[0]  # the classic forward(x, mask) call
    elif positional:
        key = positional[0]
        mask = positional[2] if len(positional) > 2 else mask
    cross = key is not None and key is not call.kwargs.get("_query")
    q = _heads(call.q, module.num_heads, module.d_k)  # (B, Lq, H*d_k) -> (B, H, Lq, d_k)
    k = _heads(call.k, module.num_kv_heads, module.d_k)  # (B, Lk, Hkv*d_k) -> (B, Hkv, Lk, d_k)
    v = _heads(call.v, module.num_kv_heads, module.d_v)  # (B, Lk, Hkv*d_v) -> (B, Hkv, Lk, d_v)
    positions = call.kwargs.get("positions")
    if module.rotary is not None and not cross:  # RoPE acts in self-attention only, as in the module
        q = module.rotary.rotate(q, 0, positions=positions)  # (B, H, L, d_k)
        k = module.rotary.rotate(k, 0, positions=positions)  # (B, Hkv, L, d_k)
    bias = call.kwargs.get("attn_bias")
    return q, k, v, mask, module.alibi if bias is None else bias


def _is_mask(x) -> bool:
    return isinstance(x, Mask) or (isinstance(x, Tensor) and x.dtype == torch.bool)


def _heads(x: Tensor, heads: int, dim: int) -> Tensor:
    B, L, _ = x.shape
    return x.detach().view(B, L, heads, dim).transpose(1, 2)  # (B, L, heads*dim) -> (B, heads, L, dim)
