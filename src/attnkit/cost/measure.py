"""``attnkit cost --measure``: one training step and one decoding step timed here, beside the prediction.

The prediction is FLOPs / this machine's float32 matmul rate, measured first on the
shapes the model multiplies (a square GEMM and the model's largest projection; the best
run counts). Time is taken twice: wall seconds, and CPU seconds per thread. On a machine
shared with other jobs the wall clock also counts the time other processes held the
cores, so both the rate and the steps are compared in CPU seconds per thread
(``predicted_s``, ``cpu_s``, ``ratio``); wall seconds are reported beside them
(``wall_s``; on a quiet machine they agree). The prediction is a lower bound:

* a **training step** also runs softmax, norms, activations, dropout, the loss and the
  Adam update (elementwise passes, bound by memory bandwidth, not counted as FLOPs);
* a **decoding step** multiplies one token: matrix-vector products that stream every
  weight from memory once per token, far below the matmul rate on a CPU, plus a
  Python-level call per layer. Its FLOP prediction is off by an order of magnitude by
  nature; a second prediction divides the bytes the step reads (weights and KV cache,
  :func:`~attnkit.cost.decode_bytes`) by the rate a matrix-vector product reads memory
  here (``memory_gbps``): ``predicted_bandwidth_s``, ``bandwidth_ratio``.

Example:
    >>> from attnkit.cost import Architecture
    >>> tiny = Architecture.preset("paper_base").replace(d_model=32, num_heads=2, d_ff=64, num_encoder_layers=1,
    ...                                                  num_decoder_layers=1, vocab_size=50)
    >>> r = measure_steps(tiny, 16, repeats=1, min_time=0.01)
    >>> sorted(r), r["training"]["predicted_s"] > 0
    (['L', 'batch', 'decode', 'matmul_gflops', 'matmul_gflops_wall', 'memory_gbps', 'threads', 'training'], True)
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ..bench.measure import median
from .architecture import Architecture
from .calculator import decode_bytes, decode_flops, training_flops_per_token

__all__ = ["build_model", "measure_steps"]

_HF_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}  # attnkit -> BERT config.json


def build_model(arch: Architecture) -> nn.Module:
    """The model attnkit builds for ``arch``, randomly initialized: Transformer, TransformerLM or BertModel.

    Example:
        >>> from attnkit.cost import Architecture, parameter_count
        >>> arch = Architecture.preset("minilm", num_encoder_layers=1)
        >>> sum(p.numel() for p in build_model(arch).parameters()) == parameter_count(arch)
        True
    """
    from ..nn.transformer import Transformer, TransformerLM

    if arch.kind == "encoder-decoder":
        return Transformer(arch.config)
    if arch.kind == "decoder-only":
        return TransformerLM(arch.config)
    return _bert(arch)


def _bert(arch: Architecture) -> nn.Module:
    from ..nn.attention import MultiHeadAttention
    from ..pretrained.bert import BertConfig, BertModel

    c = arch.config
    if c.activation not in _HF_ACTIVATIONS or c.norm != "layernorm" or c.norm_first or c.positional != "learned":
        raise ValueError(
            f"build_model(): an encoder-only model is built as BERT (post-LN LayerNorm, learned positions, "
            f"gelu/relu); got activation={c.activation!r}, norm={c.norm!r}, norm_first={c.norm_first}, "
            f"positional={c.positional!r}"
        )
    config = BertConfig(
        vocab_size=c.vocab_size, hidden_size=c.d_model, num_attention_heads=c.num_heads,
        num_hidden_layers=c.num_encoder_layers, intermediate_size=c.d_ff, hidden_act=_HF_ACTIVATIONS[c.activation],
        layer_norm_eps=c.norm_eps, max_position_embeddings=c.max_len, type_vocab_size=max(arch.token_types, 1),
        hidden_dropout_prob=c.dropout, attention_probs_dropout_prob=c.attention_dropout, pad_token_id=c.pad_id,
    )  # fmt: skip
    model = BertModel(config, add_pooler=arch.pooler)
    for module in model.modules():  # BertConfig has no backend field: the architecture's choice is applied here
        if isinstance(module, MultiHeadAttention):
            module.backend = c.backend
    return model


def _ids(arch: Architecture, batch: int, L: int, vocab: int) -> torch.Tensor:
    low = 3 if vocab > 3 else 0  # avoid pad/bos/eos so that no padding mask is built
    return torch.randint(low, vocab, (batch, L))  # (B, L)


def _loss(arch: Architecture, model: nn.Module, batch: int, L: int) -> torch.Tensor:
    c = arch.config
    if arch.kind == "encoder-only":
        return model(_ids(arch, batch, L, c.vocab_size)).last_hidden_state.pow(2).mean()  # (B, L, d) -> ()
    if arch.kind == "decoder-only":
        ids = _ids(arch, batch, L + 1, c.vocab_size)  # (B, L + 1): inputs and next-token targets
        logits = model(ids[:, :-1])  # (B, L, V)
        return nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())  # (B*L, V), (B*L,)
    src, tgt = _ids(arch, batch, L, c.vocab_size), _ids(arch, batch, L + 1, c.target_vocab_size)
    logits = model(src, tgt[:, :-1])  # (B, L, V)
    return nn.functional.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten())  # (B*L, V), (B*L,)


def _time(step, repeats: int, min_time: float) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each call (after one warm-up): ``repeats`` calls and at least ``min_time`` s."""
    step()  # warm-up: allocations, thread pools, Adam state
    wall: list[float] = []
    cpu: list[float] = []
    start = time.perf_counter()
    while len(wall) < repeats or time.perf_counter() - start < min_time:
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if len(wall) >= 50:
            break
    return wall, cpu


