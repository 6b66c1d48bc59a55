"""Is this input like what the model was trained on? The model's own confidence, calibrated.

A model trained on numbers and dates turns "The cat sat on the mat." into a confident-looking
number word. It cannot say "I don't know", but its probabilities can: the **mean token
log-probability** of its output (teacher forcing on the decoded tokens, ``</s>`` included)

.. math::
    c(x, y) = \\frac{1}{|y|} \\sum_t \\log p(y_t \\mid y_{<t}, x)

is near 0 on inputs like the training data and falls on inputs unlike it. At the end of
training :func:`calibrate` measures ``c`` on validation sentences (greedy outputs) and keeps
a low percentile as the **threshold** (stored in ``translate.json`` under ``"confidence"``);
:func:`check` flags an output whose confidence falls below it. By construction about
``percentile`` % of in-domain sentences are flagged too (2 % by default): the flag says
"less sure than on 98 % of the validation sentences", not "wrong".

Shape legend: B sentences, S source tokens, T output tokens (``</s>`` included), V vocabulary.

Example (an untrained model, calibrated on three sentences):
    >>> from attnkit.nn import Transformer, TransformerConfig
    >>> from attnkit.apps.translate.tokenizer import SubwordTokenizer
    >>> tok = SubwordTokenizer.train(["one", "eins", "two", "zwei"], vocab_size=30)
    >>> model = Transformer(TransformerConfig(vocab_size=tok.vocab_size, d_model=16, num_heads=2, d_ff=32,
    ...                                       num_encoder_layers=1, num_decoder_layers=1))
    >>> cal = calibrate(model, tok, ["one", "two", "one two"], percentile=50.0)
    >>> cal.sentences, cal.percentile, cal.threshold <= cal.median
    (3, 50.0, True)
    >>> Calibration.from_dict(cal.to_dict()) == cal
    True
    >>> verdict = Confidence(score=-1.5, out_of_domain=True, threshold=-0.4)
    >>> verdict.warning("The cat sat on the mat.").startswith("warning: low confidence")
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ...nn import Transformer
from .evaluate import translate_batch
from .tokenizer import SubwordTokenizer

__all__ = ["Calibration", "Confidence", "mean_token_log_probs", "calibrate", "check", "PERCENTILE", "INFO_KEY"]

#: default: flag outputs less confident than 98 % of the validation outputs. Measured on the demo model
#: (1400 steps): validation percentiles 1/2/5/50 = -0.71/-0.40/-0.16/-0.06; "The cat sat on the mat.",
#: "Hello, how are you?", "Please open the door" score -0.88/-0.63/-1.04, while a correct in-domain
#: "three thousand and five" scores -0.19 (flagged by the 5th percentile, not by the 2nd)
PERCENTILE = 2.0
INFO_KEY = "confidence"  #: where translate.json keeps the calibration


@dataclass(frozen=True)
class Calibration:
    """The validation distribution of the confidence, as stored with the model."""

    threshold: float  # mean token log-prob at ``percentile`` on validation: below it = flagged
    percentile: float  # which percentile the threshold is, e.g. 2.0
    median: float  # the median on validation (for scale: near 0 means very sure)
    sentences: int  # validation sentences measured
    decoding: str = "greedy"  # how the validation outputs were decoded
    measure: str = "mean token log-probability of the output"  # what the numbers are

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> Calibration:
        """Read back :meth:`to_dict`; unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - names)
        if unknown:
            raise ValueError(f"Calibration.from_dict(): unknown keys {unknown}; expected some of {sorted(names)}")
        return cls(**doc)


@dataclass(frozen=True)
class Confidence:
    """One output's confidence and the verdict, when the model has a calibration."""

    score: float  # mean token log-probability of the output (0 = certain)
    out_of_domain: bool | None  # score < threshold; None when the model has no calibration
    threshold: float | None  # the model's threshold, None when it has none

    def warning(self, source: str) -> str | None:
        """One line for people when flagged, else None."""
        if not self.out_of_domain:
            return None
        return (f"warning: low confidence for {source!r} (mean token log-prob {self.score:.2f}, below the "
                f"model's threshold {self.threshold:.2f} from its validation sentences): the input may be unlike "
                "the training data, and the translation may be wrong")  # fmt: skip

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def mean_token_log_probs(
    model: Transformer, tokenizer: SubwordTokenizer, sources: Sequence[str], outputs: Sequence[str], *,
    batch_size: int = 32,
) -> list[float]:  # fmt: skip
    """``c(x, y)`` of each (source, output) pair: the model reads ``<s> + y`` and scores ``y + </s>``."""
    if len(sources) != len(outputs):
        raise ValueError(f"mean_token_log_probs(): {len(sources)} sources but {len(outputs)} outputs; "
                         "give one output per source")  # fmt: skip
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_id
    scores: list[float] = []
    for start in range(0, len(sources), batch_size):
        chunk = slice(start, start + batch_size)
        src_ids = [ids + [tokenizer.eos_id] for ids in tokenizer.encode_batch(list(sources[chunk]))]
        out_ids = [ids + [tokenizer.eos_id] for ids in tokenizer.encode_batch(list(outputs[chunk]))]
        src = _pad(src_ids, pad).to(device)  # (B, S)
        target = _pad(out_ids, pad).to(device)  # (B, T)
        bos = torch.full_like(target[:, :1], tokenizer.bos_id)  # (B, 1)
        with torch.no_grad():
            logits = model(src, torch.cat((bos, target[:, :-1]), dim=1))  # (B, T) -> (B, T, V)
        log_p = torch.log_softmax(logits.float(), dim=-1).gather(-1, target[..., None])[..., 0]  # (B, T, V) -> (B, T)
        real = (target != pad).float()  # (B, T): padding does not count
        scores += ((log_p * real).sum(1) / real.sum(1)).tolist()  # (B, T) -> (B,)
    return scores


def _pad(rows: list[list[int]], pad_id: int) -> torch.Tensor:
    out = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)  # (B, longest)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


def calibrate(
    model: Transformer, tokenizer: SubwordTokenizer, sources: Sequence[str], *, percentile: float = PERCENTILE,
) -> Calibration:  # fmt: skip
    """Decode ``sources`` (validation sentences) greedily and keep the ``percentile`` of their confidence."""
    if not 0.0 < percentile < 100.0:
        raise ValueError(f"calibrate(): percentile must be in (0, 100), got {percentile!r}; e.g. 2.0")
    if not sources:
        raise ValueError("calibrate(): no validation sentences to calibrate on")
    outputs = translate_batch(model, tokenizer, list(sources), beam_size=1)
    scores = torch.tensor(mean_token_log_probs(model, tokenizer, sources, outputs), dtype=torch.float64)
    threshold = float(torch.quantile(scores, percentile / 100.0))
    return Calibration(round(threshold, 4), float(percentile), round(float(scores.median()), 4), len(sources))


def check(
    model: Transformer, tokenizer: SubwordTokenizer, sources: Sequence[str], outputs: Sequence[str],
    calibration: Calibration | None,
) -> list[Confidence]:  # fmt: skip
    """The confidence of each output, flagged against ``calibration`` (None: scores only, no verdict)."""
    scores = mean_token_log_probs(model, tokenizer, sources, outputs)
    if calibration is None:
        return [Confidence(round(s, 4), None, None) for s in scores]
    return [Confidence(round(s, 4), s < calibration.threshold, calibration.threshold) for s in scores]
