r"""Beam search with the GNMT length penalty, batched, on the KV cache.

Each input row keeps ``beam_size`` live hypotheses. At every step all ``beam_size * V``
one-token extensions are scored by their summed log-probability and the best
``2 * beam_size`` are examined in order:

* an extension ending in EOS among the first ``beam_size`` is *finished*: it is stored
  with the score :math:`s(Y) = \log P(Y \mid X) / lp(Y)`,
  :math:`lp(Y) = ((5 + |Y|) / 6)^\alpha` (Wu et al., 2016, GNMT, eq. 14), ``|Y|``
  counting the generated tokens including EOS;
* the first ``beam_size`` extensions not ending in EOS become the next live beams (the
  KV cache follows them with ``DecoderCache.select_batch``).

A row stops when it holds ``num_return`` finished hypotheses and no live beam can
still beat them: a live beam's log-probability only falls, so its best possible score
is :math:`\log P / lp(n)` at the most favourable length ``n`` still reachable. At
``max_new_tokens`` the live beams are scored as they are. With ``beam_size`` at least
the number of hypotheses nothing is pruned and the search is exact; with
``beam_size=1`` and ``length_penalty=0`` it is greedy search.

Shape legend: B batch, K beam_size, N = B * K decoded rows, V vocabulary size,
T generated length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._session import Session
from .config import GenerationConfig
from .search import resolve_eos

__all__ = ["Hypothesis", "beam_search", "gnmt_length_penalty"]


@dataclass(frozen=True)
class Hypothesis:
    """One beam-search result."""

    tokens: Tensor  # (T,) generated ids, EOS included when finished
    score: float  # log_prob / gnmt_length_penalty(len(tokens), alpha): what the search maximizes
    log_prob: float  # log P(tokens | input), summed over the generated tokens
    finished: bool  # True when it ended with EOS, False when cut at max_new_tokens


def gnmt_length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ``((5 + length) / 6) ** alpha`` (1 for alpha = 0).

    Example:
        >>> gnmt_length_penalty(1, 0.6), round(gnmt_length_penalty(7, 0.6), 4)
        (1.0, 1.5157)
    """
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(
    model, inputs: Tensor, *, max_new_tokens: int, beam_size: int = 4, length_penalty: float = 0.6,
    num_return: int = 1, eos_id: int | None = None, ignore_eos: bool = False, src_mask=None,
    prompt_mask: Tensor | None = None, no_repeat_ngram_size: int = 0, repetition_penalty: float = 1.0,
) -> list[list[Hypothesis]]:  # fmt: skip
    """Beam search; returns, per input row, its ``num_return`` best :class:`Hypothesis` (best first).

    Inputs as in :func:`~attnkit.generate.greedy`: source ids ``(B, S)`` for a
    ``Transformer``, left-padded prompt ids ``(B, L)`` for a ``TransformerLM``.
    ``length_penalty`` is GNMT's alpha (0 = plain log-probability, larger favours longer outputs).
    ``no_repeat_ngram_size`` / ``repetition_penalty`` (:mod:`attnkit.generate.repetition`) act on
    each beam's logits before the softmax, so scores are log-probabilities of the controlled
    distribution and ``beam_size=1`` stays greedy search. (Hugging Face applies its processors
    after ``log_softmax``; the n-gram ban is the same, the penalty then scales log-probabilities.)

    Example:
        >>> from attnkit.nn import Transformer, TransformerConfig
        >>> cfg = TransformerConfig(vocab_size=13, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=1,
        ...                         num_decoder_layers=1, dropout=0.0)
        >>> model = Transformer(cfg).eval()
        >>> best = beam_search(model, torch.tensor([[5, 6, 7]]), max_new_tokens=5, beam_size=3, num_return=2)
        >>> len(best[0]), best[0][0].score >= best[0][1].score
        (2, True)
    """
    owner = "beam_search()"
    cfg = GenerationConfig(
        strategy="beam", max_new_tokens=max_new_tokens, beam_size=beam_size, length_penalty=length_penalty,
        num_return=num_return, eos_id=eos_id, ignore_eos=ignore_eos, no_repeat_ngram_size=no_repeat_ngram_size,
        repetition_penalty=repetition_penalty, _owner=owner,
    )  # fmt: skip
    session = Session(owner, model, inputs, expand=beam_size, src_mask=src_mask, prompt_mask=prompt_mask,
                      no_repeat_ngram_size=no_repeat_ngram_size, repetition_penalty=repetition_penalty)  # fmt: skip
    return run_beam(session, cfg, owner)


