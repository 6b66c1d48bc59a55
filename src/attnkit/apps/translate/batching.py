"""Token-based batching: sentences of similar length together, a budget of tokens per batch.

Padding wastes compute, so, as in the paper (5.1: "sentence pairs were batched together
by approximate sequence length"), each epoch:

1. shuffles the pairs with a generator seeded by ``(seed, epoch)``;
2. sorts them by (source length, target length) — a stable sort, so equal lengths
   stay in shuffled order;
3. cuts consecutive runs into batches whose *padded* size
   ``n * (max source length + max target length)`` stays within ``max_tokens``;
4. shuffles the order of the batches.

:class:`TokenBatches` is a callable ``step -> Batch``: the batch of any step is a pure
function of ``(seed, step)``, so a resumed run sees exactly the batches the
uninterrupted run would have seen (what :class:`~attnkit.train.Trainer` needs).

**Data parallelism.** ``max_tokens`` is the budget of the *global* batch. With
``world_size`` processes, rank ``r`` takes the pairs ``r, r + world_size, ...`` of it
(its shard) and every rank knows the global number of target tokens, so the loss of
each rank can be normalized by the global count (see :func:`.train.translation_loss`).
The plan does not depend on ``world_size``: every global batch holds at least
``min_batch`` pairs (so up to ``min_batch`` ranks always get work), and a run gives the
same batches on one process or several, and can resume on a different number.

Shape legend: B sentences in the batch (this rank's shard), S source length (with
EOS), T + 1 target length (with BOS and EOS).

Example:
    >>> batches = TokenBatches([([5, 6], [7]), ([8], [9, 10]), ([5], [6])], max_tokens=12, seed=0, min_batch=1)
    >>> b = batches(0)
    >>> b.src.shape[0] == b.tgt.shape[0], int(b.src[0, -1]) in (0, 2)
    (True, True)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Batch", "TokenBatches", "plan_epoch", "collate"]

Example = tuple[Sequence[int], Sequence[int]]  # (source ids, target ids), without BOS/EOS


@dataclass(frozen=True)
class Batch:
    """One rank's share of a global batch."""

    src: Tensor  # (B, S) source ids + EOS, right-padded with pad_id
    tgt: Tensor  # (B, T+1) BOS + target ids + EOS, right-padded: the decoder reads tgt[:, :-1], predicts tgt[:, 1:]
    global_tokens: int  # target tokens (EOS included) in the global batch, over all ranks


def collate(examples: Sequence[Example], *, pad_id: int = 0, bos_id: int = 1, eos_id: int = 2) -> tuple[Tensor, Tensor]:
    """Pad examples into ``src (B, S)`` (ids + EOS) and ``tgt (B, T+1)`` (BOS + ids + EOS).

    Example:
        >>> src, tgt = collate([([5, 6], [7]), ([8], [9, 10])])
        >>> src.tolist(), tgt.tolist()
        ([[5, 6, 2], [8, 2, 0]], [[1, 7, 2, 0], [1, 9, 10, 2]])
    """
    sources = [list(s) + [eos_id] for s, _ in examples]
    targets = [[bos_id] + list(t) + [eos_id] for _, t in examples]
    return _pad(sources, pad_id), _pad(targets, pad_id)


