"""Position-wise feed-forward network of the Transformer, with ReLU, GELU and SwiGLU.

Shape legend
------------
B        batch size
L        sequence length
d_model  model width (input and output features)
d_ff     hidden width of the feed-forward network

The network acts on the last dimension only, so any leading shape works:
``(B, L, d_model) -> (B, L, d_model)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FeedForward", "ACTIVATIONS", "default_d_ff"]

#: Valid values of ``FeedForward(activation=...)``.
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "swiglu")


def default_d_ff(d_model: int, activation: str, multiple_of: int = 64) -> int:
    """Hidden width used when ``d_ff`` is not given.

    ``4 * d_model`` (the 2017 paper: 512 -> 2048), except for ``"swiglu"``, which
    has three matrices instead of two: Llama keeps the parameter count by using
    ``int(8 * d_model / 3)`` rounded up to a multiple of ``multiple_of`` (64 here;
    the Llama 1/2 7B checkpoint used 256, which gives 11008 for d_model=4096, so
    pass ``d_ff=11008`` explicitly to load it).

    >>> default_d_ff(512, "relu"), default_d_ff(4096, "swiglu"), default_d_ff(4096, "swiglu", 256)
    (2048, 10944, 11008)
    """
    if activation != "swiglu":
        return 4 * d_model
    hidden = 8 * d_model // 3  # == int(8 * d_model / 3) for positive ints
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


class FeedForward(nn.Module):
    r"""Position-wise feed-forward network, applied to each position separately.

    .. math::
        \mathrm{FFN}(x) = \mathrm{act}(x W_1 + b_1) W_2 + b_2
        \qquad \text{(Vaswani et al. 2017, eq. 2)}

    .. math::
        \mathrm{FFN}_{\mathrm{SwiGLU}}(x) =
        (\mathrm{SiLU}(x W_{gate}) \odot x W_{up}) W_{down}
        \qquad \text{(Shazeer 2020)}

    Args:
        d_model: input and output width.
        d_ff: hidden width; default :func:`default_d_ff` (``4 * d_model``, or for
            ``"swiglu"`` ``int(8 * d_model / 3)`` rounded up to a multiple of 64,
            the Llama rule; 512 -> 1408, 4096 -> 10944).
        activation: ``"relu"`` (paper), ``"gelu"`` (exact, erf-based: BERT),
            ``"gelu_tanh"`` (tanh approximation: GPT-2) or ``"swiglu"`` (Llama).
        dropout: dropout on the hidden activation, as in the Annotated
            Transformer. The residual dropout of the paper belongs to the layer
            that adds the residual, not here.
        bias: add biases to every linear map (Llama uses ``bias=False``).

    Submodules are named after the checkpoints they load: ``w_1``, ``w_2`` for
    relu/gelu/gelu_tanh; ``w_gate``, ``w_up``, ``w_down`` for swiglu (Llama's
    ``gate_proj``, ``up_proj``, ``down_proj``).

    Shapes:
        x: (..., d_model) -> (..., d_model)

    Example:
        >>> ffn = FeedForward(d_model=8, activation="swiglu", bias=False)
        >>> ffn.d_ff, ffn.w_gate.weight.shape
        (64, torch.Size([64, 8]))
        >>> ffn(torch.randn(2, 5, 8)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int | None = None,
        activation: str = "relu",
        dropout: float = 0.0,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        owner = "FeedForward()"
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"{owner}: unknown activation {activation!r}; valid activations are "
                f"{', '.join(repr(a) for a in ACTIVATIONS)}"
            )
        _check_positive_int(owner, "d_model", d_model)
        d_ff = default_d_ff(d_model, activation) if d_ff is None else d_ff
        _check_positive_int(owner, "d_ff", d_ff)
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"{owner}: dropout must be a probability in [0, 1], got {dropout}")
        self.d_model, self.d_ff, self.activation = d_model, d_ff, activation
        if activation == "swiglu":
            self.w_gate = nn.Linear(d_model, d_ff, bias=bias)
            self.w_up = nn.Linear(d_model, d_ff, bias=bias)
            self.w_down = nn.Linear(d_ff, d_model, bias=bias)
        else:
            self.w_1 = nn.Linear(d_model, d_ff, bias=bias)
            self.w_2 = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(float(dropout))

    def _usable_fused_gate_up(self) -> Tensor | None:
        """The ``(2*d_ff, d_model)`` gate+up weight of ``decode_layout``, or None where it must not be used.

        It is used only while it still shares storage with ``w_gate``/``w_up``, no hook watches those
        layers and no gradient has to flow to them (the fused block gives none).
        """
        fused = getattr(self, "_fused_gate_up", None)
        if fused is None or fused.data_ptr() != self.w_gate.weight.data_ptr():
            return None
        if any(m._forward_hooks or m._forward_pre_hooks for m in (self.w_gate, self.w_up)):
            return None
        if torch.is_grad_enabled() and self.w_gate.weight.requires_grad:
            return None
        return fused

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 0 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"FeedForward.forward(): x must have shape (..., d_model={self.d_model}), "
                f"got {tuple(x.shape)}"
            )
        if self.activation == "swiglu":
            fused = self._usable_fused_gate_up()
            if fused is not None:
                gate, up = F.linear(x, fused).split(self.d_ff, dim=-1)  # (..., 2*d_ff) -> 2 x (..., d_ff)
            else:
                gate, up = self.w_gate(x), self.w_up(x)  # (..., d_model) -> (..., d_ff)
            hidden = F.silu(gate) * up  # (..., d_ff)
            return self.w_down(self.dropout(hidden))  # (..., d_ff) -> (..., d_model)
        hidden = self.w_1(x)  # (..., d_model) -> (..., d_ff)
        if self.activation == "relu":
            hidden = F.relu(hidden)
        elif self.activation == "gelu":
            hidden = F.gelu(hidden)
        else:  # "gelu_tanh"
            hidden = F.gelu(hidden, approximate="tanh")
        return self.w_2(self.dropout(hidden))  # (..., d_ff) -> (..., d_model)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_ff={self.d_ff}, activation={self.activation!r}"


def _check_positive_int(owner: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__} ({value!r})")
    if value < 1:
        raise ValueError(f"{owner}: {name} must be >= 1, got {value}")
