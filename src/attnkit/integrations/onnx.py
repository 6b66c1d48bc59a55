"""ONNX export of attnkit's models, checked in onnxruntime.

:func:`export_onnx` writes a :class:`~attnkit.nn.TransformerLM` (``ids (B, L) -> logits (B, L, V)``)
or a translation :class:`~attnkit.nn.Transformer` (``src (B, S), tgt (B, T) -> logits (B, T, V)``,
teacher forcing) to an ``.onnx`` file with dynamic batch size and lengths, then runs the file in
onnxruntime on fresh inputs and reports the largest difference to the eager model.

How: ``torch.onnx.export(..., dynamo=True)``, which goes through :func:`torch.export.export`
(attnkit's forward passes trace there: see the README's "torch.export and ONNX"). Inside a traced
graph attnkit's attention picks torch's SDPA at a dynamic length and padding becomes a dense mask
computed from the ids, so one graph serves every length and every padding pattern.

Two traps of ONNX export are handled here:

* the legacy TorchScript exporter (``dynamo=False``) passes the example inputs positionally to
  ``forward``, whose keyword-only parameters (``mask``, ``positions``, ``cache``...) turn
  ``(x,)`` into a call with 8 positional arguments (``TypeError: ... takes from 2 to 5 positional
  arguments but 9 were given``). The model is exported through a small wrapper module whose
  ``forward`` takes exactly the graph's inputs, positionally (:class:`LanguageModelGraph`,
  :class:`TranslationGraph`), so either exporter sees a plain signature;
* that legacy exporter is not used: it traces with TorchScript, where lengths become tensors
  (``SinusoidalPositionalEncoding.encoding(): length must be an int, got Tensor``) and a
  data-dependent branch is recorded one way for every later input (a batch without padding
  would drop the padding mask); the dynamo exporter refuses or handles both.

Shape legend: B batch, L/S/T lengths, V vocabulary size.

Example:
    >>> import tempfile, torch
    >>> from attnkit.nn import TransformerConfig, TransformerLM
    >>> cfg = TransformerConfig(vocab_size=20, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=0,
    ...                         num_decoder_layers=1, max_len=64)
    >>> lm = TransformerLM(cfg).eval()
    >>> result = export_onnx(lm, tempfile.mkdtemp() + "/lm.onnx")  # an OnnxExport
    >>> result.inputs, result.max_abs_diff < 1e-5
    ({'ids': ('batch', 'length')}, True)
    >>> ids = torch.tensor([[3, 4, 5, 6, 7]])
    >>> logits = run_onnx(result.path, ids)  # onnxruntime, any batch size and length
    >>> logits.shape, bool(abs(logits - lm(ids).detach().numpy()).max() < 1e-5)
    ((1, 5, 20), True)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import onnxscript  # noqa: F401  (torch.onnx's exporter needs it: imported here, a missing one names the extra)
import torch
from torch import Tensor, nn
from torch.export import Dim

from .._checkpoint_io import FILE_MODE, current_umask
from ..nn import MultiHeadAttention, Transformer, TransformerConfig, TransformerLM

__all__ = ["export_onnx", "OnnxExport", "run_onnx", "LanguageModelGraph", "TranslationGraph"]


class LanguageModelGraph(nn.Module):
    """``forward(ids)`` of a :class:`TransformerLM` with a positional signature: ``ids (B, L) -> logits (B, L, V)``."""

    def __init__(self, model: TransformerLM):
        super().__init__()
        self.model = model

    def forward(self, ids: Tensor) -> Tensor:
        return self.model(ids)  # (B, L) -> (B, L, V), causal


class TranslationGraph(nn.Module):
    """``forward(src, tgt)`` of a :class:`Transformer`: ``(B, S), (B, T) -> logits (B, T, V)``, padding from the ids."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        return self.model(src, tgt)  # (B, S), (B, T) -> (B, T, V)


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote and how it checked it."""

    path: Path  # the .onnx file
    model_class: str  # "TransformerLM" or "Transformer"
    inputs: dict[str, tuple[str, ...]]  # input name -> its axes (all dynamic)
    outputs: dict[str, tuple[str, ...]]  # output name -> its axes
    checked_shapes: tuple[dict[str, tuple[int, ...]], ...]  # the input shapes onnxruntime was checked on
    max_abs_diff: float  # largest |onnxruntime - eager| over those checks (float32 logits)
    seconds: float  # time to export (torch.export + conversion + saving)
    size_bytes: int  # size of the file

    def to_json(self) -> dict:
        return {
            "path": str(self.path), "model_class": self.model_class, "inputs": self.inputs, "outputs": self.outputs,
            "checked_shapes": list(self.checked_shapes), "max_abs_diff": self.max_abs_diff,
            "seconds": round(self.seconds, 3), "size_bytes": self.size_bytes,
        }  # fmt: skip


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    batch: int = 2,
    length: int = 16,
    opset: int | None = None,
    seed: int = 0,
) -> OnnxExport:
    """Write ``model`` (a :class:`TransformerLM` or :class:`Transformer`) to the ONNX file ``path`` and check it.

    The file is written atomically (a temp file renamed into place). Batch size and lengths
    are dynamic (up to ``config.max_len``); the example and check inputs are random ids of
    ``batch`` rows and ``length`` positions, with right padding in one row for a Transformer.
    ``opset`` is the ONNX opset (None: torch's default). The model is exported in eval mode,
    its attention layers on ``backend="auto"`` (sdpa at a dynamic length; every backend is exact),
    and left as it was.
    """
    graph, names, axes = _graph(model)
    graph.eval()
    config = _config(model)
    examples = _inputs(model, batch, length, seed)
    dims = {axis: Dim(axis, min=1 if axis == "batch" else 2, max=max(2, config.max_len)) for axis in _axes(axes)}
    dynamic = tuple({i: dims[axis] for i, axis in enumerate(in_axes)} for in_axes in axes.values())
    path = Path(path)
    was_training = model.training
    model.eval()
    try:
        start = time.perf_counter()
        with torch.no_grad(), _backend(model, "auto"):
            program = torch.onnx.export(graph, examples, dynamo=True, dynamic_shapes=dynamic, input_names=list(names),
                                        output_names=["logits"], opset_version=opset, verbose=False)  # fmt: skip
        _save_atomic(program, path)
        seconds = time.perf_counter() - start
        onnx.checker.check_model(str(path), full_check=True)  # a valid model whose shapes infer
        checks = [examples, _inputs(model, batch + 1, length + 5, seed + 1)]  # another batch size and length
        diff = max(_max_diff(graph, path, inputs) for inputs in checks)
    finally:
        model.train(was_training)
    shapes = tuple({name: tuple(t.shape) for name, t in zip(names, inputs, strict=True)} for inputs in checks)
    return OnnxExport(path, type(model).__name__, dict(axes), {"logits": _output_axes(axes)}, shapes, diff, seconds,
                      path.stat().st_size)  # fmt: skip


@contextlib.contextmanager
def _backend(model: nn.Module, backend: str):
    """Every attention layer of ``model`` on ``backend`` for the block (then as it was).

    The graph has dynamic lengths, and only the dispatcher's sdpa choice serves every length:
    the tiled backend plans its loops from the length in Python. Both are exact, so the
    exported graph computes what the model computes on any backend.
    """
    layers = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    before = [m.backend for m in layers]
    for m in layers:
        m.backend = backend
    try:
        yield
    finally:
        for m, b in zip(layers, before, strict=True):
            m.backend = b


def run_onnx(path: str | os.PathLike, *inputs: Tensor | np.ndarray) -> np.ndarray:
    """Run the ONNX file at ``path`` in onnxruntime (CPU) on ``inputs`` (in the graph's input order); returns logits."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {spec.name: np.asarray(x) for spec, x in zip(session.get_inputs(), inputs, strict=True)}
    return session.run(None, feeds)[0]


def _graph(model: nn.Module) -> tuple[nn.Module, tuple[str, ...], dict[str, tuple[str, ...]]]:
    """The wrapper to export, its input names and each input's axes."""
    if isinstance(model, TransformerLM):
        return LanguageModelGraph(model), ("ids",), {"ids": ("batch", "length")}
    if isinstance(model, Transformer):
        return TranslationGraph(model), ("src", "tgt"), {"src": ("batch", "src_length"), "tgt": ("batch", "tgt_length")}
    raise TypeError(f"export_onnx(): model must be an attnkit TransformerLM or Transformer, got "
                    f"{type(model).__name__}; wrap other modules in one with a positional forward and call "
                    "torch.onnx.export(dynamo=True)")  # fmt: skip


def _config(model: nn.Module) -> TransformerConfig:
    assert isinstance(model, (TransformerLM, Transformer))  # checked by _graph
    return model.config


def _axes(axes: dict[str, tuple[str, ...]]) -> list[str]:
    return list(dict.fromkeys(axis for names in axes.values() for axis in names))


def _output_axes(axes: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    last = list(axes.values())[-1]  # ids or tgt: the logits follow its positions
    return (*last, "vocab")


def _inputs(model: nn.Module, batch: int, length: int, seed: int) -> tuple[Tensor, ...]:
    """Random ids ``(batch, length)`` avoiding the special ids; a Transformer's get right padding in one row."""
    config = _config(model)
    g = torch.Generator().manual_seed(seed)
    length = min(length, config.max_len)
    low = min(3, config.vocab_size - 1)

    def ids(vocab: int, n: int) -> Tensor:
        return torch.randint(low, vocab, (batch, n), generator=g)  # (B, n)

    if isinstance(model, TransformerLM):
        return (ids(config.vocab_size, length),)
    src, tgt = ids(config.vocab_size, length), ids(config.target_vocab_size, max(2, length // 2))
    src[-1, length // 2 :] = config.pad_id  # right padding in the last row
    tgt[-1, tgt.shape[1] // 2 :] = config.pad_id
    return src, tgt


def _max_diff(graph: nn.Module, path: Path, inputs: Sequence[Tensor]) -> float:
    with torch.no_grad():
        eager = graph(*inputs).float().numpy()
    return float(np.abs(run_onnx(path, *(t.numpy() for t in inputs)) - eager).max())


def _save_atomic(program, path: Path) -> None:
    """``program.save`` to a temp file beside ``path``, renamed into place (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-", suffix=".onnx")
    os.close(fd)
    try:
        program.save(tmp)
        os.chmod(tmp, FILE_MODE & ~current_umask())  # as open() would make it (mkstemp gives 0600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
