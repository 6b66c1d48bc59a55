"""Decoding many sentences, and scoring them: BLEU, chrF (sacrebleu) and exact match.

* :func:`translate_batch` — sentences in, sentences out: sorted by length into batches
  (little padding), decoded by :mod:`attnkit.generate` (greedy or beam search on the KV
  cache), returned in the input order.
* :func:`score` — corpus BLEU (Papineni et al., 2002; sacrebleu's 13a tokenization),
  chrF (Popović, 2015) and the share of exact matches, all in percent.
* :func:`evaluate` — a model against a split, next to the *copy baseline* (hypothesis =
  source): what a model that learned nothing but copying would score, for scale.

Example:
    >>> s = score(["zwei Euro", "drei"], ["zwei Euro", "vier"])
    >>> s.exact_match, s.sentences
    (50.0, 2)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ...generate import beam_search, greedy
from ...nn import Transformer
from .data import Pair
from .tokenizer import SubwordTokenizer

__all__ = ["Scores", "EvalReport", "translate_batch", "score", "evaluate", "max_new_tokens"]


@dataclass(frozen=True)
class Scores:
    """Corpus-level scores of hypotheses against references, in percent.

    Example:
        >>> s = score(["zwei Euro", "drei"], ["zwei Euro", "vier"])
        >>> isinstance(s, Scores), s.exact_match, s.sentences
        (True, 50.0, 2)
    """

    bleu: float  # sacrebleu corpus BLEU, 13a tokenization
    chrf: float  # sacrebleu chrF (character n-gram F-score, beta = 2)
    exact_match: float  # hypotheses equal to their reference, after whitespace normalization
    sentences: int  # number of pairs scored


@dataclass(frozen=True)
class EvalReport:
    """A model's scores on a split, the copy baseline's, and a few examples.

    Example:
        >>> report = EvalReport("test", model=score(["eins"], ["eins"]), copy_baseline=score(["one"], ["eins"]),
        ...                     decoding="greedy", seconds=0.1, examples=(("one", "eins", "eins"),))
        >>> report.model.exact_match, report.copy_baseline.exact_match, report.to_dict()["decoding"]
        (100.0, 0.0, 'greedy')
    """

    split: str  # which pairs were scored, e.g. "test"
    model: Scores  # the model's translations
    copy_baseline: Scores  # hypothesis = source sentence
    decoding: str  # e.g. "beam 4" or "greedy"
    seconds: float  # time spent decoding
    examples: tuple[tuple[str, str, str], ...]  # (source, reference, hypothesis) of the first few pairs

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def max_new_tokens(source_length: int) -> int:
    """Decoding budget for a source of ``source_length`` tokens (EOS included)."""
    return 2 * source_length + 10


def translate_batch(
    model: Transformer, tokenizer: SubwordTokenizer, sentences: Sequence[str], *, beam_size: int = 4,
    batch_size: int = 32, length_penalty: float = 0.6,
) -> list[str]:  # fmt: skip
    """Translate ``sentences`` with ``model`` (put in eval mode); ``beam_size=1`` decodes greedily.

    Example:
        >>> from attnkit.nn import TransformerConfig
        >>> tok = SubwordTokenizer.train(["one", "eins", "two", "zwei"], vocab_size=30)
        >>> cfg = TransformerConfig(vocab_size=tok.vocab_size, d_model=16, num_heads=2, d_ff=32,
        ...                         num_encoder_layers=1, num_decoder_layers=1)
        >>> len(translate_batch(Transformer(cfg), tok, ["one", "two", "one two"], beam_size=2))
        3
    """
    if isinstance(sentences, str):
        raise TypeError("translate_batch(): sentences must be a list of str, got a single str; wrap it: [text]")
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"translate_batch(): beam_size must be an int >= 1 (1 = greedy), got {beam_size!r}")
    model.eval()
    device = next(model.parameters()).device
    encoded = [ids + [tokenizer.eos_id] for ids in tokenizer.encode_batch(list(sentences))]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out: list[str] = [""] * len(encoded)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        src = _right_pad([encoded[i] for i in rows], tokenizer.pad_id).to(device)  # (B, S)
        for i, ids in zip(rows, _decode(model, src, beam_size, length_penalty), strict=True):
            out[i] = tokenizer.decode(ids)
    return out


def _right_pad(rows: list[list[int]], pad_id: int) -> torch.Tensor:
    out = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)  # (B, S)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


def _decode(model: Transformer, src: torch.Tensor, beam_size: int, length_penalty: float) -> list[list[int]]:
    budget = max_new_tokens(src.shape[1])
    with torch.no_grad():
        if beam_size == 1:
            return greedy(model, src, max_new_tokens=budget).tolist()  # (B, T) -> B lists
        best = beam_search(model, src, max_new_tokens=budget, beam_size=beam_size, length_penalty=length_penalty)
    return [row[0].tokens.tolist() for row in best]


def score(hypotheses: Sequence[str], references: Sequence[str]) -> Scores:
    """BLEU, chrF and exact match (percent) of ``hypotheses`` against one reference each."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"score(): {len(hypotheses)} hypotheses but {len(references)} references; "
                         "give one reference per hypothesis")  # fmt: skip
    if not references:
        raise ValueError("score(): nothing to score (no references)")
    hyps, refs = [" ".join(h.split()) for h in hypotheses], [" ".join(r.split()) for r in references]
    bleu = sacrebleu.corpus_bleu(hyps, [refs]).score
    chrf = sacrebleu.corpus_chrf(hyps, [refs]).score
    exact = 100.0 * sum(h == r for h, r in zip(hyps, refs, strict=True)) / len(refs)
    return Scores(round(bleu, 2), round(chrf, 2), round(exact, 2), len(refs))


def evaluate(
    model: Transformer, tokenizer: SubwordTokenizer, pairs: Sequence[Pair], *, split: str = "test",
    beam_size: int = 4, limit: int | None = None, examples: int = 5,
) -> EvalReport:  # fmt: skip
    """Translate the sources of ``pairs`` and score them, with the copy baseline beside.

    ``limit`` scores only the first ``limit`` pairs (the splits are already shuffled).

    Example (an untrained model):
        >>> from attnkit.nn import TransformerConfig
        >>> tok = SubwordTokenizer.train(["one", "eins", "two", "zwei"], vocab_size=30)
        >>> model = Transformer(TransformerConfig(vocab_size=tok.vocab_size, d_model=16, num_heads=2, d_ff=32,
        ...                                       num_encoder_layers=1, num_decoder_layers=1))
        >>> report = evaluate(model, tok, [("one", "eins"), ("two", "zwei")], beam_size=1)
        >>> report.model.sentences, report.copy_baseline.exact_match, report.decoding
        (2, 0.0, 'greedy')
    """
    if limit is not None and (type(limit) is not int or limit < 1):
        raise ValueError(f"evaluate(): limit must be a positive int (pairs to score) or None for all, got {limit!r}")
    pairs = list(pairs)[:limit] if limit is not None else list(pairs)
    if not pairs:
        raise ValueError(f"evaluate(): the {split} split is empty; nothing to evaluate")
    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    started = time.perf_counter()
    hypotheses = translate_batch(model, tokenizer, sources, beam_size=beam_size)
    seconds = time.perf_counter() - started
    return EvalReport(
        split=split,
        model=score(hypotheses, references),
        copy_baseline=score(sources, references),
        decoding="greedy" if beam_size == 1 else f"beam {beam_size}",
        seconds=round(seconds, 2),
        examples=tuple(zip(sources[:examples], references[:examples], hypotheses[:examples], strict=True)),
    )
