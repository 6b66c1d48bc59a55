"""Training: label-smoothed loss, the paper's LR schedule, clipping, weight averaging, a resumable ``Trainer``.

Example:
    >>> import torch
    >>> from attnkit.train import label_smoothed_cross_entropy
    >>> logits, targets = torch.randn(2, 5, 11), torch.randint(1, 11, (2, 5))
    >>> label_smoothed_cross_entropy(logits, targets, smoothing=0.1).shape
    torch.Size([])
"""

from .clip import clip_grad_norm
from .config import TrainerConfig
from .ema import ExponentialMovingAverage
from .history import read_history
from .loss import label_smoothed_cross_entropy, lm_loss, seq2seq_loss
from .schedule import NoamSchedule, inverse_sqrt_schedule, noam_rate
from .trainer import Trainer

__all__ = [
    "label_smoothed_cross_entropy",
    "lm_loss",
    "seq2seq_loss",
    "noam_rate",
    "NoamSchedule",
    "inverse_sqrt_schedule",
    "clip_grad_norm",
    "TrainerConfig",
    "Trainer",
    "ExponentialMovingAverage",
    "read_history",
]
