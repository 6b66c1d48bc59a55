"""Parallelism over ``torch.distributed``.

* :mod:`.ring` — sequence (context) parallelism: :func:`ring_attention` computes exact
  attention over a sequence sharded across ranks (Liu et al., 2023), with
  :func:`shard_sequence` / :func:`gather_sequence` to split and join it.
* :mod:`.data_parallel` — data parallelism helpers (import from that module).
"""

from .ring import gather_sequence, merge_partial, ring_attention, shard_sequence

__all__ = ["ring_attention", "shard_sequence", "gather_sequence", "merge_partial"]
