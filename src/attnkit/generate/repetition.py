r"""Repetition control: no-repeat n-gram blocking and the CTRL repetition penalty.

Both change the next-token scores ``(N, V)`` of every decoded row from what that row
has already seen, before the token is chosen (greedy argmax, sampling filters, or beam
search's top-k), as Hugging Face's logits processors do:

* **no-repeat n-grams** (``no_repeat_ngram_size = n``, as in fairseq and Hugging Face's
  ``NoRepeatNGramLogitsProcessor``): a token that would complete an n-gram already
  present in the row gets score :math:`-\infty`, so no n-gram occurs twice;
* **repetition penalty** (``repetition_penalty = \theta``, Keskar et al., 2019, CTRL,
  §4.1; Hugging Face's ``RepetitionPenaltyLogitsProcessor``): the score :math:`s` of
  every token already present becomes :math:`s / \theta` if :math:`s > 0` and
  :math:`s \cdot \theta` otherwise; :math:`\theta > 1` discourages repeats, 1 is off.

"What the row has seen" is, for a :class:`~attnkit.nn.TransformerLM`, its real prompt
tokens (left padding excluded) followed by the tokens generated so far; for an
encoder-decoder :class:`~attnkit.nn.Transformer`, the generated tokens (the source is
another language). Beam search reorders the histories with its beams.

Shape legend: N decoded rows, V vocabulary size.

Example:
    >>> history = History([[5, 6, 7, 5, 6]], vocab_size=9, no_repeat_ngram_size=3, repetition_penalty=1.0)
    >>> scores = history.process(torch.zeros(1, 9))
    >>> scores[0].tolist()  # "5 6" was followed by 7 once: 7 may not follow it again
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -inf, 0.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["History", "banned_tokens", "penalize_repeats"]


def banned_tokens(tokens: Sequence[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already in ``tokens`` (nothing if it is shorter than n).

    Example:
        >>> sorted(banned_tokens([1, 2, 3, 1, 2], 3)), sorted(banned_tokens([1, 2, 3, 1, 2], 2))
        ([3], [3])
    """
    if n < 1 or len(tokens) < n:
        return set()
    prefix = tuple(tokens[len(tokens) - n + 1 :])  # the last n - 1 tokens
    return {tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tuple(tokens[i : i + n - 1]) == prefix}


def penalize_repeats(scores: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """CTRL's penalty on the tokens marked in ``seen (N, V)``: positive scores divided, others multiplied.

    Example:
        >>> penalize_repeats(torch.tensor([[2.0, -2.0, 2.0]]), torch.tensor([[True, True, False]]), 2.0)
        tensor([[ 1., -4.,  2.]])
    """
    changed = torch.where(scores > 0, scores / penalty, scores * penalty)  # (N, V)
    return torch.where(seen, changed, scores)


class History:
    """The tokens each decoded row has seen, and the repetition rules applied to its next-token scores.

    Args:
        rows: per row, the tokens seen before the first new one (prompt tokens, or nothing).
        vocab_size: V, the width of the scores.
        no_repeat_ngram_size: n >= 1 blocks repeated n-grams; 0 is off.
        repetition_penalty: CTRL's theta > 0; 1.0 is off.

    The n-gram index is kept incrementally: per row a map from each (n - 1)-token
    prefix to the tokens that followed it, updated with one entry per step (values are
    immutable, so beam search's reordering copies only the maps).
    """

    def __init__(self, rows: Sequence[Sequence[int]], vocab_size: int, *, no_repeat_ngram_size: int = 0,
                 repetition_penalty: float = 1.0) -> None:  # fmt: skip
        self.n = no_repeat_ngram_size
        self.penalty = repetition_penalty
        self.tokens = [list(map(int, r)) for r in rows]
        self.active = self.n > 0 or self.penalty != 1.0
        self.seen = None
        if self.penalty != 1.0:
            self.seen = torch.zeros(len(self.tokens), vocab_size, dtype=torch.bool)  # (N, V)
            for i, r in enumerate(self.tokens):
                self.seen[i, [t for t in r if 0 <= t < vocab_size]] = True
        self.followers: list[dict[tuple, frozenset]] = [self._index(r) for r in self.tokens] if self.n > 0 else []

    def _index(self, tokens: list[int]) -> dict[tuple, frozenset]:
        index: dict[tuple, frozenset] = {}
        for i in range(len(tokens) - self.n + 1):
            prefix = tuple(tokens[i : i + self.n - 1])
            index[prefix] = index.get(prefix, frozenset()) | {tokens[i + self.n - 1]}
        return index

    def process(self, scores: Tensor) -> Tensor:
        """``scores (N, V)`` with the repetition penalty and the n-gram ban applied."""
        if not self.active:
            return scores
        if self.seen is not None:
            scores = penalize_repeats(scores, self.seen.to(scores.device), self.penalty)
        if self.n > 0:
            rows, cols = [], []
            for i, tokens in enumerate(self.tokens):
                if len(tokens) >= self.n - 1:
                    banned = self.followers[i].get(tuple(tokens[len(tokens) - self.n + 1 :]), ())
                    rows += [i] * len(banned)
                    cols += list(banned)
            if rows:
                index = (torch.tensor(rows, device=scores.device), torch.tensor(cols, device=scores.device))
                scores = scores.index_put(index, torch.tensor(float("-inf"), dtype=scores.dtype, device=scores.device))
        return scores

    def append(self, tokens: Tensor) -> None:
        """Record the chosen ``tokens (N,)``."""
        if not self.active:
            return
        new = tokens.tolist()
        for i, t in enumerate(new):
            self.tokens[i].append(t)
            if self.n > 0 and len(self.tokens[i]) >= self.n:
                prefix = tuple(self.tokens[i][len(self.tokens[i]) - self.n : -1])
                self.followers[i][prefix] = self.followers[i].get(prefix, frozenset()) | {t}
        if self.seen is not None:
            self.seen[torch.arange(len(new)), tokens.cpu()] = True

    def select(self, index: Tensor) -> None:
        """Keep (and reorder) rows ``index (N,)``, as beam search moves hypotheses."""
        if not self.active:
            return
        picked = index.tolist()
        self.tokens = [list(self.tokens[i]) for i in picked]
        if self.n > 0:
            self.followers = [dict(self.followers[i]) for i in picked]
        if self.seen is not None:
            self.seen = self.seen[index.cpu()]
