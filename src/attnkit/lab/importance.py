r"""Which heads matter: head importance through per-head gates, and the pruning order it gives.

Michel, Levy & Neubig (2019), "Are Sixteen Heads Really Better than One?", section 4.1:
each head's output is multiplied by a gate :math:`\xi_h` (1 in the trained model), and

.. math::

    I_h = \mathbb{E}_{x \sim X} \left| \frac{\partial \mathcal{L}(x)}{\partial \xi_h} \right|

is the head's importance (a first-order estimate of the loss change when the head is
removed). Importances are normalized per layer by their :math:`\ell_2` norm, then heads are
pruned globally, least important first, a fixed fraction of all heads per step.

Here every attention module (encoder self-attention, decoder self-attention and
cross-attention) is a "layer"; the expectation is over ``batches`` (the absolute value is
taken per batch, as in the authors' code, which accumulates per-batch gradients).

Example:
    >>> import torch
    >>> from attnkit.nn import Transformer, TransformerConfig
    >>> model = Transformer(TransformerConfig(vocab_size=20, d_model=16, num_heads=4, d_ff=32,
    ...                                       num_encoder_layers=1, num_decoder_layers=1, dropout=0.0))
    >>> sorted(attention_modules(model))
    ['decoder.layers.0.cross_attn', 'decoder.layers.0.self_attn', 'encoder.layers.0.self_attn']
    >>> batch = (torch.randint(4, 20, (3, 5)), torch.randint(4, 20, (3, 6)))
    >>> loss = lambda model, b: torch.nn.functional.cross_entropy(model(b[0], b[1][:, :-1]).flatten(0, 1),
    ...                                                           b[1][:, 1:].flatten())
    >>> scores = head_importance(model, [batch], loss)
    >>> [round(float(s.norm()), 6) for s in scores.values()]  # l2-normalized per layer
    [1.0, 1.0, 1.0]
    >>> len(pruning_order(scores))  # every head but the last one of each layer
    9
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ..nn import MultiHeadAttention

__all__ = ["attention_modules", "head_importance", "pruning_order", "gated", "set_gates", "prune_model"]

LossFn = Callable[[nn.Module, object], Tensor]  # (model, batch) -> scalar loss


def attention_modules(model: nn.Module) -> dict[str, MultiHeadAttention]:
    """Every :class:`MultiHeadAttention` of ``model`` by its module name, in definition order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)}


@contextmanager
def gated(model: nn.Module, *, requires_grad: bool = True):
    """Give every attention module gates of ones for the block (yields ``{name: gates (H,)}``), then remove them."""
    modules = attention_modules(model)
    gates = {}
    for name, m in modules.items():
        p = m.w_q.weight
        gates[name] = torch.ones(m.num_heads, dtype=p.dtype, device=p.device, requires_grad=requires_grad)
        m.head_gates = gates[name]
    try:
        yield gates
    finally:
        for m in modules.values():
            m.head_gates = None


def head_importance(model: nn.Module, batches: Iterable, loss_fn: LossFn, *, normalize: bool = True
                    ) -> dict[str, Tensor]:  # fmt: skip
    r"""``I_h = mean over batches of |dL/dxi_h|`` per attention module, ``(H,)`` each; l2-normalized per module.

    The model runs in eval mode (no dropout) and its parameters get no gradients.
    """
    was_training = model.training
    model.eval()
    total: dict[str, Tensor] = {}
    n = 0
    try:
        with gated(model) as gates:
            names = list(gates)
            for batch in batches:
                loss = loss_fn(model, batch)
                grads = torch.autograd.grad(loss, [gates[k] for k in names])
                for name, g in zip(names, grads, strict=True):
                    total[name] = total.get(name, 0) + g.detach().abs()  # (H,)
                n += 1
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("head_importance(): batches is empty; give at least one batch")
    importance = {name: t / n for name, t in total.items()}
    if normalize:
        importance = {name: t / t.norm().clamp_min(torch.finfo(t.dtype).tiny) for name, t in importance.items()}
    return importance


def pruning_order(importance: dict[str, Tensor], *, modules: Iterable[str] | None = None, keep: int = 1
                  ) -> list[tuple[str, int]]:  # fmt: skip
    """``(module, head)`` pairs, least important first, over ``modules`` (default all); ``keep`` heads stay per module.

    The ``keep`` most important heads of each module are left out of the order, so no
    attention layer is emptied (attnkit's :meth:`~attnkit.nn.MultiHeadAttention.prune_heads`
    keeps at least one head).
    """
    chosen = list(importance) if modules is None else list(modules)
    candidates = []
    for name in chosen:
        scores = importance[name]
        ranked = sorted(range(scores.numel()), key=lambda h: float(scores[h]))
        candidates += [(float(scores[h]), name, h) for h in ranked[: max(0, scores.numel() - keep)]]
    return [(name, h) for _, name, h in sorted(candidates)]


def set_gates(model: nn.Module, off: Iterable[tuple[str, int]]) -> None:
    """Gates of ones on every attention module, with the heads in ``off`` at 0 (no gradients)."""
    modules = attention_modules(model)
    for m in modules.values():
        p = m.w_q.weight
        m.head_gates = torch.ones(m.num_heads, dtype=p.dtype, device=p.device)
    for name, h in off:
        gates = modules[name].head_gates
        assert gates is not None
        gates[h] = 0.0


def prune_model(model: nn.Module, heads: Iterable[tuple[str, int]]) -> None:
    """Remove ``heads`` (``(module name, head index)`` in the unpruned numbering) from ``model``, in place."""
    modules = attention_modules(model)
    per_module: dict[str, list[int]] = {}
    for name, h in heads:
        if name not in modules:
            raise ValueError(f"prune_model(): {name!r} is no attention module of the model; "
                             f"the modules are {sorted(modules)}")  # fmt: skip
        per_module.setdefault(name, []).append(h)
    for name, hs in per_module.items():
        modules[name].prune_heads(hs)
