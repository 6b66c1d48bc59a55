"""Parallelism over ``torch.distributed``.

* :mod:`.ring` — sequence (context) parallelism: :func:`ring_attention` computes exact
  attention over a sequence sharded across ranks (Liu et al., 2023), with
  :func:`shard_sequence` / :func:`gather_sequence` to split and join it.
* :mod:`.data_parallel` — data parallelism helpers (import from that module).

Example (every rank runs the same lines; here one process, a world of one rank):
    >>> import torch, torch.distributed as dist
    >>> from attnkit import masks
    >>> from attnkit.distributed import gather_sequence, ring_attention, shard_sequence
    >>> from attnkit.functional import attention
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> q, k, v = torch.randn(3, 1, 2, 8, 4).unbind(0)  # (B, H, L, D) each, the full sequence
    >>> local = [shard_sequence(t, 2) for t in (q, k, v)]  # this rank's part of the sequence
    >>> out = gather_sequence(ring_attention(*local, masks.causal()), 2)  # (B, H, L, D)
    >>> bool(torch.allclose(out, attention(q, k, v, masks.causal()), atol=1e-6))
    True
    >>> dist.destroy_process_group()
"""

from .ring import gather_sequence, merge_partial, ring_attention, shard_sequence

__all__ = ["ring_attention", "shard_sequence", "gather_sequence", "merge_partial"]
