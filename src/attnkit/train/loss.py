r"""Label-smoothed cross-entropy (Szegedy et al., 2016; "Attention Is All You Need" 5.4, eps_ls = 0.1).

For one token with target ``y`` over ``V`` classes and log-probabilities ``lp``::

    spread="others" (fairseq, the default):  q(y) = 1 - eps,        q(k != y) = eps / (V - 1)
        loss = (1 - eps) * (-lp[y]) + eps / (V - 1) * sum_{k != y} (-lp[k])
    spread="all" (Szegedy et al.; torch's label_smoothing):  q(k) = eps / V + (1 - eps) * [k == y]
        loss = (1 - eps) * (-lp[y]) + eps / V * sum_k (-lp[k])

The loss is the mean over the tokens whose target is not ``ignore_index``.

Shape legend: B batch, T target length, V vocabulary size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["label_smoothed_cross_entropy", "lm_loss", "seq2seq_loss", "LossFn"]

# (model, batch) -> loss or (loss, tokens); the batch is whatever the training data yields
LossFn = Callable[[nn.Module, Any], Tensor | tuple[Tensor, int]]
_SPREADS = ("others", "all")


def label_smoothed_cross_entropy(
    logits: Tensor,
    targets: Tensor,
    *,
    smoothing: float = 0.1,
    ignore_index: int | None = 0,
    spread: str = "others",
) -> Tensor:
    """Mean label-smoothed cross-entropy of ``logits (B, T, V)`` against ``targets (B, T)``.

    Any leading shape works: ``logits (..., V)`` with ``targets (...)``. ``ignore_index``
    (default 0, attnkit's ``pad_id``; None ignores nothing) marks padding. ``spread`` says
    where the ``smoothing`` mass goes: ``"others"`` spreads it over the ``V - 1``
    non-target classes (fairseq), ``"all"`` over all ``V`` classes (Szegedy et al. 2016,
    equal to ``F.cross_entropy(label_smoothing=smoothing)``). With ``smoothing=0`` both
    are the plain cross-entropy. A batch of padding only gives 0 (not NaN).
    Computed in float32 for half-precision logits.

    Example:
        >>> logits = torch.zeros(1, 2, 4)                     # uniform over V = 4 classes
        >>> loss = label_smoothed_cross_entropy(logits, torch.tensor([[3, 0]]), smoothing=0.1)
        >>> round(loss.item(), 4)                             # -log(1/4), one real token
        1.3863
    """
    _check_loss_args(logits, targets, smoothing, spread)
    log_probs = F.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    keep = torch.ones_like(targets, dtype=torch.bool) if ignore_index is None else targets != ignore_index  # (B, T)
    safe_targets = torch.where(keep, targets, torch.zeros_like(targets))  # (B, T): any valid index under padding
    nll = -log_probs.gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)  # (B, T, V) -> (B, T)
    total = -log_probs.sum(dim=-1)  # (B, T, V) -> (B, T): sum over all classes of -log p
    vocab = logits.shape[-1]
    if spread == "others":
        per_token = (1.0 - smoothing) * nll + smoothing / (vocab - 1) * (total - nll)  # (B, T)
    else:
        per_token = (1.0 - smoothing) * nll + smoothing / vocab * total  # (B, T)
    per_token = per_token.masked_fill(~keep, 0.0)  # (B, T)
    return per_token.sum() / keep.sum().clamp(min=1)


def _check_loss_args(logits: Tensor, targets: Tensor, smoothing: float, spread: str) -> None:
    name = "label_smoothed_cross_entropy()"
    if logits.dim() < 1 or logits.shape[:-1] != targets.shape:
        raise ValueError(f"{name}: logits must be (..., V) with targets (...), got logits {tuple(logits.shape)} "
                         f"and targets {tuple(targets.shape)}; for (B, T, V) logits pass (B, T) targets")  # fmt: skip
    if targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"{name}: targets must be an integer tensor of class ids, got dtype {targets.dtype}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"{name}: smoothing must be in [0, 1), got {smoothing!r}; the paper uses 0.1")
    if spread not in _SPREADS:
        raise ValueError(f"{name}: spread must be one of {_SPREADS}, got {spread!r}")
    if spread == "others" and logits.shape[-1] < 2:
        raise ValueError(f"{name}: spread='others' needs V >= 2 classes, got V={logits.shape[-1]}")


def lm_loss(*, smoothing: float = 0.0, pad_id: int | None = 0) -> LossFn:
    """Loss function ``(model, ids (B, L+1)) -> (loss, tokens)`` for a :class:`~attnkit.nn.TransformerLM`.

    Predicts ``ids[:, 1:]`` from ``ids[:, :-1]``; ``tokens`` counts the non-pad targets.

    Example:
        >>> from attnkit.nn import TransformerConfig, TransformerLM
        >>> cfg = TransformerConfig(vocab_size=10, d_model=8, num_heads=2, d_ff=16,
        ...                         num_encoder_layers=0, num_decoder_layers=1)
        >>> loss, tokens = lm_loss()(TransformerLM(cfg), torch.tensor([[1, 5, 6, 2]]))
        >>> tokens
        3
    """

    def loss_fn(model: nn.Module, ids: Tensor) -> tuple[Tensor, int]:
        inputs, targets = ids[:, :-1], ids[:, 1:]  # (B, L+1) -> (B, L), (B, L)
        logits = model(inputs)  # (B, L, V)
        loss = label_smoothed_cross_entropy(logits, targets, smoothing=smoothing, ignore_index=pad_id)
        return loss, _count(targets, pad_id)

    return loss_fn


def seq2seq_loss(*, smoothing: float = 0.1, pad_id: int | None = 0) -> LossFn:
    """Loss function ``(model, (src (B, S), tgt (B, T+1))) -> (loss, tokens)`` for a :class:`~attnkit.nn.Transformer`.

    Teacher forcing: the decoder reads ``tgt[:, :-1]`` (starting with BOS) and predicts ``tgt[:, 1:]``.

    Example:
        >>> import torch
        >>> from attnkit.nn import Transformer, TransformerConfig
        >>> model = Transformer(TransformerConfig(vocab_size=10, d_model=16, num_heads=2, d_ff=32,
        ...                                       num_encoder_layers=1, num_decoder_layers=1))
        >>> src, tgt = torch.tensor([[4, 5, 0]]), torch.tensor([[1, 6, 7, 2, 0]])  # 0 pad, 1 BOS, 2 EOS
        >>> loss, tokens = seq2seq_loss(smoothing=0.0)(model, (src, tgt))
        >>> tokens, loss.ndim, bool(loss > 0)  # targets 6, 7, EOS count; the pad does not
        (3, 0, True)
    """

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, int]:
        src, tgt = batch
        tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]  # (B, T+1) -> (B, T), (B, T)
        logits = model(src, tgt_in)  # (B, T, V)
        loss = label_smoothed_cross_entropy(logits, tgt_out, smoothing=smoothing, ignore_index=pad_id)
        return loss, _count(tgt_out, pad_id)

    return loss_fn


def _count(targets: Tensor, pad_id: int | None) -> int:
    return targets.numel() if pad_id is None else int((targets != pad_id).sum())