def _training(arch: Architecture, model: nn.Module, batch: int, L: int, repeats: int,
              min_time: float) -> tuple[float, float]:  # fmt: skip
    """Median wall and CPU seconds of a training step: forward, cross-entropy, backward, Adam."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=False)
        _loss(arch, model, batch, L).backward()
        optimizer.step()

    wall, cpu = _time(step, repeats, min_time)
    return median(wall), median(cpu)


@torch.no_grad()
def _decoding(arch: Architecture, model: Any, batch: int, L: int, steps: int) -> tuple[float, float]:
    """Median wall and CPU seconds of one new token after ``L - 1`` cached ones (``steps`` steps, the cache growing)."""
    model.eval()
    c = arch.config
    cache = model.new_cache()
    prefix = _ids(arch, batch, L - 1 + steps, c.target_vocab_size)  # (B, L - 1 + steps)
    if arch.kind == "decoder-only":
        if L > 1:
            model(prefix[:, : L - 1], cache=cache, logits_to_keep=1)  # fills the cache with L - 1 positions

        def step(i: int) -> None:
            model(prefix[:, L - 1 + i : L + i], cache=cache)  # (B, 1) -> (B, 1, V)
    else:
        memory = model.encode(_ids(arch, batch, L, c.vocab_size))  # (B, S, d_model)
        if L > 1:
            model.decode(prefix[:, : L - 1], memory, cache=cache)  # fills self- and cross-attention caches

        def step(i: int) -> None:
            model.decode(prefix[:, L - 1 + i : L + i], memory if cache.length == 0 else None, cache=cache)

    wall, cpu = [], []
    for i in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step(i)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if steps > 1:  # the first step pays one-off allocations
        wall, cpu = wall[1:], cpu[1:]
    return median(wall), median(cpu)


def measure_steps(arch: Architecture, L: int, batch: int = 1, *, repeats: int = 3, min_time: float = 0.5,
                  decode_steps: int = 8, threads: int | None = None) -> dict:  # fmt: skip
    """Measured and predicted seconds of a training step (Adam) and a decoding step at length ``L``.

    ``cpu_s`` is CPU seconds per thread, ``wall_s`` wall seconds; ``ratio`` = ``cpu_s / predicted_s``
    (see the module docstring).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    c = arch.config
    shapes = [(1024, 1024, 1024), (min(batch * L, 8192), c.d_model, c.d_ff)]  # (m, k, n): square, and the FFN
    rate_wall, rate_cpu = _matmul_rates(shapes, threads, min(min_time, 0.5))
    torch.manual_seed(0)
    model = build_model(arch)
    train_flops = training_flops_per_token(arch, L).total * batch * L
    out: dict = {"L": L, "batch": batch, "threads": threads, "matmul_gflops": rate_cpu / 1e9,
                 "matmul_gflops_wall": rate_wall / 1e9}  # fmt: skip
    timed = _training(arch, model, batch, L, repeats, min_time)
    out["training"] = _compare(train_flops, rate_cpu, rate_wall, threads, *timed)
    out["decode"] = None
    if arch.kind != "encoder-only":
        step_flops = decode_flops(arch, L).total * batch
        timed = _decoding(arch, model, batch, L, decode_steps)
        out["decode"] = _compare(step_flops, rate_cpu, rate_wall, threads, *timed)
        bandwidth = _stream_rate(threads, min(min_time, 0.5))
        step_bytes = decode_bytes(arch, L, batch=batch)
        out["memory_gbps"] = bandwidth / 1e9
        out["decode"].update(bytes=step_bytes, predicted_bandwidth_s=step_bytes / bandwidth,
                             bandwidth_ratio=out["decode"]["cpu_s"] * bandwidth / step_bytes)  # fmt: skip
    return out


def _stream_rate(threads: int, min_time: float) -> float:
    """Bytes/s at which a matrix-vector product reads a 64 MiB float32 matrix (best run, CPU time per thread)."""
    w, x = torch.randn(4096, 4096), torch.randn(4096)
    torch.mv(w, x)  # warm-up
    _, cpu = _time(lambda: torch.mv(w, x), 3, min_time)
    return w.numel() * w.element_size() / max(min(cpu) / threads, 1e-9)


def _matmul_rates(shapes: list[tuple[int, int, int]], threads: int, min_time: float) -> tuple[float, float]:
    """FLOP/s of float32 ``(m, k) @ (k, n)`` here, best run over ``shapes``: by wall and by CPU time per thread."""
    best_wall = best_cpu = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        out = torch.empty(m, n)
        torch.mm(a, b, out=out)  # warm-up
        wall, cpu = _time(lambda a=a, b=b, out=out: torch.mm(a, b, out=out), 3, min_time)
        flops = 2.0 * m * k * n
        best_wall = max(best_wall, flops / max(min(wall), 1e-9))
        best_cpu = max(best_cpu, flops / max(min(cpu) / threads, 1e-9))
    return best_wall, best_cpu


def _compare(flops: float, rate_cpu: float, rate_wall: float, threads: int, wall: float, cpu: float) -> dict:
    """Measured beside predicted, in CPU seconds per thread (``ratio``) and in wall seconds (``wall_ratio``)."""
    predicted = flops / rate_cpu
    return {"flops": flops, "predicted_s": predicted, "cpu_s": cpu / threads, "ratio": cpu / threads / predicted,
            "wall_s": wall, "predicted_wall_s": flops / rate_wall, "wall_ratio": wall * rate_wall / flops}  # fmt: skip
