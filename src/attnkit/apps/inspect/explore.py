"""The attention explorer page (:mod:`attnkit.viz.explorer`) for a model run: ``attnkit inspect TEXT --html``.

* :func:`explore_text` — MiniLM or SmolLM2 on a text; for SmolLM2, ``generate=N`` also
  decodes N tokens greedily (the KV cache, as ``ChatModel.generate`` does) and adds the
  generation view;
* :func:`explore_model` — any attnkit :class:`~attnkit.nn.TransformerLM` (decoder section)
  or :class:`~attnkit.nn.Transformer` (encoder, decoder and cross-attention sections).

The model runs unchanged: the hooks of :mod:`~attnkit.apps.inspect.capture` watch one
forward pass and each layer's weights are recomputed from the tiled backend's
log-sum-exp, as :func:`~attnkit.apps.inspect.inspect` does. Generated tokens come from
cached decoding; their weights from one teacher-forced pass over prompt + output:
causal attention gives each position the same query row it had at its decoding step
(the page's note says how many of the generated tokens that pass reproduces as its own
greedy choice). Layers are encoded one at a time (:class:`~attnkit.viz.SectionWriter`),
so 2,000 tokens never hold every layer's dense weights at once.

Example:
    >>> import torch
    >>> from attnkit.nn import TransformerConfig, TransformerLM
    >>> lm = TransformerLM(TransformerConfig(vocab_size=20, d_model=16, num_heads=2, d_ff=32,
    ...                                      num_encoder_layers=0, num_decoder_layers=2)).eval()
    >>> page = explore_model(lm, torch.tensor([[1, 2, 3, 4]]), tokens=list("abcd"))
    >>> [(s.name, s.causal, s.layers) for s in page.sections]
    [('decoder', True, (0, 1))]
    >>> explore_text("Attention is all you need", model="minilm", layers=[0]).sections[0].num_heads
    12
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ...nn import Transformer, TransformerLM
from ...viz import Explorer, SectionWriter
from .capture import LayerCall, capture, layer_weights, weights_method

__all__ = ["explore_text", "explore_model", "MAX_HTML_TOKENS"]

MAX_HTML_TOKENS = 2048  #: default limit of explore_text (the page stays usable at 2,000 tokens)


@dataclass
class _Group:
    """The attention modules of one section and how to label them."""

    name: str
    modules: list  # the MultiHeadAttention modules, one per layer
    layers: list[int]
    query_tokens: Sequence[str]
    key_tokens: Sequence[str]
    causal: bool
    prompt_length: int | None = None


def _encode(groups: list[_Group], run: Callable[[], Tensor], method: str | None):
    """Run once under the hooks; encode every section layer by layer. Returns (sections, max error, logits)."""
    modules = [m for g in groups for m in g.modules]
    with torch.inference_mode(), capture(modules) as calls:
        logits = run()
    sections, worst, n = [], 0.0, 0
    for g in groups:
        cross = g.name == "cross"
        axes = ("output token (being produced)", "source token (attended to)") if cross else \
            ("query (attending)", "key (attended to)")  # fmt: skip
        writer = SectionWriter(g.name, query_tokens=g.query_tokens, key_tokens=g.key_tokens,
                               num_layers=len(g.modules), num_heads=int(g.modules[0].num_heads), causal=g.causal,
                               prompt_length=g.prompt_length, query_axis=axes[0], key_axis=axes[1])  # fmt: skip
        for module, number in zip(g.modules, g.layers, strict=True):
            found = layer_weights(module, calls[n], method=method)  # (H, Lq, Lk)
            calls[n] = LayerCall()  # drop the captured projections as soon as the layer is encoded
            writer.add(number, found.weights)
            worst, n = max(worst, found.max_error), n + 1
        sections.append(writer.finish())
    return sections, worst, logits


def _method_note(method: str | None, worst: float) -> str:
    chosen, note = weights_method()
    if method not in (None, chosen):
        note = "attention(..., return_weights=True) on the reference backend"
    return f"weights: {note}; the recomputed layer outputs match the model's to {worst:.1e}"


def _as_ids(name: str, ids) -> Tensor:
    ids = torch.as_tensor(ids, dtype=torch.long)
    ids = ids[None] if ids.dim() == 1 else ids  # (L,) -> (1, L)
    if ids.dim() != 2 or ids.shape[0] != 1 or ids.shape[1] == 0:
        raise ValueError(f"explore_model(): {name} must be one sequence of token ids, (L,) or (1, L), "
                         f"got shape {tuple(ids.shape)}")  # fmt: skip
    return ids


def explore_model(
    model: Transformer | TransformerLM,
    ids,
    target=None,
    *,
    tokens: Sequence[str] | None = None,
    target_tokens: Sequence[str] | None = None,
    output_tokens: Sequence[str] | None = None,
    prompt_length: int | None = None,
    method: str | None = None,
    title: str | None = None,
) -> Explorer:
    """The explorer page of one forward pass of an attnkit model.

    Args:
        model: a :class:`~attnkit.nn.TransformerLM` (one causal ``"decoder"`` section) or a
            :class:`~attnkit.nn.Transformer` (``"encoder"``, ``"decoder"``, ``"cross"``), in eval mode.
        ids: the token ids, ``(L,)`` or ``(1, L)``: the text (LM) or the source (encoder-decoder).
        target: encoder-decoder only: the decoder input ids (``<s>`` + target, teacher forcing).
        tokens, target_tokens: labels of ``ids`` and ``target`` (default: the ids as text).
        output_tokens: labels of the cross-attention rows (the token each row produces; default target_tokens).
        prompt_length: LM only: positions from here on were generated (adds the generation view).
        method: ``"lse"`` (default where the tiled backend exists) or ``"need_weights"``.
        title: the page title.
    """
    if not isinstance(model, (Transformer, TransformerLM)):
        raise TypeError(f"explore_model(): model must be an attnkit Transformer or TransformerLM, got "
                        f"{type(model).__name__}")  # fmt: skip
    if model.training:
        raise ValueError("explore_model(): model is in training mode (dropout changes the weights); call model.eval()")
    ids = _as_ids("ids", ids)
    labels = list(tokens) if tokens is not None else [str(i) for i in ids[0].tolist()]
    if isinstance(model, TransformerLM):
        if target is not None:
            raise ValueError("explore_model(): target is for encoder-decoder models; a TransformerLM reads ids only")
        dec = [layer.self_attn for layer in model.decoder.layers]
        groups = [_Group("decoder", dec, list(range(len(dec))), labels, labels, True, prompt_length)]
        sections, worst, _ = _encode(groups, lambda: model(ids), method)
    else:
        if target is None:
            raise ValueError("explore_model(): an encoder-decoder Transformer needs target (the decoder input ids)")
        tgt = _as_ids("target", target)
        t_labels = list(target_tokens) if target_tokens is not None else [str(i) for i in tgt[0].tolist()]
        enc = [layer.self_attn for layer in model.encoder.layers]
        dec = [layer.self_attn for layer in model.decoder.layers]
        cross = [layer.cross_attn for layer in model.decoder.layers]
        rows = list(output_tokens) if output_tokens is not None else t_labels
        groups = [_Group("encoder", enc, list(range(len(enc))), labels, labels, False),
                  _Group("decoder", dec, list(range(len(dec))), t_labels, t_labels, True),
                  _Group("cross", cross, list(range(len(cross))), rows, labels, False)]  # fmt: skip
        sections, worst, _ = _encode(groups, lambda: model(ids, tgt), method)
    return Explorer(tuple(sections), title=title or type(model).__name__, note=_method_note(method, worst))


def explore_text(
    text: str,
    *,
    model: str = "minilm",
    generate: int = 0,
    layers: Sequence[int] | None = None,
    method: str | None = None,
    max_tokens: int = MAX_HTML_TOKENS,
) -> Explorer:
    """The explorer page of MiniLM or SmolLM2 on ``text``; SmolLM2 can also ``generate`` tokens (greedy).

    Args:
        text: the input.
        model: ``"minilm"`` or ``"smollm2"``.
        generate: SmolLM2 only: decode this many tokens after ``text`` and add the generation view.
        layers: layer numbers to include (negative counts from the end); default all.
        method: as in :func:`~attnkit.apps.inspect.inspect`.
        max_tokens: refuse longer inputs (prompt + generated tokens).
    """
    from .core import MODELS, _check_length, _layer_indices, _load

    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"explore_text(): text must be a non-empty str, got {text!r}")
    if model not in MODELS:
        raise ValueError(f"explore_text(): model must be one of {MODELS}, got {model!r}")
    if isinstance(generate, bool) or not isinstance(generate, int) or generate < 0:
        raise ValueError(f"explore_text(): generate must be an int >= 0, got {generate!r}")
    if generate and model != "smollm2":
        raise ValueError(f"explore_text(): generate={generate} needs a decoder: use model='smollm2' (got {model!r})")
    if model == "minilm" or not generate:
        tokens, modules, run, causal = _load(model, text, max_tokens)
        prompt_length, extra = None, ""
    else:
        from ..summarize.models import chat_model

        chat = chat_model()
        prompt = chat.tokenizer.encode(text, add_special_tokens=False).ids
        _check_length(len(prompt) + generate, min(max_tokens, chat.model.config.max_len), "SmolLM2-135M-Instruct")
        new = chat.generate_ids(prompt, max_new_tokens=generate)  # greedy, KV cache: how the model generates
        full = torch.tensor([prompt + new])  # (1, L + G)
        tokens = [chat.tokenizer.decode([i]) for i in full[0].tolist()]
        modules = [layer.self_attn for layer in chat.model.decoder.layers]
        run, causal, prompt_length = (lambda: chat.model(full)), True, len(prompt)
        extra = (f"; {len(new)} tokens generated greedily with the KV cache, their weights from one teacher-forced "
                 "pass over prompt + output")  # fmt: skip
    picked = _layer_indices(layers, len(modules))
    name = "decoder" if causal else "encoder"
    groups = [_Group(name, [modules[i] for i in picked], picked, tokens, tokens, causal, prompt_length)]
    sections, worst, logits = _encode(groups, run, method)
    if prompt_length is not None:
        replay = logits[0, prompt_length - 1 : -1].argmax(-1)  # (G,) the pass's own greedy choice at each step
        same = int((replay == full[0, prompt_length:]).sum())
        extra += f" (that pass picks the same token at {same} of {len(new)} steps)"
    label = {"minilm": "all-MiniLM-L6-v2", "smollm2": "SmolLM2-135M-Instruct"}[model]
    return Explorer(tuple(sections), title=f"{label} on {len(tokens)} tokens", note=_method_note(method, worst) + extra)