def run_beam(session: Session, cfg: GenerationConfig, owner: str) -> list[list[Hypothesis]]:
    eos = resolve_eos(owner, cfg, session)
    B, K, T = session.batch_size, cfg.beam_size, cfg.max_new_tokens
    store: list[list[Hypothesis]] = [[] for _ in range(B)]  # best finished hypotheses per row, best first
    with torch.no_grad():
        logits = session.first_logits()  # (N, V)
        scores = logits.new_full((B, K), float("-inf"), dtype=torch.float64)  # log P of the live beams
        scores[:, 0] = 0.0  # the K copies of a row are identical: expand only the first
        tokens = torch.empty(B * K, 0, dtype=torch.long, device=logits.device)  # (N, t)
        done = [False] * B
        for t in range(1, T + 1):
            logits = session.history.process(logits.to(torch.float64))  # (N, V) repetition control
            log_probs = torch.log_softmax(logits, dim=-1)  # (N, V)
            log_probs = log_probs.view(B, K, -1)  # (N, V) -> (B, K, V)
            V = log_probs.shape[-1]
            top, flat = (scores[:, :, None] + log_probs).view(B, K * V).topk(min(2 * K, K * V), dim=1)  # (B, 2K)
            beam, token = flat // V, flat % V  # (B, 2K) source beam and new token of each candidate
            is_eos = token == eos if eos is not None else torch.zeros_like(token, dtype=torch.bool)  # (B, 2K)
            _store_finished(store, cfg, eos, tokens, top, beam, is_eos, done, t)
            keep = torch.sort(is_eos.long(), dim=1, stable=True).indices[:, :K]  # (B, K): first K non-EOS
            scores, beam, token = top.gather(1, keep), beam.gather(1, keep), token.gather(1, keep)  # (B, K) each
            rows = (torch.arange(B, device=beam.device)[:, None] * K + beam).view(-1)  # (B, K) -> (N,)
            tokens = torch.cat((tokens[rows], token.view(-1, 1)), dim=1)  # (N, t-1) -> (N, t)
            done = [d or _cannot_improve(store[b], scores[b], cfg, t) for b, d in enumerate(done)]
            scores[torch.tensor(done, device=scores.device)] = float("-inf")  # stopped rows make no new hypotheses
            if t == T or all(done):
                break
            session.select(rows)
            session.history.append(token.view(-1))
            logits = session.step(token.view(-1))  # (N,) -> (N, V)
    return [_finalize(store[b], tokens[b * K : (b + 1) * K], scores[b], cfg) for b in range(B)]


def _store_finished(store, cfg: GenerationConfig, eos, tokens, top, beam, is_eos, done, t: int) -> None:
    """Store EOS extensions ranked among the first K (with a finite score) as finished hypotheses."""
    K = cfg.beam_size
    ranked = torch.arange(is_eos.shape[1], device=is_eos.device) < K  # (2K,)
    for b, r in (is_eos & ranked & torch.isfinite(top)).nonzero().tolist():
        if not done[b]:
            seq = torch.cat((tokens[b * K + int(beam[b, r])], tokens.new_tensor([eos])))  # (t-1,) -> (t,)
            log_prob = float(top[b, r])
            score = log_prob / gnmt_length_penalty(t, cfg.length_penalty)
            _add(store[b], Hypothesis(seq, score, log_prob, True), cfg)


def _add(hypotheses: list[Hypothesis], new: Hypothesis, cfg: GenerationConfig) -> None:
    """Insert keeping the list sorted best first and at most num_return long."""
    hypotheses.append(new)
    hypotheses.sort(key=lambda h: h.score, reverse=True)
    del hypotheses[cfg.num_return :]


def _cannot_improve(hypotheses: list[Hypothesis], scores: Tensor, cfg: GenerationConfig, t: int) -> bool:
    """True when the row holds num_return finished hypotheses that no live beam (scores (K,)) can beat."""
    if len(hypotheses) < cfg.num_return:
        return False
    best = float(scores.max())
    if best == float("-inf"):
        return True
    lengths = (min(t + 1, cfg.max_new_tokens), cfg.max_new_tokens)  # lp is monotonic: the bound is at an end
    bound = max(best / gnmt_length_penalty(n, cfg.length_penalty) for n in lengths)  # log P <= best < 0 from here on
    return bound <= hypotheses[-1].score


def _finalize(hypotheses: list[Hypothesis], tokens: Tensor, scores: Tensor, cfg: GenerationConfig) -> list[Hypothesis]:
    """Add the live beams (tokens (K, t), scores (K,)) cut at the length limit; best num_return first."""
    penalty = gnmt_length_penalty(tokens.shape[1], cfg.length_penalty)
    for seq, log_prob in zip(tokens, scores.tolist(), strict=True):
        if math.isfinite(log_prob):
            _add(hypotheses, Hypothesis(seq.clone(), log_prob / penalty, log_prob, False), cfg)
    return hypotheses
