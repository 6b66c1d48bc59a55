"""attnkit as an attention backend of Hugging Face transformers: ``attn_implementation="attnkit"``.

One call, :func:`register`, adds two functions under one name, as transformers' own
backends come in pairs (``integrations/sdpa_attention.py`` + ``masking_utils.sdpa_mask``):

* the **mask function** (``AttentionMaskInterface``) reads the model's mask back into
  :mod:`attnkit.masks` objects — causal, sliding window (from the config), padding (from
  ``attention_mask``, left or right), packed documents (from ``position_ids``) — instead of
  a dense ``(B, 1, Lq, Lk)`` tensor, so the tiled backend skips empty tiles
  (:mod:`._hf_masks`). Without it transformers hands an unknown backend ``None`` and a
  padded batch silently attends to its padding; :func:`attention_forward` refuses that case.
* the **attention function** (``AttentionInterface``) runs :func:`attnkit.functional.attention`
  on the ``(B, H, L, D)`` tensors transformers passes (grouped-query K/V are not repeated).
  ``output_attentions=True`` gives exact weights from the tiled backend's log-sum-exp
  (:func:`attnkit.functional.attention_weights`), with no switch to eager; in training the
  model's attention dropout applies.

``mask=None`` with ``is_causal`` (what transformers passes when no mask function ran) means
SDPA's top-left causal mask; with a static cache at prefill (``Lk > Lq``) that differs from
attnkit's bottom-right :func:`~attnkit.masks.causal`, so it becomes ``masks.aligned(causal(), 0)``.

Not supported (a ``ValueError`` says so): logit soft-capping (``softcap``), attention sinks
(``s_aux``) and T5-style ``position_bias``. Needs the ``hf`` extra (``transformers``).

Shape legend: B batch, H query heads, Hkv key/value heads, Lq queries, Lk keys, D head dim.

Example:
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> name = register()
    >>> config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
    ...                      num_attention_heads=4, num_key_value_heads=2)
    >>> model = LlamaForCausalLM(config).eval()
    >>> model.set_attn_implementation(name)
    >>> ids = torch.tensor([[0, 5, 6, 7], [1, 2, 3, 4]])
    >>> padded = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])  # left padding
    >>> logits = model(ids, attention_mask=padded).logits
    >>> model.set_attn_implementation("sdpa")
    >>> torch.allclose(logits, model(ids, attention_mask=padded).logits, atol=1e-5)
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, causal_mask_function

from .. import masks
from ..functional import attention, attention_weights
from ..functional.dispatch import BACKENDS
from ..masks import Mask
from ._hf_masks import structured_mask

__all__ = ["register", "attention_forward", "mask_interface", "StructuredMask", "NAME"]

NAME = "attnkit"  #: the default ``attn_implementation`` name
_UNSUPPORTED = {
    "softcap": "logit soft-capping",
    "s_aux": "attention sinks",
    "position_bias": "an additive position bias (T5)",
}


@dataclass(frozen=True)
class StructuredMask:
    """What the mask function hands the attention function through the model: an attnkit mask.

    A wrapper rather than the mask itself, because transformers reads ``None`` as "no mask
    function ran" (and then ``is_causal`` decides); ``StructuredMask(None)`` says "every pair".
    ``shape`` and ``ndim`` let it pass where transformers expects a prepared 4D mask:
    ``generate()`` with a static cache builds the mask once per step and hands it to the model,
    whose mask function then returns it as it is.
    """

    mask: Mask | None  # what may attend (True = may attend); None = every pair
    shape: tuple[int, int, int, int] = (1, 1, 0, 0)  # (B, 1, Lq, Lk) of the call it was made for
    ndim = 4  # a prepared 4D mask, for transformers' checks

    def __repr__(self) -> str:
        return f"StructuredMask({self.mask!r})"


def register(name: str = NAME, *, backend: str = "auto") -> str:
    """Register attnkit with transformers' ``AttentionInterface`` and ``AttentionMaskInterface``; returns ``name``.

    Then ``AutoModel.from_pretrained(path, attn_implementation=name)`` and
    ``model.set_attn_implementation(name)`` work. ``backend`` is passed to
    :func:`attnkit.functional.attention` (``"auto"``, ``"tiled"``, ``"sdpa"``, ``"reference"``).

    Example:
        >>> register("attnkit-tiled", backend="tiled")
        'attnkit-tiled'
    """
    if not isinstance(name, str) or not name or "/" in name or ":" in name:
        raise ValueError(f"register(): name must be a non-empty str without '/' or ':' (transformers reads those as "
                         f"a Hub kernel), got {name!r}")  # fmt: skip
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"register(): backend must be 'auto' or one of {sorted(BACKENDS)}, got {backend!r}")

    def attnkit_attention(module, query, key, value, attention_mask, **kwargs):
        return attention_forward(module, query, key, value, attention_mask, backend=backend, **kwargs)

    AttentionInterface.register(name, attnkit_attention)
    AttentionMaskInterface.register(name, mask_interface)
    return name


def mask_interface(batch_size: int, q_length: int, kv_length: int, q_offset=0, kv_offset: int = 0,
                   mask_function: Callable = causal_mask_function, attention_mask: Tensor | None = None,
                   device=None, use_vmap: bool = False, **kwargs) -> StructuredMask:  # fmt: skip
    """The mask function: transformers' mask description as a :class:`StructuredMask`.

    Same arguments as ``transformers.masking_utils.sdpa_mask``; never skips a mask
    (``allow_is_causal_skip`` is ignored: the structured mask costs nothing to pass).

    Example:
        >>> mask_interface(2, 5, 5)
        StructuredMask(causal())
    """
    shape = (batch_size, 1, q_length, kv_length)
    if isinstance(attention_mask, StructuredMask):  # prepared by generate() for this very step
        if attention_mask.shape[2:] != shape[2:]:
            raise ValueError(f"attn_implementation='attnkit': a prepared mask for (Lq, Lk) = "
                             f"{attention_mask.shape[2:]} was passed to a call with {shape[2:]}")  # fmt: skip
        return attention_mask
    mask = structured_mask(batch_size, q_length, kv_length, q_offset, kv_offset, mask_function, attention_mask,
                           device=device, use_vmap=use_vmap)  # fmt: skip
    return StructuredMask(mask, shape)


def attention_forward(module: torch.nn.Module, query: Tensor, key: Tensor, value: Tensor,
                      attention_mask: StructuredMask | Tensor | None, dropout: float = 0.0,
                      scaling: float | None = None, is_causal: bool | None = None, *, backend: str = "auto",
                      **kwargs) -> tuple[Tensor, Tensor | None]:  # fmt: skip
    """The attention function: ``(out (B, Lq, H, Dv), weights (B, H, Lq, Lk) or None)``.

    ``query (B, H, Lq, D)``, ``key (B, Hkv, Lk, D)``, ``value (B, Hkv, Lk, Dv)`` as transformers
    passes them. ``attention_mask``: a :class:`StructuredMask` (from :func:`mask_interface`),
    a 4D tensor a caller prepared (bool = may attend; float = added to the scores), or None.

    Example:
        >>> q = k = v = torch.randn(1, 2, 6, 8)
        >>> out, weights = attention_forward(torch.nn.Module(), q, k, v, StructuredMask(masks.causal()),
        ...                                  output_attentions=True)
        >>> out.shape, weights.shape, bool(weights[0, 0, 0, 1:].eq(0).all())
        (torch.Size([1, 6, 2, 8]), torch.Size([1, 2, 6, 6]), True)
    """
    for key_name, what in _UNSUPPORTED.items():
        if kwargs.get(key_name) is not None:
            raise ValueError(f"attn_implementation='attnkit' does not support {what} ({key_name}=...); "
                             "use attn_implementation='eager' for this model")  # fmt: skip
    mask, bias = _mask_and_bias(module, attention_mask, is_causal, query.shape[2], key.shape[2])
    config = getattr(module, "config", None)
    if kwargs.get("output_attentions", getattr(config, "output_attentions", False)):
        exact = "reference" if backend == "reference" else "tiled"  # both give the log-sum-exp
        out, lse = attention(query, key, value, mask, bias=bias, scale=scaling, dropout_p=dropout,
                             return_lse=True, backend=exact)  # (B, H, Lq, Dv), (B, H, Lq)  # fmt: skip
        weights = attention_weights(query, key, value, mask, bias=bias, scale=scaling, lse=lse)  # (B, H, Lq, Lk)
    else:
        out = attention(query, key, value, mask, bias=bias, scale=scaling, dropout_p=dropout, backend=backend)
        weights = None
    return out.transpose(1, 2).contiguous(), weights  # (B, H, Lq, Dv) -> (B, Lq, H, Dv)


def _mask_and_bias(module, attention_mask, is_causal: bool | None, Lq: int,
                   Lk: int) -> tuple[Mask | None, Tensor | None]:  # fmt: skip
    """attnkit's ``(mask, bias)`` for what transformers passed as ``attention_mask``."""
    if isinstance(attention_mask, StructuredMask):
        return attention_mask.mask, None
    if isinstance(attention_mask, Tensor):
        if attention_mask.dtype == torch.bool:
            return masks.dense(attention_mask), None  # (B|1, H|1, Lq, Lk) True = may attend
        return None, attention_mask  # transformers' additive float mask: 0 or a large negative number
    if attention_mask is not None:
        raise TypeError(f"attn_implementation='attnkit': attention_mask must be a StructuredMask, a tensor or None, "
                        f"got {type(attention_mask).__name__}")  # fmt: skip
    _check_mask_function_registered(module)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if not causal or Lq == 1:  # one query attends to every key, as in transformers' SDPA backend
        return None, None
    return (masks.causal() if Lq == Lk else masks.aligned(masks.causal(), 0)), None  # SDPA's top-left is_causal


def _check_mask_function_registered(module) -> None:
    """A backend registered without its mask function gets ``None`` masks: padding would be ignored silently."""
    name = getattr(getattr(module, "config", None), "_attn_implementation", None)
    if name is not None and name not in AttentionMaskInterface._global_mapping:
        raise ValueError(
            f"attn_implementation={name!r} has an attention function but no mask function, so transformers "
            "passes attention_mask=None and a padded batch would attend to its padding; register both with "
            "attnkit.integrations.transformers.register(name)"
        )
