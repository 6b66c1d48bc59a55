"""Data parallelism over ``torch.distributed``: the few helpers a training script needs.

Launch with ``torchrun --nproc-per-node N ...``: torchrun sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_from_env` reads them and
joins the process group (``gloo`` on CPU, ``nccl`` on CUDA). Without them it returns
a single-process :class:`ProcessInfo` and every helper below becomes a no-op, so one
code path serves both.

The recipe (DistributedDataParallel, Li et al., 2020):

1. every rank builds the same model; :func:`wrap` broadcasts rank 0's parameters and
   all-reduces (averages) gradients during ``backward()``;
2. every rank forms the same *global* batch and takes its shard of it;
3. normalize each rank's loss by the global token count times ``world_size`` (the
   average over ranks then equals the single-process loss of the global batch), so
   the parameters after each step match a single process on the global batch;
4. only rank 0 writes files and prints; :func:`any_rank` makes stop decisions
   (time budget, errors) collectively, so no rank waits forever in an all-reduce.

Example:
    >>> info = init_from_env(environ={})  # no torchrun variables: one process
    >>> info.world_size, info.is_main, wrap(torch.nn.Linear(2, 2), info).__class__.__name__
    (1, True, 'Linear')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["ProcessInfo", "init_from_env", "wrap", "broadcast_object", "any_rank", "barrier", "shutdown"]


@dataclass(frozen=True)
class ProcessInfo:
    """Where this process sits in the data-parallel group."""

    rank: int = 0  # global rank, 0 .. world_size - 1
    world_size: int = 1  # number of processes
    local_rank: int = 0  # rank on this machine (selects the GPU)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_from_env(backend: str | None = None, *, environ: Mapping[str, str] | None = None) -> ProcessInfo:
    """Join the process group described by torchrun's environment variables (if any).

    ``backend`` defaults to ``"nccl"`` when CUDA is available, else ``"gloo"``. Calling
    it again in an initialized process returns the current group's info.
    """
    env = os.environ if environ is None else environ
    world_size = int(env.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return ProcessInfo()
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in env]
    if missing:
        raise ValueError(
            f"init_from_env(): WORLD_SIZE={world_size} but {missing} are not set; launch with "
            "`torchrun --nproc-per-node N ...`, which sets them"
        )
    info = ProcessInfo(int(env["RANK"]), world_size, int(env.get("LOCAL_RANK", env["RANK"])))
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend, rank=info.rank, world_size=world_size)
    return info


def wrap(model: nn.Module, info: ProcessInfo, *, broadcast_buffers: bool = False) -> nn.Module:
    """``DistributedDataParallel(model)`` in a group of several processes, else ``model`` itself.

    Keep the unwrapped model for saving and evaluation; run the training forward pass
    through the wrapper so gradients are averaged during ``backward()``.

    Buffers are not broadcast by default: attnkit's buffers are caches (positional
    tables that grow with the longest sequence seen), so their sizes may differ between
    ranks, e.g. after rank 0 alone decoded a validation set, and a broadcast of unequal
    sizes aborts. Pass ``broadcast_buffers=True`` for statistics that must agree (BatchNorm).
    """
    if not info.distributed:
        return model
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.local_rank] if next(model.parameters()).is_cuda else None
    # torch >= 2.13 renames the option (and warns about the old name); both leave the init sync alone
    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    name = "forward_sync_buffers" if renamed else "broadcast_buffers"
    option: dict[str, Any] = {name: broadcast_buffers}  # one keyword whose name depends on the torch version
    return DistributedDataParallel(model, device_ids=device_ids, **option)


def broadcast_object(obj: Any, info: ProcessInfo, *, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (anything picklable) on every rank; ``obj`` is ignored elsewhere."""
    if not info.distributed:
        return obj
    box = [obj if info.rank == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def any_rank(flag: bool, info: ProcessInfo) -> bool:
    """True on every rank when ``flag`` is True on at least one: a collective decision."""
    if not info.distributed:
        return bool(flag)
    value = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier(info: ProcessInfo) -> None:
    """Wait until every rank gets here (e.g. rank 0 has written a file the others read)."""
    if info.distributed:
        dist.barrier()


def shutdown(info: ProcessInfo) -> None:
    """Leave the process group (call once at the end of a distributed run)."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
