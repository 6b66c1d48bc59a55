r"""Extractive selection on sentence embeddings: centrality, then maximal marginal relevance.

Given L2-normalized sentence embeddings ``E (N, d)``, so that ``E E^T`` holds cosines:

1. **centrality** of each sentence —

   * ``"centroid"``: cosine to the normalized mean embedding (Radev et al., 2004):
     ``c_i = cos(e_i, mean(E))``;
   * ``"degree"``: LexRank-style degree (Erkan & Radev, 2004), the mean positive
     similarity to the other sentences: ``c_i = sum_{j != i} max(0, cos_ij) / (N - 1)``;

2. a **position prior** (lead bias; PacSum, Zheng & Lapata 2019, weights earlier
   sentences too): ``r_i = c_i + position_weight / (1 + i)``;
3. **MMR** (Carbonell & Goldstein, 1998) picks ``k`` sentences one at a time:

   .. math::
       \arg\max_{i \notin S} \; (1 - \lambda)\, r_i - \lambda \max_{j \in S} \cos_{ij}

   with ``lambda = diversity`` (0: pure relevance, no redundancy control);
4. the picked sentences are returned in their original order.

Shape legend: N sentences, d embedding width.

Example:
    >>> import torch
    >>> E = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [1.0, 0.0], [0.0, 1.0], [1.0, 0.08]]), dim=1)
    >>> select(E, 2, diversity=0.5)  # sentence 3 repeats sentence 0, so 2 is picked instead
    [0, 2]
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["centrality", "relevance", "mmr", "select", "CENTRALITIES"]

CENTRALITIES = ("centroid", "degree")  #: the centrality measures :func:`centrality` knows


def centrality(embeddings: Tensor, kind: str = "centroid") -> Tensor:
    """How representative each sentence is of the document: ``(N, d) -> (N,)``, higher is more central."""
    if kind not in CENTRALITIES:
        raise ValueError(f"centrality(): kind must be one of {CENTRALITIES}, got {kind!r}")
    N = embeddings.shape[0]
    if kind == "centroid":
        center = torch.nn.functional.normalize(embeddings.mean(dim=0), dim=0)  # (N, d) -> (d,)
        return embeddings @ center  # (N, d) @ (d,) -> (N,)
    if N == 1:
        return embeddings.new_ones(1)
    sim = (embeddings @ embeddings.T).clamp(min=0.0)  # (N, d) @ (d, N) -> (N, N)
    return (sim.sum(dim=1) - sim.diagonal()) / (N - 1)  # (N,)


def relevance(embeddings: Tensor, *, kind: str = "centroid", position_weight: float = 0.0) -> Tensor:
    """Centrality plus the position prior ``position_weight / (1 + i)``: ``(N, d) -> (N,)``."""
    scores = centrality(embeddings, kind)
    if position_weight:
        position = torch.arange(embeddings.shape[0], dtype=scores.dtype, device=scores.device)
        scores = scores + position_weight / (1.0 + position)  # (N,)
    return scores


def mmr(embeddings: Tensor, scores: Tensor, k: int, *, diversity: float = 0.3) -> list[int]:
    """``k`` indices picked greedily by maximal marginal relevance, in the order picked."""
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"mmr(): diversity must be in [0, 1] (0 = relevance only), got {diversity!r}")
    N = embeddings.shape[0]
    sim = embeddings @ embeddings.T  # (N, d) @ (d, N) -> (N, N)
    picked: list[int] = []
    redundancy = torch.full((N,), float("-inf"), dtype=scores.dtype)  # max cosine to the picked ones
    available = torch.ones(N, dtype=torch.bool)
    for _ in range(min(k, N)):
        penalty = redundancy.clamp(min=0.0) if picked else torch.zeros_like(scores)
        value = ((1.0 - diversity) * scores - diversity * penalty).masked_fill(~available, float("-inf"))
        best = int(value.argmax())
        picked.append(best)
        available[best] = False
        redundancy = torch.maximum(redundancy, sim[best].to(scores.dtype))  # (N,)
    return picked


def select(
    embeddings: Tensor, k: int, *, kind: str = "centroid", position_weight: float = 0.0, diversity: float = 0.3
) -> list[int]:
    """The ``k`` sentences to keep, as indices in document order (see the module docstring)."""
    if embeddings.dim() != 2 or embeddings.shape[0] == 0:
        raise ValueError(f"select(): embeddings must be (N, d) with N >= 1, got shape {tuple(embeddings.shape)}")
    scores = relevance(embeddings, kind=kind, position_weight=position_weight)
    return sorted(mmr(embeddings, scores, k, diversity=diversity))
