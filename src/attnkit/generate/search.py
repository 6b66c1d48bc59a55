r"""Greedy search and sampling: one token per row per step, on the KV cache.

Greedy takes :math:`y_t = \arg\max_v P(v \mid y_{<t}, x)`. Sampling draws
:math:`y_t \sim \mathrm{softmax}(z / T)` restricted to the ``top_k`` most likely tokens
(Fan et al., 2018) and/or the nucleus, the smallest set of tokens whose probability
mass reaches ``top_p`` (Holtzman et al., 2020), renormalized; filters apply in the
order temperature, top-k, top-p (as in Hugging Face ``generate``).

Both return only the new tokens ``(B, T)`` with ``T <= max_new_tokens``: a row stops at
its EOS (kept in the output) and is filled with ``pad_id`` after it; decoding ends
when every row has stopped.

Shape legend: B batch, L prompt length, T generated length, V vocabulary size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ._session import Session
from .config import GenerationConfig

__all__ = ["greedy", "sample"]


def greedy(
    model, inputs: Tensor, *, max_new_tokens: int, eos_id: int | None = None, ignore_eos: bool = False,
    src_mask=None, prompt_mask: Tensor | None = None, no_repeat_ngram_size: int = 0, repetition_penalty: float = 1.0,
) -> Tensor:  # fmt: skip
    """Greedy decoding: the most likely next token at every step.

    ``inputs`` are source ids ``(B, S)`` for a :class:`~attnkit.nn.Transformer` (decoding
    starts from ``config.bos_id``) or prompt ids ``(B, L)`` for a
    :class:`~attnkit.nn.TransformerLM`, left-padded with ``config.pad_id`` when prompts
    differ in length (see :func:`left_pad`). ``eos_id`` defaults to ``config.eos_id``.
    Returns the new tokens ``(B, T)``, ``pad_id`` after each row's EOS.
    ``no_repeat_ngram_size`` and ``repetition_penalty`` control repetition
    (:mod:`attnkit.generate.repetition`; off by default).

    Example:
        >>> from attnkit.nn import TransformerConfig, TransformerLM
        >>> _ = torch.manual_seed(0)
        >>> cfg = TransformerConfig(vocab_size=13, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=0,
        ...                         num_decoder_layers=1, dropout=0.0)
        >>> lm = TransformerLM(cfg).eval()
        >>> greedy(lm, torch.tensor([[3, 4, 5]]), max_new_tokens=4, ignore_eos=True).shape
        torch.Size([1, 4])
    """
    cfg = GenerationConfig(
        strategy="greedy", max_new_tokens=max_new_tokens, eos_id=eos_id, ignore_eos=ignore_eos,
        no_repeat_ngram_size=no_repeat_ngram_size, repetition_penalty=repetition_penalty, _owner="greedy()",
    )  # fmt: skip
    session = Session("greedy()", model, inputs, src_mask=src_mask, prompt_mask=prompt_mask,
                      no_repeat_ngram_size=no_repeat_ngram_size, repetition_penalty=repetition_penalty)  # fmt: skip
    return run_greedy(session, cfg, "greedy()")


def sample(
    model, inputs: Tensor, *, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
    top_p: float | None = None, seed: int | None = None, generator: torch.Generator | None = None,
    eos_id: int | None = None, ignore_eos: bool = False, src_mask=None, prompt_mask: Tensor | None = None,
    no_repeat_ngram_size: int = 0, repetition_penalty: float = 1.0,
) -> Tensor:  # fmt: skip
    """Ancestral sampling with temperature, top-k and nucleus (top-p) filtering.

    Reproducible with ``seed`` (a private ``torch.Generator``) or your own ``generator``;
    with neither, torch's global RNG is used. Inputs, outputs and repetition control as in
    :func:`greedy`; the repetition rules apply before temperature, top-k and top-p.

    Example:
        >>> from attnkit.nn import TransformerConfig, TransformerLM
        >>> cfg = TransformerConfig(vocab_size=13, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=0,
        ...                         num_decoder_layers=1, dropout=0.0)
        >>> lm = TransformerLM(cfg).eval()
        >>> a = sample(lm, torch.tensor([[3, 4]]), max_new_tokens=5, top_p=0.9, seed=7)
        >>> torch.equal(a, sample(lm, torch.tensor([[3, 4]]), max_new_tokens=5, top_p=0.9, seed=7))
        True
    """
    cfg = GenerationConfig(
        strategy="sample", max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
        seed=seed, eos_id=eos_id, ignore_eos=ignore_eos, no_repeat_ngram_size=no_repeat_ngram_size,
        repetition_penalty=repetition_penalty, _owner="sample()",
    )  # fmt: skip
    session = Session("sample()", model, inputs, src_mask=src_mask, prompt_mask=prompt_mask,
                      no_repeat_ngram_size=no_repeat_ngram_size, repetition_penalty=repetition_penalty)  # fmt: skip
    return run_sample(session, cfg, "sample()", generator)


def resolve_eos(owner: str, cfg: GenerationConfig, session: Session) -> int | None:
    """The stop token, or None when EOS is ignored."""
    if cfg.ignore_eos:
        return None
    eos = session.config.eos_id if cfg.eos_id is None else cfg.eos_id
    if not 0 <= eos < session.vocab_size:
        raise ValueError(
            f"{owner}: eos_id={eos} is outside the vocabulary [0, {session.vocab_size}); "
            "pass a valid token id, or ignore_eos=True"
        )
    return eos


def run_greedy(session: Session, cfg: GenerationConfig, owner: str) -> Tensor:
    return _decode(session, cfg, owner, lambda logits: logits.argmax(dim=-1))  # (N, V) -> (N,)


def run_sample(session: Session, cfg: GenerationConfig, owner: str, generator: torch.Generator | None) -> Tensor:
    if generator is not None and cfg.seed is not None:
        raise ValueError(f"{owner}: give either seed={cfg.seed} or generator=, not both")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{owner}: generator must be a torch.Generator, got {type(generator).__name__}")
    if cfg.seed is not None:
        generator = torch.Generator(device=session.device).manual_seed(cfg.seed)

    def draw(logits: Tensor) -> Tensor:
        probs = torch.softmax(filter_logits(logits, cfg.temperature, cfg.top_k, cfg.top_p), dim=-1)  # (N, V)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]  # (N, 1) -> (N,)

    return _decode(session, cfg, owner, draw)


def filter_logits(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None) -> Tensor:
    """Scale by ``1 / temperature``, then set tokens outside top-k / the top-p nucleus to ``-inf``."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature  # (N, V)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (N, 1): the k-th largest logit
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        probs, order = torch.softmax(logits, dim=-1).sort(dim=-1, descending=True)  # (N, V) each
        mass_before = probs.cumsum(dim=-1) - probs  # (N, V): probability of the more likely tokens
        drop = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, mass_before >= top_p)  # (N, V)
        logits = logits.masked_fill(drop, float("-inf"))  # the most likely token always stays (mass_before = 0)
    return logits


def _decode(session: Session, cfg: GenerationConfig, owner: str, choose: Callable[[Tensor], Tensor]) -> Tensor:
    """Shared loop: choose a token per row, stop rows at EOS, pad after it."""
    eos = resolve_eos(owner, cfg, session)
    pad = session.config.pad_id
    with torch.no_grad():
        logits = session.first_logits()  # (N, V)
        done = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)  # (N,)
        out = []
        for step in range(cfg.max_new_tokens):
            token = torch.where(done, pad, choose(session.history.process(logits)))  # (N,)
            out.append(token)
            session.history.append(token)
            if eos is not None:
                done = done | (token == eos)
            if step == cfg.max_new_tokens - 1 or bool(done.all()):
                break
            logits = session.step(token)  # (N, V)
    return torch.stack(out, dim=1)  # T x (N,) -> (N, T)