def _pad(rows: list[list[int]], pad_id: int) -> Tensor:
    out = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)  # (B, L)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def plan_epoch(
    lengths: Sequence[tuple[int, int]], max_tokens: int, rng: random.Random, *, min_size: int = 1
) -> list[list[int]]:
    """Indices of the examples in each batch of one epoch (steps 1-4 of the module docstring).

    ``lengths`` are (source, target) lengths including the special tokens. A batch holds
    at least ``min_size`` examples (one per data-parallel rank): a last run of fewer joins
    the batch before it, which may then exceed the budget by those few examples.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    order.sort(key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest_src = longest_tgt = 0
    for i in order:
        s, t = lengths[i]
        new_src, new_tgt = max(longest_src, s), max(longest_tgt, t)
        if len(current) >= min_size and (len(current) + 1) * (new_src + new_tgt) > max_tokens:
            batches.append(current)
            current, new_src, new_tgt = [], s, t
        current.append(i)
        longest_src, longest_tgt = new_src, new_tgt
    if current:
        if len(current) < min_size and batches:
            batches[-1].extend(current)  # too few for every rank: join the previous batch
        else:
            batches.append(current)
    rng.shuffle(batches)
    return batches


class TokenBatches:
    """Callable ``step -> Batch`` over ``examples``, epoch after epoch, deterministic in ``(seed, step)``.

    Args:
        examples: ``(source ids, target ids)`` without special tokens.
        max_tokens: padded source + target tokens per global batch.
        seed: seeds each epoch's shuffle together with the epoch number.
        rank, world_size: this process's shard of every global batch (data parallelism).
        min_batch: pairs per global batch at least, even past ``max_tokens`` (>= world_size).
        pad_id, bos_id, eos_id: special ids (TransformerConfig's).
    """

    def __init__(
        self, examples: Sequence[Example], *, max_tokens: int, seed: int = 0, rank: int = 0, world_size: int = 1,
        min_batch: int = 8, pad_id: int = 0, bos_id: int = 1, eos_id: int = 2,
    ):  # fmt: skip
        if not examples:
            raise ValueError("TokenBatches(): examples is empty; the training split has no pairs")
        if world_size > min_batch:
            raise ValueError(f"TokenBatches(): world_size={world_size} exceeds min_batch={min_batch}, so some ranks "
                             f"could get no pairs; pass min_batch >= {world_size}")  # fmt: skip
        if len(examples) < min_batch:
            raise ValueError(f"TokenBatches(): {len(examples)} training pairs are fewer than min_batch={min_batch}; "
                             "use a larger corpus")  # fmt: skip
        if not 0 <= rank < world_size:
            raise ValueError(f"TokenBatches(): rank must be in [0, world_size={world_size}), got {rank}")
        self.examples = list(examples)
        self.lengths = [(len(s) + 1, len(t) + 2) for s, t in self.examples]  # + EOS; + BOS and EOS
        longest = max(s + t for s, t in self.lengths)
        if max_tokens < longest:
            raise ValueError(f"TokenBatches(): max_tokens={max_tokens} is below the longest pair ({longest} source + "
                             f"target tokens); raise max_tokens or drop long pairs")  # fmt: skip
        self.max_tokens, self.seed, self.rank, self.world_size = max_tokens, seed, rank, world_size
        self.min_batch = min_batch
        self.special = {"pad_id": pad_id, "bos_id": bos_id, "eos_id": eos_id}
        self._epochs: list[int] = []  # batches in each planned epoch
        self._plan: tuple[int, list[list[int]]] | None = None  # (epoch, batches) of the last epoch used

    def epoch_plan(self, epoch: int) -> list[list[int]]:
        """The batches (example indices) of ``epoch``."""
        if self._plan is None or self._plan[0] != epoch:
            rng = random.Random(f"{self.seed}:{epoch}")
            self._plan = (epoch, plan_epoch(self.lengths, self.max_tokens, rng, min_size=self.min_batch))
        return self._plan[1]

    def locate(self, step: int) -> tuple[int, int]:
        """``(epoch, index in epoch)`` of the global batch of ``step``."""
        epoch, start = 0, 0
        while True:
            if epoch == len(self._epochs):
                self._epochs.append(len(self.epoch_plan(epoch)))
            if step < start + self._epochs[epoch]:
                return epoch, step - start
            start += self._epochs[epoch]
            epoch += 1

    def global_indices(self, step: int) -> list[int]:
        epoch, index = self.locate(step)
        return self.epoch_plan(epoch)[index]

    def __call__(self, step: int) -> Batch:
        indices = self.global_indices(step)
        tokens = sum(self.lengths[i][1] - 1 for i in indices)  # predicted target tokens: ids + EOS
        mine = indices[self.rank :: self.world_size]
        src, tgt = collate([self.examples[i] for i in mine], **self.special)
        return Batch(src, tgt, tokens)

    def batches_per_epoch(self) -> int:
        return len(self.epoch_plan(0))
