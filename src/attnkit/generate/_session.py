"""One batch being decoded: the model, its KV cache, and per-row masks and positions.

:class:`Session` hides the two model kinds behind ``first_logits()``, ``step(tokens)``
and ``select(rows)``:

* :class:`~attnkit.nn.Transformer`: the source is encoded once; the decoder starts
  from ``config.bos_id``; cross-attention keys/values are projected at the first step
  and stay in the cache.
* :class:`~attnkit.nn.TransformerLM`: the prompt is run once (prefill). Prompts of
  different lengths are padded on the left; padded keys are masked and positions skip
  the padding, so every row decodes exactly as it would alone::

      prompt ids      pad pad  a   b        a   b   c   d
      keep (mask)      0   0   1   1        1   1   1   1
      positions        0   0   0   1        0   1   2   3
      next position            2                    4

Shape legend: B batch (input rows), N decoded rows (B * beam_size for beam search),
L prompt length, S source length, K cached keys, V vocabulary size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .. import masks
from ..masks import Mask
from ..nn.transformer import Transformer, TransformerLM, key_padding_mask
from .repetition import History

__all__ = ["Session", "left_pad"]


def left_pad(prompts: Sequence[Sequence[int] | Tensor], pad_id: int, *, device=None) -> Tensor:
    """Stack prompts of different lengths into ``(B, L)`` ids, padded on the left with ``pad_id``.

    Example:
        >>> left_pad([[5, 6, 7], [8]], pad_id=0)
        tensor([[5, 6, 7],
                [0, 0, 8]])
    """
    rows = [torch.as_tensor(p, dtype=torch.long, device=device).reshape(-1) for p in prompts]
    if not rows or any(r.numel() == 0 for r in rows):
        raise ValueError("left_pad(): prompts must be a non-empty list of non-empty token sequences")
    out = torch.full((len(rows), max(r.numel() for r in rows)), pad_id, dtype=torch.long, device=rows[0].device)
    for i, r in enumerate(rows):
        out[i, out.shape[1] - r.numel() :] = r  # right-aligned: padding on the left
    return out


def check_model(owner: str, model) -> None:
    if not isinstance(model, (Transformer, TransformerLM)):
        raise TypeError(
            f"{owner}: model must be an attnkit.nn.Transformer (encoder-decoder) or TransformerLM "
            f"(decoder-only), got {type(model).__name__}; other models need encode/decode with a DecoderCache"
        )
    if model.training:
        raise ValueError(
            f"{owner}: model is in training mode (dropout active), so outputs would be random and not "
            "reproducible; call model.eval() before generating"
        )


def _check_ids(owner: str, ids, vocab: int, name: str) -> None:
    if not isinstance(ids, Tensor) or ids.dtype != torch.long or ids.dim() != 2 or 0 in ids.shape:
        got = f"{ids.dtype} {tuple(ids.shape)}" if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(
            f"{owner}: {name} must be token ids, a non-empty torch.long tensor (B, L), got {got}; "
            "add a batch dimension with ids[None] for a single sequence"
        )
    if int(ids.min()) < 0 or int(ids.max()) >= vocab:
        raise ValueError(
            f"{owner}: {name} ids must lie in [0, {vocab}) (the vocabulary), got min {int(ids.min())}, "
            f"max {int(ids.max())}"
        )


def _prompt_keep(owner: str, ids: Tensor, prompt_mask: Tensor | None, pad_id: int) -> Tensor:
    """(B, L) bool, True on real prompt tokens; checks the padding is on the left."""
    if prompt_mask is None:
        if bool((ids[:, -1] == pad_id).any()):
            rows = (ids[:, -1] == pad_id).nonzero().flatten().tolist()
            raise ValueError(
                f"{owner}: prompt rows {rows} end with pad_id={pad_id}; generation continues after the last "
                "position, so pad prompts on the LEFT (as Hugging Face padding_side='left'). Hint: build the "
                "batch with attnkit.generate.left_pad(prompts, pad_id), or pass prompt_mask (B, L)"
            )
        return (ids != pad_id).cummax(dim=1).values  # leading pad_id tokens are padding, later ones are text
    if not isinstance(prompt_mask, Tensor) or prompt_mask.dtype != torch.bool or prompt_mask.shape != ids.shape:
        got = f"{prompt_mask.dtype} {tuple(prompt_mask.shape)}" if isinstance(prompt_mask, Tensor) else prompt_mask
        raise ValueError(
            f"{owner}: prompt_mask must be a bool tensor shaped like the prompt {tuple(ids.shape)} with True on "
            f"real tokens, got {got}"
        )
    keep = prompt_mask.to(ids.device)
    if not torch.equal(keep, keep.cummax(dim=1).values) or not bool(keep[:, -1].all()):
        raise ValueError(
            f"{owner}: prompt_mask must be left padding (False* then True+ in every row); generation "
            "continues after the last position. Hint: attnkit.generate.left_pad(prompts, pad_id)"
        )
    return keep


def _batch_mask(mask: Mask | None, rows: Tensor, S: int) -> Mask | Tensor | None:
    """Repeat a source key mask for rows ``rows``: None, a batch-free Mask, or a (N, Hm, 1, S) bool tensor."""
    if mask is None or mask.batch_size() is None:
        return mask
    return mask.to_dense(1, S, device=rows.device).index_select(0, rows)  # (B, Hm, 1, S) -> (N, Hm, 1, S)


class Session:
    """A decoding batch of ``N = B * expand`` rows (row ``b * expand + j`` copies input row ``b``)."""

    keep: Tensor  # TransformerLM: (N, K) bool, True = a real (not padding) key so far
    positions: Tensor | None  # TransformerLM: (N,) next position of each row; None when no row is padded
    src_mask: Mask | None  # encoder-decoder: the caller's source key mask
    memory_mask: Mask | Tensor | None  # encoder-decoder: source key mask, or (N, Hm, 1, S) bool once beams copy it

    def __init__(self, owner: str, model, inputs: Tensor, *, expand: int = 1, src_mask=None, prompt_mask=None,
                 no_repeat_ngram_size: int = 0, repetition_penalty: float = 1.0):  # fmt: skip
        check_model(owner, model)
        self.model, self.config = model, model.config
        self.is_lm = isinstance(model, TransformerLM)
        self.vocab_size = self.config.vocab_size if self.is_lm else self.config.target_vocab_size
        _check_ids(owner, inputs, self.config.vocab_size, "prompt" if self.is_lm else "src")
        if self.is_lm and src_mask is not None:
            raise ValueError(f"{owner}: src_mask is for encoder-decoder models; for a TransformerLM use prompt_mask")
        if src_mask is not None and not isinstance(src_mask, Mask):
            raise TypeError(
                f"{owner}: src_mask must be an attnkit.masks.Mask over the source keys (as for Transformer.encode), "
                f"got {type(src_mask).__name__}; e.g. masks.padding(lengths) or masks.dense(keep[:, None, None, :])"
            )
        if not self.is_lm and prompt_mask is not None:
            raise ValueError(f"{owner}: prompt_mask is for TransformerLM; for a Transformer source use src_mask")
        self.batch_size = inputs.shape[0]
        self.rows = torch.arange(self.batch_size, device=inputs.device).repeat_interleave(expand)  # (N,)
        self.cache = model.new_cache()
        self.inputs = inputs
        if self.is_lm:
            self.keep = _prompt_keep(owner, inputs, prompt_mask, self.config.pad_id)[self.rows]  # (N, L)
        else:
            self.src_mask = src_mask
        seen: list[list[int]] = [[]] * self.rows.numel()  # encoder-decoder: only generated tokens count as repeats
        if self.is_lm and (no_repeat_ngram_size or repetition_penalty != 1.0):
            prompts = zip(inputs[self.rows], self.keep, strict=True)
            seen = [row[keep].tolist() for row, keep in prompts]  # real prompt tokens
        self.history = History(seen, self.vocab_size, no_repeat_ngram_size=no_repeat_ngram_size,
                               repetition_penalty=repetition_penalty)  # fmt: skip
    @property
    def device(self) -> torch.device:
        return self.inputs.device

    def first_logits(self) -> Tensor:
        """Logits ``(N, V)`` of the first new token (runs the encoder or the prompt)."""
        return self._prefill_lm() if self.is_lm else self._start_decoder()

    def step(self, tokens: Tensor) -> Tensor:
        """Feed ``tokens (N,)``; return logits ``(N, V)`` of the next token."""
        ids = tokens[:, None]  # (N,) -> (N, 1)
        if not self.is_lm:
            return self.model.decode(ids, None, memory_mask=self._memory_mask(), cache=self.cache)[:, -1]  # (N, V)
        if self.positions is None:  # no padding: the default causal mask and cache offsets are exact
            return self.model(ids, cache=self.cache)[:, -1]  # (N, 1, V) -> (N, V)
        self.keep = torch.cat((self.keep, self.keep.new_ones(self.keep.shape[0], 1)), dim=1)  # (N, K) -> (N, K+1)
        positions = self.positions[:, None]  # (N,) -> (N, 1)
        self.positions = self.positions + 1
        mask = masks.dense(self.keep[:, None, None, :])  # (N, K+1) -> (N, 1, 1, K+1): one query sees all real keys
        return self.model(ids, mask, positions=positions, cache=self.cache)[:, -1]  # (N, V)

    def select(self, index: Tensor) -> None:
        """Keep (and reorder) decoded rows ``index (N,)``: beam search moves hypotheses."""
        self.cache.select_batch(index)
        self.history.select(index)
        if self.is_lm and self.positions is not None:
            self.keep, self.positions = self.keep[index], self.positions[index]  # (N, K), (N,)
        if not self.is_lm and isinstance(self.memory_mask, Tensor):
            self.memory_mask = self.memory_mask[index]  # (N, Hm, 1, S)

    def _prefill_lm(self) -> Tensor:
        ids = self.inputs[self.rows]  # (B, L) -> (N, L)
        if bool(self.keep.all()):
            self.positions = None
            return self.model(ids, cache=self.cache, logits_to_keep=1)[:, -1]  # (N, 1, V) -> (N, V)
        positions = (self.keep.cumsum(dim=1) - 1).clamp(min=0)  # (N, L): 0, 1, ... from the first real token
        self.positions = positions[:, -1] + 1  # (N,) next position of each row
        mask = masks.causal() & masks.dense(self.keep[:, None, None, :])  # padding keys hidden; pad queries see none
        return self.model(ids, mask, positions=positions, cache=self.cache, logits_to_keep=1)[:, -1]  # (N, V)

    def _start_decoder(self) -> Tensor:
        src_mask = self.src_mask
        source_mask = key_padding_mask(self.inputs, self.config.pad_id) if src_mask is None else src_mask
        memory = self.model.encode(self.inputs, source_mask)[self.rows]  # (B, S, d_model) -> (N, S, d_model)
        self.memory_mask = source_mask
        if self.rows.numel() != self.batch_size:  # beams: one copy of the source mask per hypothesis
            self.memory_mask = _batch_mask(source_mask, self.rows, self.inputs.shape[1])  # (N, Hm, 1, S)
        bos = torch.full((self.rows.numel(), 1), self.config.bos_id, dtype=torch.long, device=self.device)  # (N, 1)
        logits = self.model.decode(bos, memory, memory_mask=self._memory_mask(), cache=self.cache)  # (N, 1, V)
        return logits[:, -1]  # (N, V)

    def _memory_mask(self) -> Mask | None:
        return masks.dense(self.memory_mask) if isinstance(self.memory_mask, Tensor) else self.memory_mask
