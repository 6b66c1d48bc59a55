"""Head importance: the gate gradient equals a finite-difference estimate; the pruning order follows it."""

from __future__ import annotations

import torch

from attnkit.lab.importance import attention_modules, gated, head_importance, pruning_order
from attnkit.nn import Transformer, TransformerConfig


def _loss(model, batch):
    src, tgt = batch
    logits = model(src, tgt[:, :-1])  # (B, T, V)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten())


def _model():
    config = TransformerConfig(vocab_size=25, d_model=12, num_heads=3, d_ff=24, num_encoder_layers=1,
                               num_decoder_layers=1, dropout=0.1)  # fmt: skip
    torch.manual_seed(0)
    return Transformer(config).double()


def test_gate_gradient_importance_equals_central_finite_differences():
    model = _model()
    torch.manual_seed(1)
    batches = [(torch.randint(3, 25, (2, 5)), torch.randint(3, 25, (2, 6))) for _ in range(2)]
    importance = head_importance(model, batches, _loss, normalize=False)
    eps = 1e-6
    model.eval()
    for name in attention_modules(model):
        for h in range(3):
            estimates = []
            for batch in batches:
                with gated(model, requires_grad=False) as gates, torch.no_grad():
                    gates[name][h] = 1 + eps
                    up = _loss(model, batch)
                    gates[name][h] = 1 - eps
                    down = _loss(model, batch)
                estimates.append(abs(float(up - down)) / (2 * eps))
            expected = sum(estimates) / len(estimates)  # E_x |dL/dxi_h|, one |.| per batch
            assert abs(float(importance[name][h]) - expected) <= 1e-6 * max(1.0, expected), (name, h)
    assert all(m.head_gates is None for m in attention_modules(model).values())  # gates removed afterwards


def test_importance_is_l2_normalized_per_module_and_restores_training_mode():
    model = _model().train()
    batch = (torch.randint(3, 25, (2, 4)), torch.randint(3, 25, (2, 5)))
    importance = head_importance(model, [batch], _loss)
    assert model.training
    for scores in importance.values():
        torch.testing.assert_close(scores.norm(), torch.tensor(1.0, dtype=torch.float64))


def test_pruning_order_is_least_important_first_and_keeps_one_head_per_module():
    importance = {"a": torch.tensor([0.9, 0.1, 0.3]), "b": torch.tensor([0.2, 0.8])}
    assert pruning_order(importance) == [("a", 1), ("b", 0), ("a", 2)]
    assert pruning_order(importance, modules=["a"]) == [("a", 1), ("a", 2)]
    assert pruning_order(importance, keep=0)[-1] == ("a", 0)
