"""Pruning heads by importance: validation BLEU vs the fraction of heads removed (``attnkit lab prune``).

The experiment of Michel, Levy & Neubig (2019), figure 3, on a model trained here:

1. train a translation model (the translate app's recipe) or load one;
2. head importance ``I_h = E |dL/dxi_h|`` on training batches, l2-normalized per
   attention module (:func:`~attnkit.lab.importance.head_importance`);
3. switch heads off (gates at 0) in steps of ``step_fraction`` of the heads,
   least important first, and score validation BLEU after each step; the same with
   a random order (the control), and with encoder self-attention heads only
   (the setting of Voita et al., 2019);
4. at each step of the importance order, remove the heads for real
   (:meth:`~attnkit.nn.MultiHeadAttention.prune_heads`), check the pruned model
   translates exactly as the gated one, and time its decoding.

Example:
    >>> PruneConfig(step_fraction=0.25).fractions()
    [0.0, 0.25, 0.5, 0.75]
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..apps.translate.batching import collate
from ..apps.translate.evaluate import score, translate_batch
from ..checkpoint import write_atomic
from .importance import attention_modules, head_importance, prune_model, pruning_order, set_gates
from .sweep import SweepConfig, SweepPoint, prepare_corpus, train_model, valid_loss

__all__ = ["PruneConfig", "run_pruning", "forward_speedup", "RESULTS_NAME"]

RESULTS_NAME = "results.json"
Report = Callable[[str], None]  # a line saying what runs now


@dataclass(frozen=True)
class PruneConfig:
    """The model to train, the data for importance and BLEU, and the pruning steps."""

    corpus: str = "numbers-dates"  # gettext | numbers-dates | tsv:PATH
    pair: str | None = "en-de"  # language pair
    d_model: int = 64  # model width
    num_heads: int = 8  # heads per attention module
    layers: int = 2  # encoder layers = decoder layers
    steps: int = 1500  # training updates
    seed: int = 0  # initialization and batch order
    max_tokens: int = 1024  # padded tokens per batch
    lr_scale: float = 0.25  # learning-rate multiplier of the schedule (as SweepConfig)
    vocab_size: int = 1000  # joint BPE vocabulary
    corpus_size: int | None = None  # pairs generated / kept (None: the corpus default)
    importance_sentences: int = 512  # training pairs the importance is averaged over
    valid_sentences: int = 300  # validation pairs decoded for BLEU
    step_fraction: float = 0.1  # share of all heads pruned per step (Michel et al.: 10%)
    out_dir: str = "out/lab/pruning"  # results.json, corpus/, the trained model's run

    def __post_init__(self) -> None:
        if not 0 < self.step_fraction < 1:
            raise ValueError(f"PruneConfig: step_fraction must be in (0, 1), got {self.step_fraction!r}")

    def fractions(self) -> list[float]:
        """0, step, 2 step, ... below 1."""
        n = int(round(1 / self.step_fraction))
        return [round(i * self.step_fraction, 4) for i in range(n) if i * self.step_fraction < 1 - 1e-9]

    def sweep_config(self) -> SweepConfig:
        return SweepConfig(corpus=self.corpus, pair=self.pair, sweeps=("heads",), seeds=1, steps=self.steps,
                           d_model=self.d_model, num_heads=self.num_heads, layers=self.layers,
                           max_tokens=self.max_tokens, vocab_size=self.vocab_size, corpus_size=self.corpus_size,
                           lr_scale=self.lr_scale,
                           valid_sentences=self.valid_sentences, out_dir=self.out_dir)  # fmt: skip


def run_pruning(config: PruneConfig, *, report: Report | None = None, extra: dict | None = None) -> dict:
    """Train, rank heads, prune step by step; write and return ``OUT/results.json``."""
    say = report or (lambda line: None)
    sweep = config.sweep_config()
    run = prepare_corpus(sweep)
    point = SweepPoint("heads", f"h={config.num_heads}", config.d_model, config.num_heads,
                       config.d_model // config.num_heads, config.layers, 4 * config.d_model)  # fmt: skip
    say(f"training {point.key} for {config.steps} updates")
    model, trained = train_model(point, config.seed, run, sweep)
    model.eval()
    say(f"head importance on {config.importance_sentences} training pairs")
    batches = _batches(run, config.importance_sentences)
    importance = head_importance(model, batches, _loss)
    valid = list(run.valid[: config.valid_sentences])
    curves = {}
    for name, order in _orders(model, importance, config.seed).items():
        say(f"pruning curve: {name}")
        curves[name] = _curve(model, order, valid, run, config, physical=name == "importance, all heads")
    say("timing the forward pass of the really pruned models")
    speed = forward_speedup(model, _orders(model, importance, config.seed)["importance, all heads"],
                            config.fractions(), _batches(run, config.valid_sentences, batch_size=64, split="valid"))
    heads_total = sum(m.num_heads for m in attention_modules(model).values())
    doc = {**(extra or {}), "config": dataclasses.asdict(config),
           "model": {**point.config(run.tokenizer.vocab_size).to_dict(), "heads_total": heads_total},
           "training": trained,
           "importance": {k: [round(float(x), 5) for x in v] for k, v in importance.items()}, "curves": curves,
           "forward_speed": speed, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    write_atomic(Path(config.out_dir) / RESULTS_NAME, json.dumps(doc, indent=1) + "\n")
    return doc


def _loss(model, batch) -> torch.Tensor:
    """Mean cross-entropy per target token (no label smoothing): the L of the importance gradient."""
    src, tgt = batch
    logits = model(src, tgt[:, :-1])  # (B, T, V)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=0)


def _batches(run, sentences: int, batch_size: int = 32, split: str = "train") -> list[tuple[torch.Tensor, ...]]:
    tok = run.tokenizer
    pairs = list((run.train if split == "train" else run.valid)[:sentences])
    examples = list(zip(tok.encode_batch([s for s, _ in pairs]), tok.encode_batch([t for _, t in pairs]), strict=True))
    return [collate(examples[i : i + batch_size], pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id)
            for i in range(0, len(examples), batch_size)]  # fmt: skip


def forward_speedup(model, order: list[tuple[str, int]], fractions: list[float], batches, *, repeats: int = 7
                    ) -> list[dict]:  # fmt: skip
    """Teacher-forced forward time of ``model`` with the first ``fraction`` of ``order`` removed, vs unpruned.

    For each fraction, the pruned copy and the unpruned model are timed alternately
    ``repeats`` times over ``batches`` (no gradients); the minimum of each is kept, the
    least disturbed by other processes. Returns ``{fraction, heads_removed, seconds,
    unpruned_seconds, speedup}`` rows. The time depends on the shapes only, not on the weights.
    """
    scope = len(order) + len({name for name, _ in order})
    rows = []
    model.eval()
    for fraction in fractions:
        n = min(len(order), int(round(fraction * scope)))
        pruned = copy.deepcopy(model)
        prune_model(pruned, order[:n])
        best = {"pruned": float("inf"), "full": float("inf")}
        with torch.no_grad():
            for _ in range(repeats):
                for name, m in (("pruned", pruned), ("full", model)):
                    started = time.perf_counter()
                    for src, tgt in batches:
                        m(src, tgt[:, :-1])  # (B, T, V)
                    best[name] = min(best[name], time.perf_counter() - started)
        rows.append({"fraction": round(n / scope, 4), "heads_removed": n, "seconds": round(best["pruned"], 4),
                     "unpruned_seconds": round(best["full"], 4),
                     "speedup": round(best["full"] / best["pruned"], 3)})  # fmt: skip
    return rows


def _orders(model, importance: dict, seed: int) -> dict[str, list[tuple[str, int]]]:
    """The three pruning orders: by importance over all heads, a random order, encoder self-attention only."""
    everything = pruning_order(importance)
    shuffled = list(everything)
    random.Random(seed).shuffle(shuffled)
    encoder = [name for name in importance if name.startswith("encoder.")]
    return {"importance, all heads": everything, "random order, all heads": shuffled,
            "importance, encoder self-attention only": pruning_order(importance, modules=encoder)}  # fmt: skip


def _curve(model, order: list[tuple[str, int]], valid, run, config: PruneConfig, *, physical: bool) -> list[dict]:
    """BLEU (and, with ``physical``, the really pruned model's BLEU, size and speed) at each fraction."""
    total = sum(m.num_heads for m in attention_modules(model).values())
    scope = len(order) + sum(1 for _ in {name for name, _ in order})  # heads in the curve's modules (keep 1 each)
    points = []
    for fraction in config.fractions():
        n = min(len(order), int(round(fraction * scope)))
        off = order[:n]
        set_gates(model, off)
        row = {"fraction": round(n / scope, 4), "heads_pruned": n, "heads_in_scope": scope, "heads_total": total,
               **_score(model, valid, run)}  # fmt: skip
        for m in attention_modules(model).values():
            m.head_gates = None
        if physical:
            pruned = copy.deepcopy(model)
            prune_model(pruned, off)
            row["pruned"] = _score(pruned, valid, run)
            row["pruned"]["params"] = sum(p.numel() for p in pruned.parameters())
        points.append(row)
    return points


def _score(model, valid, run) -> dict:
    tok = run.tokenizer
    sources = [s for s, _ in valid]
    best = float("inf")
    for _ in range(2):  # decoding time: the faster of two passes (less noise from other processes)
        started = time.perf_counter()
        hypotheses = translate_batch(model, tok, sources, beam_size=1)
        best = min(best, time.perf_counter() - started)
    scores = score(hypotheses, [t for _, t in valid])
    generated = sum(len(ids) + 1 for ids in tok.encode_batch(hypotheses))
    return {"bleu": scores.bleu, "chrf": scores.chrf, "loss": round(valid_loss(model, run, valid), 4),
            "decode_seconds": round(best, 3), "decode_tokens_per_s": round(generated / best, 1),
            "hypotheses_sha": _digest(hypotheses)}  # fmt: skip


def _digest(texts: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
