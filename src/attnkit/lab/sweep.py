"""Equal-budget sweeps of the Transformer's shape on a translation corpus (``attnkit lab heads``).

The three sweeps mirror rows (A), (B) and (C) of "Attention Is All You Need", table 3:

* ``heads`` (A): ``num_heads`` in {1, 2, 4, 8, 16, 32} at fixed ``d_model``, ``d_k = d_model / h``;
* ``head-dim`` (B): the per-head width reduced at fixed ``num_heads`` (attnkit's
  ``head_dim`` sets d_k and d_v together; the paper changed d_k alone);
* ``shape`` (C): ``d_model`` and the number of layers at a fixed ``head_dim``.

Every run of every point trains for the same number of updates on the same batches
(the batch of step s is a function of the corpus and the seed only, so all points see
the same tokens), with the translate app's recipe
(:func:`~attnkit.apps.translate.train.translation_trainer`: label smoothing, Adam,
warm-up, clipping, weight averaging). Each run is then scored on the validation split:
greedy BLEU and chrF, teacher-forced loss per target token, and timed (training and
decoding tokens per second). Runs are appended to ``results.json`` (atomically), so a
sweep resumes where it stopped.

Example:
    >>> [p.label for p in sweep_points("heads", d_model=64)]
    ['h=1', 'h=2', 'h=4', 'h=8', 'h=16', 'h=32']
    >>> [(p.num_heads, p.d_head) for p in sweep_points("head-dim", d_model=64)]
    [(4, 16), (4, 8), (4, 4)]
    >>> [(p.d_model, p.layers) for p in sweep_points("shape", d_model=64, layers=2)]
    [(32, 2), (64, 2), (128, 2), (64, 1), (64, 4)]
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..apps.translate.batching import collate
from ..apps.translate.evaluate import score, translate_batch
from ..apps.translate.run import RunFiles, open_run, prepare_run
from ..apps.translate.train import TranslationTrainConfig, translation_trainer
from ..checkpoint import write_atomic
from ..nn import Transformer, TransformerConfig

__all__ = ["SWEEPS", "SweepPoint", "SweepConfig", "sweep_points", "train_point", "run_sweep", "prepare_corpus",
           "estimate_steps", "train_model", "validate", "valid_loss", "RESULTS_NAME"]  # fmt: skip

SWEEPS = ("heads", "head-dim", "shape")
RESULTS_NAME = "results.json"
Progress = Callable[[int, int, str], None]  # (runs done, runs planned, what runs now)


@dataclass(frozen=True)
class SweepPoint:
    """One model shape of a sweep (encoder and decoder have ``layers`` layers each)."""

    sweep: str  # "heads" | "head-dim" | "shape"
    label: str  # what varies, e.g. "h=8" or "d_k=4" or "N=4"
    d_model: int  # residual width
    num_heads: int  # heads per attention layer
    d_head: int  # d_k = d_v per head
    layers: int  # encoder layers = decoder layers
    d_ff: int  # feed-forward width (4 d_model)

    @property
    def key(self) -> str:
        """A name unique over all sweeps, e.g. ``d64-h8-k8-N2``."""
        return f"d{self.d_model}-h{self.num_heads}-k{self.d_head}-N{self.layers}"

    def config(self, vocab_size: int, dropout: float = 0.1) -> TransformerConfig:
        """The :class:`TransformerConfig` (pre-LN, tied embeddings, as the translate app's tiny preset)."""
        return TransformerConfig(vocab_size=vocab_size, d_model=self.d_model, num_heads=self.num_heads,
                                 head_dim=self.d_head, d_ff=self.d_ff, num_encoder_layers=self.layers,
                                 num_decoder_layers=self.layers, dropout=dropout, tie_embeddings=True)  # fmt: skip


def sweep_points(sweep: str, *, d_model: int = 64, layers: int = 2, num_heads: int = 4) -> list[SweepPoint]:
    """The points of ``sweep`` around the base shape ``(d_model, num_heads, layers)``."""
    if sweep not in SWEEPS:
        raise ValueError(f"sweep_points(): sweep must be one of {SWEEPS}, got {sweep!r}")
    base_head = d_model // num_heads

    def point(label: str, d: int, h: int, k: int, n: int) -> SweepPoint:
        return SweepPoint(sweep, label, d, h, k, n, 4 * d)

    if sweep == "heads":
        return [point(f"h={h}", d_model, h, d_model // h, layers) for h in (1, 2, 4, 8, 16, 32) if d_model % h == 0]
    if sweep == "head-dim":
        return [point(f"d_k={k}", d_model, num_heads, k, layers) for k in (base_head, base_head // 2, base_head // 4)
                if k >= 1]  # fmt: skip
    widths = [point(f"d_model={d}", d, d // base_head, base_head, layers) for d in (d_model // 2, d_model, 2 * d_model)]
    depths = [point(f"N={n}", d_model, num_heads, base_head, n) for n in (max(1, layers // 2), 2 * layers)]
    return widths + depths


@dataclass(frozen=True)
class SweepConfig:
    """The corpus, the sweeps and the budget of every run (the same for every point)."""

    corpus: str = "gettext"  # gettext | numbers-dates | tsv:PATH
    pair: str | None = "en-fr"  # language pair; None = the corpus default
    sweeps: tuple[str, ...] = SWEEPS  # which of SWEEPS to run
    seeds: int = 3  # seeds per point (init, dropout and batch order)
    steps: int = 300  # optimizer updates per run
    d_model: int = 64  # base width (heads and head-dim sweeps; the middle of the shape sweep)
    num_heads: int = 4  # base heads (head-dim and shape sweeps)
    layers: int = 2  # base depth
    max_tokens: int = 1024  # padded tokens per batch
    warmup_steps: int = 100  # linear warm-up of the inverse-square-root schedule
    lr_scale: float = 0.25  # multiplies d_model^-0.5 * min(step^-0.5, step warmup^-1.5); see below
    corpus_size: int | None = None  # pairs kept (None: all)
    vocab_size: int | None = None  # joint BPE vocabulary; None = 1000 for numbers-dates, else 2000 (small models)
    valid_sentences: int = 200  # validation pairs decoded for BLEU/chrF and scored for loss
    out_dir: str = "out/lab/heads"  # results.json, corpus/, runs/
    # lr_scale 0.25 (peak 0.003 at d_model 64), measured on numbers-dates en-de, d_model 64, 4 heads, 400 updates
    # of 1024 tokens: lr_scale 0.25 -> 73.8 BLEU, 0.5 -> 63.1, 1.0 -> 0.9 (diverged); one seed each

    def __post_init__(self) -> None:
        if not self.lr_scale > 0:
            raise ValueError(f"SweepConfig: lr_scale must be > 0, got {self.lr_scale!r}")
        unknown = [s for s in self.sweeps if s not in SWEEPS]
        if unknown or not self.sweeps:
            raise ValueError(f"SweepConfig: sweeps must be a non-empty subset of {SWEEPS}, got {self.sweeps!r}")
        for name in ("seeds", "steps", "d_model", "num_heads", "layers", "max_tokens", "warmup_steps",
                     "valid_sentences"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SweepConfig: {name} must be a positive int, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"SweepConfig: d_model={self.d_model} must be divisible by num_heads={self.num_heads}")

    def points(self) -> list[SweepPoint]:
        """Every point of the chosen sweeps, in order (a shape shared by two sweeps appears in both)."""
        return [p for s in self.sweeps
                for p in sweep_points(s, d_model=self.d_model, layers=self.layers, num_heads=self.num_heads)]

    def corpus_settings(self) -> dict:
        """The settings :func:`~attnkit.apps.translate.run.prepare_run` needs (the corpus and its seed 0)."""
        vocab = self.vocab_size or (1000 if self.corpus == "numbers-dates" else 2000)
        return {"corpus": self.corpus, "pair": self.pair, "seed": 0, "corpus_size": self.corpus_size,
                "vocab_size": vocab}  # fmt: skip


def prepare_corpus(config: SweepConfig) -> RunFiles:
    """Split the corpus and train the tokenizer once (``OUT/corpus``); every run shares them."""
    directory = Path(config.out_dir) / "corpus"
    if not (directory / "run.json").is_file():
        prepare_run(directory, config.corpus_settings())
    run = open_run(directory)
    if run.info["settings"] != config.corpus_settings():
        raise ValueError(f"--out {config.out_dir!r}: its corpus/ was prepared with {run.info['settings']}, not "
                         f"{config.corpus_settings()}; choose another --out")  # fmt: skip
    return run


def train_model(point: SweepPoint, seed: int, run: RunFiles, config: SweepConfig, *, steps: int | None = None
                ) -> tuple[Transformer, dict]:  # fmt: skip
    """Train one shape with one seed (the weight average is returned); also ``{steps, tokens, seconds}``."""
    steps = steps or config.steps
    directory = Path(config.out_dir) / "runs" / f"{point.key}-s{seed}"
    settings = TranslationTrainConfig(corpus=config.corpus, pair=config.pair, seed=seed, steps=steps,
                                      max_tokens=config.max_tokens, warmup_steps=config.warmup_steps,
                                      lr_scale=config.lr_scale, eval_every=0, checkpoint_every=10**9,
                                      log_every=max(1, steps // 10), out_dir=str(directory))  # fmt: skip
    torch.manual_seed(seed)
    model = Transformer(point.config(run.tokenizer.vocab_size))
    trainer = translation_trainer(model, dataclasses.replace(run, directory=directory), settings)
    started = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - started
    shutil.rmtree(directory / "checkpoints", ignore_errors=True)  # the sweep keeps scores, not weights
    (directory / "latest.json").unlink(missing_ok=True)  # (history.jsonl stays)
    if trainer.ema is not None:
        trainer.ema.copy_to(model)  # score the weight average, as train_translation saves it
    return model, {"steps": trainer.step, "tokens": trainer.tokens, "seconds": round(seconds, 2)}


def train_point(point: SweepPoint, seed: int, run: RunFiles, config: SweepConfig, *, steps: int | None = None) -> dict:
    """Train one shape with one seed; return its scores, size and speeds (plain types for JSON)."""
    model, trained = train_model(point, seed, run, config, steps=steps)
    scores = validate(model, run, config.valid_sentences)
    return {"sweep": point.sweep, "label": point.label, "key": point.key, "seed": seed, "steps": trained["steps"],
            "params": sum(p.numel() for p in model.parameters()), "train_tokens": trained["tokens"],
            "train_seconds": trained["seconds"],
            "train_tokens_per_s": round(trained["tokens"] / trained["seconds"], 1), **scores,
            "shape": dataclasses.asdict(point)}  # fmt: skip


def validate(model: Transformer, run: RunFiles, sentences: int) -> dict:
    """Greedy BLEU/chrF, decoding tokens/s and teacher-forced loss on the first ``sentences`` validation pairs."""
    pairs = list(run.valid[:sentences])
    tok = run.tokenizer
    started = time.perf_counter()
    hypotheses = translate_batch(model, tok, [s for s, _ in pairs], beam_size=1)
    decode_seconds = time.perf_counter() - started
    generated = sum(len(ids) + 1 for ids in tok.encode_batch(hypotheses))  # + EOS: the tokens decoding produced
    scores = score(hypotheses, [t for _, t in pairs])
    return {"valid_bleu": scores.bleu, "valid_chrf": scores.chrf, "valid_loss": round(valid_loss(model, run, pairs), 4),
            "decode_tokens_per_s": round(generated / decode_seconds, 1)}  # fmt: skip


def valid_loss(model: Transformer, run: RunFiles, pairs, batch_size: int = 64) -> float:
    """Mean cross-entropy (nats, no label smoothing) per target token, teacher forced."""
    tok = run.tokenizer
    examples = list(zip(tok.encode_batch([s for s, _ in pairs]), tok.encode_batch([t for _, t in pairs]), strict=True))
    total, tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            src, tgt = collate(examples[start : start + batch_size], pad_id=tok.pad_id, bos_id=tok.bos_id,
                               eos_id=tok.eos_id)  # (B, S), (B, T+1)  # fmt: skip
            logits = model(src, tgt[:, :-1])  # (B, T, V)
            target = tgt[:, 1:]  # (B, T)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=tok.pad_id,
                                                     reduction="sum")  # (B*T, V) -> ()  # fmt: skip
            total, tokens = total + float(loss), tokens + int((target != tok.pad_id).sum())
    return total / max(tokens, 1)


def estimate_steps(config: SweepConfig, run: RunFiles, minutes: float, *, probe_steps: int = 6) -> dict:
    """The updates per run that fit the whole sweep in ``minutes``: each shape timed for ``probe_steps`` updates.

    Returns ``{"steps", "seconds_per_step" {key: s}, "eval_seconds" {key: s}}``. Each probe
    also times the validation pass of its (untrained) model, which decodes up to the
    length limit: an over-estimate of a trained model's, so the sweep ends early rather than late.
    """
    per_step, per_eval = {}, {}
    probe = dataclasses.replace(config, out_dir=str(Path(config.out_dir) / "probe"))
    for point in {p.key: p for p in config.points()}.values():
        started = time.perf_counter()
        result = train_point(point, 0, run, probe, steps=probe_steps)
        per_step[point.key] = result["train_seconds"] / probe_steps
        per_eval[point.key] = time.perf_counter() - started - result["train_seconds"]
    shutil.rmtree(probe.out_dir, ignore_errors=True)
    runs = list(per_step) * config.seeds  # a shape shared by two sweeps is trained once per seed
    budget = 60 * minutes - sum(per_eval[k] for k in runs)
    steps = int(budget / sum(per_step[k] for k in runs)) if budget > 0 else 0
    return {"steps": steps, "seconds_per_step": {k: round(v, 4) for k, v in per_step.items()},
            "eval_seconds": {k: round(v, 2) for k, v in per_eval.items()}}  # fmt: skip


def run_sweep(config: SweepConfig, *, resume: bool = False, progress: Progress | None = None,
              extra: dict | None = None) -> dict:  # fmt: skip
    """Train every (point, seed) not yet in ``OUT/results.json``; return the results document.

    The order is sweep by sweep, and within a sweep seed by seed. A shape that appears
    in two sweeps (the base model) is trained once per seed and listed under both.
    ``results.json`` is rewritten atomically after every run.
    """
    path = Path(config.out_dir) / RESULTS_NAME
    doc = _open_results(path, config, resume, extra or {})
    run = prepare_corpus(config)
    done = {(r["key"], r["seed"]) for r in doc["runs"]}
    todo: list[tuple[SweepPoint, int]] = []  # sweep by sweep, seed by seed: a cut-short run keeps whole sweeps
    for sweep in config.sweeps:
        for seed in range(config.seeds):
            for p in sweep_points(sweep, d_model=config.d_model, layers=config.layers, num_heads=config.num_heads):
                if (p.key, seed) not in done and (p.key, seed) not in {(q.key, s) for q, s in todo}:
                    todo.append((p, seed))
    total = len(done) + len(todo)
    for i, (point, seed) in enumerate(todo):
        if progress:
            progress(len(done) + i, total, f"{point.sweep} {point.label} seed {seed}")
        doc["runs"].append(train_point(point, seed, run, config))
        write_atomic(path, json.dumps(doc, indent=1) + "\n")
    if progress:
        progress(total, total, "done")
    return doc


def _open_results(path: Path, config: SweepConfig, resume: bool, extra: dict) -> dict:
    wanted = {"config": dataclasses.asdict(config), **extra}
    if path.is_file():
        if not resume:
            raise FileExistsError(f"--out {str(path.parent)!r} already holds {RESULTS_NAME}; add --resume to "
                                  "continue that sweep, or choose another --out")  # fmt: skip
        doc = json.loads(path.read_text(encoding="utf-8"))
        old, new = doc["config"], wanted["config"]
        changed = {k for k in new if k not in ("sweeps", "seeds", "out_dir") and old.get(k) != new[k]}
        if changed:
            raise ValueError(f"--resume: the sweep in {str(path.parent)!r} used other settings for "
                             f"{sorted(changed)} ({ {k: old.get(k) for k in sorted(changed)} }); runs of different "
                             "budgets cannot be compared; choose another --out")  # fmt: skip
        doc["config"] = {**old, "sweeps": sorted(set(old["sweeps"]) | set(new["sweeps"])), "seeds": max(
            old["seeds"], new["seeds"])}  # fmt: skip
        return doc
    path.parent.mkdir(parents=True, exist_ok=True)
    return {**wanted, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": []}
