r"""Multi-head attention as a module, with a KV cache.

.. math::

    \mathrm{MultiHead}(Q, K, V) = \mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_h) W^O,
    \quad \mathrm{head}_i = \mathrm{Attention}(Q W_i^Q, K W_i^K, V W_i^V)

(Vaswani et al., 2017, section 3.2.2). The forward pass runs in three numbered
steps: 1. project and split heads, 2. attend (:func:`attnkit.functional.attention`),
3. concatenate heads and project.

Shape legend: B batch, Lq query length, Lk key length, d_model model width,
H query heads, Hkv key/value heads (grouped-query attention when Hkv < H),
d_k query/key width per head, d_v value width per head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import Alibi, alibi_slopes, attention
from ..functional.dispatch import BACKENDS
from ..masks import Mask
from .positional import RotaryEmbedding
from .pruning import prune_heads as _prune_heads

__all__ = ["MultiHeadAttention", "KVCache"]


@dataclass
class KVCache:
    """Keys and values of past positions for one attention layer, ``(B, Hkv, L, d)``.

    Self-attention appends the new step's keys/values; cross-attention
    (``static=True``) computes them once from the encoder memory and reuses them.
    Storage grows by doubling, so appending one step costs O(1) amortized copies.

    Example:
        >>> cache = KVCache()
        >>> k, v = cache.append(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))
        >>> k.shape, cache.length
        (torch.Size([1, 2, 3, 4]), 3)
    """

    static: bool = False  # True for cross-attention: filled once, never appended to
    length: int = 0  # number of cached positions
    _k: Tensor | None = field(default=None, repr=False)  # (B, Hkv, capacity, d_k)
    _v: Tensor | None = field(default=None, repr=False)  # (B, Hkv, capacity, d_v)

    @property
    def keys(self) -> Tensor | None:
        return None if self._k is None else self._k[:, :, : self.length]  # (B, Hkv, L, d_k), a view

    @property
    def values(self) -> Tensor | None:
        return None if self._v is None else self._v[:, :, : self.length]  # (B, Hkv, L, d_v), a view

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add ``k (B, Hkv, n, d_k)`` and ``v (B, Hkv, n, d_v)``; return all cached keys and values."""
        n = k.shape[2]
        if self._k is None or self._v is None:
            self._k = k.new_empty(*k.shape[:2], max(n, 16), k.shape[3])  # (B, Hkv, capacity, d_k)
            self._v = v.new_empty(*v.shape[:2], max(n, 16), v.shape[3])  # (B, Hkv, capacity, d_v)
        elif self._k.shape[0] != k.shape[0]:
            raise ValueError(
                f"KVCache.append(): the cache holds batch size {self._k.shape[0]} but got {k.shape[0]}; "
                "use one cache per sequence batch (reorder it with select_batch for beam search)"
            )
        elif (self._k.shape[1], self._k.shape[3], self._v.shape[3]) != (k.shape[1], k.shape[3], v.shape[3]):
            raise ValueError(
                f"KVCache.append(): the cache holds (Hkv, d_k, d_v) = ({self._k.shape[1]}, {self._k.shape[3]}, "
                f"{self._v.shape[3]}) but got ({k.shape[1]}, {k.shape[3]}, {v.shape[3]}); use one cache per layer"
            )
        if self.length + n > self._k.shape[2]:
            self._k, self._v = self._grown(self._k, self._v, self.length + n)
        self._k[:, :, self.length : self.length + n] = k
        self._v[:, :, self.length : self.length + n] = v
        self.length += n
        return self._k[:, :, : self.length], self._v[:, :, : self.length]  # (B, Hkv, L, d_k), (B, Hkv, L, d_v), views

    def _grown(self, old_k: Tensor, old_v: Tensor, needed: int) -> tuple[Tensor, Tensor]:
        """New buffers of at least ``needed`` (and twice the old) positions holding the cached rows."""
        capacity = max(needed, 2 * old_k.shape[2])
        k = old_k.new_empty(*old_k.shape[:2], capacity, old_k.shape[3])  # (B, Hkv, capacity, d_k)
        v = old_v.new_empty(*old_v.shape[:2], capacity, old_v.shape[3])  # (B, Hkv, capacity, d_v)
        k[:, :, : self.length] = old_k[:, :, : self.length]
        v[:, :, : self.length] = old_v[:, :, : self.length]
        return k, v

    def select_batch(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (in that order): reorders hypotheses in beam search."""
        if self._k is not None and self._v is not None:
            self._k, self._v = self._k.index_select(0, index), self._v.index_select(0, index)

    def _mark(self) -> tuple[int, Tensor | None, Tensor | None]:
        """The state to return to when a call that appended fails (see :meth:`_rollback`)."""
        return self.length, self._k, self._v

    def _rollback(self, mark: tuple[int, Tensor | None, Tensor | None]) -> None:
        """Forget what was appended since ``mark``: rows past ``length`` are never read, so this is exact."""
        self.length, self._k, self._v = mark


class MultiHeadAttention(nn.Module):
    r"""Multi-head attention with the classic constructor ``(num_heads, d_model, d_k, d_v, dropout)``.

    Args:
        num_heads: number of query heads ``H``.
        d_model: model width (input and output features).
        d_k: query/key width per head; default ``d_model // num_heads``.
        d_v: value width per head; default ``d_k``.
        dropout: dropout on the attention weights while training.
        bias: add biases to the four projections.
        num_kv_heads: key/value heads ``Hkv`` (grouped-query attention); default ``num_heads``.
        kdim, vdim: input features of ``key`` / ``value`` when they differ from d_model
            (as in ``nn.MultiheadAttention``).
        rotary: a :class:`~attnkit.nn.positional.RotaryEmbedding` applied to queries and keys.
        alibi: add the ALiBi bias (causal form) with the paper's slopes for ``num_heads``.
        backend: attention backend name, see :func:`attnkit.functional.explain`.

    ``forward(query, key=None, value=None, mask=None, *, need_weights=False, attn_bias=None, cache=None)``:
    self-attention when ``key``/``value`` are omitted; ``mha(x, mask)`` also works, as in
    the widely copied snippet (a mask in the ``key`` slot is taken as the mask). Masks use
    attnkit's convention, ``True`` = may attend. Returns ``(B, Lq, d_model)``, or
    ``(output, weights)`` with per-head weights ``(B, H, Lq, Lk)`` when ``need_weights``
    (``nn.MultiheadAttention`` averages heads by default; attnkit keeps them).
    ``attn_bias`` is an additive float tensor broadcastable to ``(B, H, Lq, Lk)``.
    ``positions`` ``(L,)`` or ``(B, L)`` gives RoPE positions for packed sequences.
    ``cache`` is a :class:`KVCache`: self-attention appends this call's keys and values
    (RoPE positions continue from the cached length unless ``positions`` is given); a ``KVCache(static=True)``
    projects cross-attention memory once and reuses it. A call that raises leaves its
    cache as it was, so the next decoding step is still right. A float tensor where a
    mask goes (torch's additive convention) is refused: convert it with
    :func:`attnkit.nn.masks_from_torch`.

    Converting from ``nn.MultiheadAttention``: :meth:`from_torch` copies the weights;
    its masks use the opposite polarity (``True`` = blocked) — translate them with
    :func:`attnkit.nn.masks_from_torch`.

    Example:
        >>> from attnkit import masks
        >>> mha = MultiHeadAttention(8, 512, 64, 64, 0.1)
        >>> x = torch.randn(2, 10, 512)
        >>> mha(x).shape
        torch.Size([2, 10, 512])
        >>> y, w = mha(x, mask=masks.causal(), need_weights=True)
        >>> w.shape
        torch.Size([2, 8, 10, 10])
    """

    def __init__(
        self,
        num_heads: int,
        d_model: int,
        d_k: int | None = None,
        d_v: int | None = None,
        dropout: float = 0.1,
        *,
        bias: bool = True,
        num_kv_heads: int | None = None,
        kdim: int | None = None,
        vdim: int | None = None,
        rotary: RotaryEmbedding | None = None,
        alibi: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        _check_positive("num_heads", num_heads)
        _check_positive("d_model", d_model)
        if d_k is None and d_model % num_heads != 0:
            raise ValueError(
                f"MultiHeadAttention(): d_model={d_model} is not divisible by num_heads={num_heads}; "
                "pass d_k explicitly or choose num_heads among the divisors of d_model"
            )
        d_k = d_model // num_heads if d_k is None else _check_positive("d_k", d_k)
        d_v = d_k if d_v is None else _check_positive("d_v", d_v)
        num_kv_heads = num_heads if num_kv_heads is None else _check_positive("num_kv_heads", num_kv_heads)
        if num_heads % num_kv_heads != 0:
            raise ValueError(
                f"MultiHeadAttention(): num_heads={num_heads} must be a multiple of num_kv_heads={num_kv_heads} "
                "(grouped-query attention shares each key/value head among num_heads // num_kv_heads query heads)"
            )
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiHeadAttention(): dropout must be a float in [0, 1), got {dropout!r}")
        for name, flag in (("bias", bias), ("alibi", alibi)):
            if not isinstance(flag, bool):
                raise TypeError(f"MultiHeadAttention(): {name} must be True or False, got {flag!r}")
        kdim = None if kdim is None else _check_positive("kdim", kdim)
        vdim = None if vdim is None else _check_positive("vdim", vdim)
        check_backend("MultiHeadAttention()", "backend", backend)
        if rotary is not None and (not isinstance(rotary, RotaryEmbedding) or rotary.head_dim != d_k):
            raise ValueError(
                f"MultiHeadAttention(): rotary must be a RotaryEmbedding with head_dim == d_k == {d_k}, got {rotary!r}"
            )
        self.num_heads, self.num_kv_heads, self.d_model, self.d_k, self.d_v = num_heads, num_kv_heads, d_model, d_k, d_v
        self.dropout, self.backend = float(dropout), backend
        self.kdim, self.vdim = kdim or d_model, vdim or d_model
        self.w_q = nn.Linear(d_model, num_heads * d_k, bias=bias)  # W^Q for all heads
        self.w_k = nn.Linear(self.kdim, num_kv_heads * d_k, bias=bias)  # W^K
        self.w_v = nn.Linear(self.vdim, num_kv_heads * d_v, bias=bias)  # W^V
        self.w_o = nn.Linear(num_heads * d_v, d_model, bias=bias)  # W^O
        self.rotary = rotary
        self.alibi = Alibi(alibi_slopes(num_heads)) if alibi else None
        self._head_gates: Tensor | None = None  # xi (H,) of Michel et al. 2019; None = off, no cost

    @property
    def head_gates(self) -> Tensor | None:
        r"""Per-head gates :math:`\xi_h` multiplying each head's output before :math:`W^O`; None = off.

        ``MultiHead(x) = Concat(xi_1 head_1, ..., xi_H head_H) W^O`` (Michel, Levy & Neubig,
        2019, "Are Sixteen Heads Really Better than One?"). Set a float tensor ``(num_heads,)``
        — ones with ``requires_grad=True`` give the head-importance gradients ``dL/dxi_h``,
        zeros switch heads off. The gates are not parameters (optimizers and checkpoints
        skip them); ``None`` (the default) skips the multiplication entirely.

        Example:
            >>> mha = MultiHeadAttention(2, 8, dropout=0.0)
            >>> x = torch.randn(1, 3, 8)
            >>> mha.head_gates = torch.zeros(2)
            >>> torch.allclose(mha(x), mha.w_o.bias.expand(1, 3, 8))  # every head off: only W^O's bias is left
            True
        """
        return self._head_gates

    @head_gates.setter
    def head_gates(self, gates: Tensor | None) -> None:
        if gates is not None and (not isinstance(gates, Tensor) or gates.shape != (self.num_heads,)
                                  or not gates.is_floating_point()):  # fmt: skip
            got = tuple(gates.shape) if isinstance(gates, Tensor) else type(gates).__name__
            raise ValueError(f"MultiHeadAttention.head_gates must be a float tensor of shape (num_heads,) = "
                             f"({self.num_heads},) or None, got {got}")  # fmt: skip
        self._head_gates = gates

    def prune_heads(self, heads) -> None:
        """Remove query heads ``heads`` (indices among the current heads): W^Q, W^K, W^V and W^O shrink.

        The result equals this module with those heads' :attr:`head_gates` at 0; see
        :mod:`attnkit.nn.pruning` (grouped-query attention is refused).

        Example:
            >>> mha = MultiHeadAttention(8, 64, dropout=0.0)
            >>> mha.prune_heads([1, 5])
            >>> mha.num_heads, mha.w_q.out_features, mha.w_o.in_features
            (6, 48, 48)
        """
        _prune_heads(self, heads)

    def forward(
        self,
        query: Tensor,
        key: Tensor | Mask | None = None,
        value: Tensor | None = None,
        mask: Mask | Tensor | None = None,
        *,
        need_weights: bool = False,
        attn_bias: Tensor | None = None,
        cache: KVCache | None = None,
        positions: Tensor | None = None,
    ):
        if mask is None and value is None and key is not None and _is_mask(key):
            key, mask = None, key  # the classic forward(x, mask) call
        _check_mask(key, value, mask)
        self._check_inputs(query, key, value)
        if attn_bias is not None and self.alibi is not None:
            raise ValueError("MultiHeadAttention.forward(): attn_bias cannot be combined with alibi=True")
        if cache is None:
            return self._forward(query, key, value, mask, need_weights, attn_bias, cache, positions)
        mark = cache._mark()
        try:
            return self._forward(query, key, value, mask, need_weights, attn_bias, cache, positions)
        except BaseException:
            cache._rollback(mark)  # a failed call leaves the cache as it was: later steps stay right
            raise

    def _forward(self, query, key, value, mask, need_weights, attn_bias, cache, positions):
        """The three steps of :meth:`forward` on validated arguments."""
        B, Lq, _ = query.shape
        offset = 0 if cache is None or cache.static else cache.length
        if positions is not None:
            offset = 0  # explicit positions (e.g. left-padded decoding with a cache) replace the cached length
        # 1. project and split heads
        fused = self._fused_projections(query, key, cache)  # (q, k, v) rows from one matmul, or None
        q = self._heads(self.w_q(query) if fused is None else fused[0], self.num_heads, self.d_k)  # (B, H, Lq, d_k)
        fused_kv = None if fused is None else fused[1:]
        k, v = self._keys_values(query, key, value, cache, offset, positions, fused_kv)  # (B, Hkv, Lk, d_k), (.., d_v)
        if self.rotary is not None and (key is None or key is query):  # RoPE acts in self-attention only
            q = self.rotary.rotate(q, offset, positions=positions)  # (B, H, Lq, d_k), default offset..offset+Lq-1
        # 2. attend
        result = attention(
            q, k, v, mask, bias=self.alibi if attn_bias is None else attn_bias,
            dropout_p=self.dropout if self.training else 0.0, return_weights=need_weights, backend=self.backend,
        )  # fmt: skip
        out, weights = (result, None) if isinstance(result, Tensor) else result  # (B, H, Lq, d_v), weights or None
        if self._head_gates is not None:
            out = out * self._head_gates.to(out).view(1, -1, 1, 1)  # (B, H, Lq, d_v) * (1, H, 1, 1): xi_h head_h
        # 3. concatenate heads and project
        out = out.transpose(1, 2).reshape(B, Lq, self.num_heads * self.d_v)  # (B, H, Lq, d_v) -> (B, Lq, H*d_v)
        out = self.w_o(out)  # (B, Lq, H*d_v) -> (B, Lq, d_model)
        return (out, weights) if need_weights else out

    def _fused_projections(self, query: Tensor, key, cache) -> tuple[Tensor, Tensor, Tensor] | None:
        """``x W^Q, x W^K, x W^V`` from one matmul when :func:`attnkit.nn.decode_layout` fused them, else None."""
        fused = getattr(self, "_fused_qkv", None)  # (H*d_k + 2*Hkv*d_k, d_model), shares storage with w_q/w_k/w_v
        if fused is None or not (key is None or key is query) or (cache is not None and cache.static):
            return None
        if fused.data_ptr() != self.w_q.weight.data_ptr():  # the weights were moved or replaced since
            return None
        if torch.is_grad_enabled() and self.w_q.weight.requires_grad:  # the block is no Parameter: no gradients
            return None
        if _hooked(self.w_q, self.w_k, self.w_v):  # someone observes the separate projections (e.g. inspect)
            return None
        sizes = (self.w_q.out_features, self.w_k.out_features, self.w_v.out_features)
        return F.linear(query, fused).split(sizes, dim=-1)  # (B, L, sum) -> three (B, L, out) views

    def _keys_values(self, query, key, value, cache, offset: int, positions, projected=None) -> tuple[Tensor, Tensor]:
        """Project keys and values (or take ``projected``), rotate keys, and read/extend the cache."""
        if cache is not None and cache.static and cache.length > 0:
            return cache.keys, cache.values  # cross-attention: the memory was projected at the first step
        self_attention = key is None or key is query
        key = query if key is None else key
        value = key if value is None else value
        k_lin, v_lin = (self.w_k(key), self.w_v(value)) if projected is None else projected  # (B, Lk, Hkv*d)
        k = self._heads(k_lin, self.num_kv_heads, self.d_k)  # (B, Lk, Hkv*d_k) -> (B, Hkv, Lk, d_k)
        v = self._heads(v_lin, self.num_kv_heads, self.d_v)  # (B, Lk, Hkv*d_v) -> (B, Hkv, Lk, d_v)
        if self.rotary is not None and self_attention:  # keys share the query positions
            k = self.rotary.rotate(k, offset, positions=positions)  # (B, Hkv, Lk, d_k)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, Hkv, past + Lk, d)
        return k, v

    @staticmethod
    def _heads(x: Tensor, heads: int, dim: int) -> Tensor:
        B, L, _ = x.shape
        return x.view(B, L, heads, dim).transpose(1, 2)  # (B, L, heads*dim) -> (B, heads, L, dim)

    def _check_inputs(self, query, key, value) -> None:
        if not isinstance(query, Tensor) or query.dim() != 3 or query.shape[-1] != self.d_model:
            got = tuple(query.shape) if isinstance(query, Tensor) else type(query).__name__
            raise ValueError(
                f"MultiHeadAttention.forward(): query must be (B, L, d_model={self.d_model}), got {got}; "
                "attnkit modules are batch-first"
            )
        for name, t, width in (("key", key, self.kdim), ("value", value, self.vdim)):
            if t is not None and (not isinstance(t, Tensor) or t.dim() != 3 or t.shape[-1] != width):
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"MultiHeadAttention.forward(): {name} must be (B, Lk, {width}), got {got}")
        if key is not None and value is not None and key.shape[:2] != value.shape[:2]:
            raise ValueError(
                f"MultiHeadAttention.forward(): key {tuple(key.shape)} and value {tuple(value.shape)} must share "
                "batch size and length"
            )
        self._check_dtypes(query, key, value)

    def _check_dtypes(self, query: Tensor, key, value) -> None:
        """Inputs in the dtype of the weights (autocast converts them itself, so it is let through)."""
        weight = self.w_q.weight.dtype
        if torch.is_autocast_enabled(query.device.type):
            return
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t is not None and t.dtype != weight:
                raise TypeError(
                    f"MultiHeadAttention.forward(): {name} has dtype {t.dtype} but the module's weights are "
                    f"{weight}; convert one to the other, e.g. mha.to({t.dtype}) or {name}.to({weight})"
                )

    def extra_repr(self) -> str:
        return (
            f"num_heads={self.num_heads}, d_model={self.d_model}, d_k={self.d_k}, d_v={self.d_v}, "
            f"num_kv_heads={self.num_kv_heads}, dropout={self.dropout}, backend={self.backend!r}"
        )

    # ------------------------------------------------------------------ interop
    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy an ``nn.MultiheadAttention`` (either ``batch_first``); attnkit is always batch-first."""
        from ._torch_interop import from_torch

        return from_torch(cls, module)

    def to_torch(self) -> nn.MultiheadAttention:
        """An equivalent ``nn.MultiheadAttention`` with ``batch_first=True``."""
        from ._torch_interop import to_torch

        return to_torch(self)


def _is_mask(x) -> bool:
    return isinstance(x, Mask) or (isinstance(x, Tensor) and x.dtype == torch.bool)


_MASK_HINT = (
    "masks must be attnkit Mask objects or bool tensors (True = may attend), e.g. attnkit.masks.causal(), "
    "masks.padding(lengths), masks.dense(allowed); "
    "for a torch-style float mask (added to the scores, -inf = blocked) use "
    "mask, attn_bias = attnkit.nn.masks_from_torch(attn_mask) and pass both"
)


def _check_mask(key, value, mask) -> None:
    """Reject float tensors given as masks (torch's additive convention), with the conversion to use."""
    if isinstance(mask, Tensor) and mask.dtype != torch.bool:
        raise TypeError(f"MultiHeadAttention.forward(): mask is a {mask.dtype} tensor of shape "
                        f"{tuple(mask.shape)}; {_MASK_HINT}")  # fmt: skip
    if mask is not None and not isinstance(mask, (Mask, Tensor)):
        raise TypeError(f"MultiHeadAttention.forward(): mask must be a Mask, a bool tensor or None, got "
                        f"{type(mask).__name__}; {_MASK_HINT}")  # fmt: skip
    looks_like_mask = isinstance(key, Tensor) and key.dim() in (2, 4) and value is None and mask is None
    if looks_like_mask and not key.dtype == torch.bool:  # mha(x, float_mask): a mask in the key slot
        raise TypeError(f"MultiHeadAttention.forward(): got a {key.dtype} tensor of shape {tuple(key.shape)} "
                        f"where key (B, Lk, kdim) or a mask goes; {_MASK_HINT}")  # fmt: skip


def check_backend(owner: str, name: str, backend) -> str:
    """``backend`` is ``"auto"`` or a name registered in :data:`attnkit.functional.dispatch.BACKENDS`."""
    valid = ["auto", *sorted(BACKENDS)]
    if backend not in valid:
        raise ValueError(f"{owner}: {name} must be one of {valid}, got {backend!r}; "
                         "see attnkit.functional.explain() for what each backend does")  # fmt: skip
    return backend


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"MultiHeadAttention(): {name} must be a positive int, got {value!r}")
    return value


def _hooked(*modules: nn.Module) -> bool:
    """True when any of ``modules`` has forward hooks: they must see their own calls."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)
