"""``attnkit translate``: train, evaluate and use a translation model (a thin CLI over the library).

::

    attnkit translate train [--corpus numbers-dates|gettext|tsv:PATH] [--pair en-de] [--size tiny|small|base]
                            [--minutes N | --steps N] [--out DIR] [--resume]
    attnkit translate eval  --model DIR [--split test|valid] [--limit N] [--beam N]
    attnkit translate demo  [--steps 1400] [--minutes CAP] [--out DIR]
    attnkit translate data  [--corpus ...] [--pair ...]          # the corpus summary, no training
    attnkit translate --model DIR "text" ["text" ...]           # or one sentence per line on stdin
                            [--beam N] [--plot-attention FILE.png]

The first positional word is an action only when it is exactly ``train``, ``eval``,
``demo`` or ``data``; anything else is text to translate (to translate one of those
four words alone, give it on stdin). Options of one action are refused by the others.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .render import TimeBar, console, print_corpus, print_eval, print_train_result, safe

ACTIONS = ("train", "eval", "demo", "data")
#: option dest -> the actions that accept it ("text" = translating sentences)
_OWNERS = {
    "corpus": ("train", "data"), "pair": ("train", "data", "demo"), "size": ("train", "demo"),
    "minutes": ("train", "demo"), "steps": ("train", "demo"), "out": ("train", "demo"), "resume": ("train",),
    "seed": ("train", "data"), "corpus_size": ("train", "data"), "max_tokens": ("train",),
    "eval_every": ("train",), "model": ("eval", "text"), "split": ("eval",), "limit": ("eval",),
    "beam": ("eval", "text"), "plot_attention": ("text",),
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "attnkit translate [train|eval|demo|data] [options] | attnkit translate --model DIR [TEXT ...]"
    parser.epilog = (
        "actions: train (a model on a corpus), eval (BLEU/chrF/exact match on the held-out split), demo "
        "(train + eval + samples + alignment picture in a few minutes), data (corpus summary). Without an "
        "action: translate TEXT arguments, or stdin lines, with --model."
    )
    parser.add_argument("text", nargs="*", help="action (train|eval|demo|data) or sentences to translate")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    train = parser.add_argument_group("train / data / demo")
    train.add_argument("--corpus", default=None, help="numbers-dates (default) | gettext | tsv:PATH")
    train.add_argument("--pair", default=None, help="language pair, e.g. en-de (default), en-fr")
    train.add_argument("--size", default=None, choices=("tiny", "small", "base"), help="model size (default tiny)")
    train.add_argument("--minutes", type=float, default=None, help="wall-clock training budget (demo: a cap; "
                       "stopping early leaves the model under-trained)")  # fmt: skip
    train.add_argument("--steps", type=int, default=None, help="optimizer updates in total (default: train 2000, "
                       "demo 1400)")  # fmt: skip
    train.add_argument("--out", default=None, help="run directory (default runs/translate)")
    train.add_argument("--resume", action="store_true", default=None, help="continue the run in --out")
    train.add_argument("--seed", type=int, default=None, help="corpus split, init and batch order (default 0)")
    train.add_argument("--corpus-size", type=int, default=None, help="pairs to generate / keep")
    train.add_argument("--max-tokens", type=int, default=None, help="padded tokens per global batch")
    train.add_argument("--eval-every", type=int, default=None, help="steps between validation BLEU (default 250)")
    use = parser.add_argument_group("eval / translate")
    use.add_argument("--model", default=None, help="a model directory, or a training run directory")
    use.add_argument("--split", default=None, choices=("test", "valid"), help="eval: which split (default test)")
    use.add_argument("--limit", type=int, default=None, help="eval: score only the first N pairs")
    use.add_argument("--beam", type=int, default=None, help="beam size (default 4; 1 = greedy)")
    use.add_argument("--plot-attention", default=None, metavar="FILE.png", help="write the cross-attention "
                     "alignment of the first sentence")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    action, texts = _split_action(args.text)
    _check_options(args, action)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return {"train": _train, "eval": _eval, "demo": _demo, "data": _data, "text": _translate}[action](args, texts)


def _split_action(words: list[str]) -> tuple[str, list[str]]:
    if words and words[0] in ACTIONS:
        return words[0], words[1:]
    return "text", list(words)


def _check_options(args: argparse.Namespace, action: str) -> None:
    for dest, owners in _OWNERS.items():
        if getattr(args, dest) is not None and action not in owners:
            flag = "--" + dest.replace("_", "-")
            where = " / ".join("translating text" if o == "text" else f"`translate {o}`" for o in owners)
            here = "translating text" if action == "text" else f"`translate {action}`"
            raise ValueError(f"{flag} is an option of {where}, not of {here}; see `attnkit translate --help`")
    if action in ("train", "eval", "demo", "data") and args.text[1:]:
        raise ValueError(f"`translate {action}` takes no text arguments, got {args.text[1:]!r}; options start with --")


# ---------------------------------------------------------------------- actions
def _train(args, _texts) -> int:
    from ...distributed.data_parallel import init_from_env, shutdown

    info = init_from_env()  # under torchrun: join the group (train_translation finds it joined)
    try:
        return _train_here(args, info.is_main)
    finally:
        shutdown(info)


def _train_here(args, main: bool) -> int:
    from .train import TranslationTrainConfig, train_translation

    given = dict(corpus=args.corpus, pair=args.pair, size=args.size, minutes=args.minutes, steps=args.steps,
                 out_dir=args.out, seed=args.seed, corpus_size=args.corpus_size, max_tokens=args.max_tokens,
                 eval_every=args.eval_every, threads=args.threads)  # fmt: skip
    config = TranslationTrainConfig(**{k: v for k, v in given.items() if v is not None})
    out = console(args.json or not main)
    try:
        with TimeBar(config.minutes if config.steps is None else None, enabled=not args.json and main) as bar:
            result = train_translation(config, resume=bool(args.resume), progress=not args.json and main,
                                       report=_reporter(out, bar))  # fmt: skip
    except KeyboardInterrupt:
        if main:
            print(_interrupted(Path(config.out_dir)), file=sys.stderr)
        return 130
    if main:
        print_train_result(result, as_json=args.json)
    return 0


def _interrupted(run_dir: Path) -> str:
    from ...train.state import latest_checkpoint

    saved = latest_checkpoint(run_dir) if run_dir.is_dir() else None
    if saved is None:
        return "interrupted before the first checkpoint; nothing to resume"
    return (f"interrupted: step {saved.name.split('-')[-1].lstrip('0') or 0} is saved in {saved}; continue with "
            f"`attnkit translate train --out {run_dir} --resume`")  # fmt: skip


def _reporter(out, bar: TimeBar):
    def report(event: str, payload) -> None:
        if event == "step":
            bar.update(payload)
        elif event == "corpus":
            print_corpus(payload, out)
        elif event == "eval":
            source, _, hypothesis = payload["example"]
            p = payload
            scores = f"BLEU {p['valid_bleu']:.1f}  chrF {p['valid_chrf']:.1f}  exact {p['valid_exact']:.1f}%"
            out.print(f"step {payload['step']}: valid {scores}   {safe(repr(source))} -> {safe(repr(hypothesis))}")
        elif event == "resumed":
            out.print(f"resumed at step {payload}")

    return report


def _eval(args, _texts) -> int:
    from .evaluate import evaluate
    from .model import Translator, find_model_dir
    from .run import test_pairs_for

    translator = Translator.load(_require_model(args, "eval"))
    split = args.split or "test"
    pairs = test_pairs_for(find_model_dir(args.model), translator.info, split)
    report = evaluate(translator.model, translator.tokenizer, pairs, split=split, beam_size=args.beam or 4,
                      limit=args.limit)  # fmt: skip
    print_eval(report, translator.pair, as_json=args.json)
    return 0


def _demo(args, _texts) -> int:
    from .demo import demo
    from .render import print_demo

    out = console(args.json)
    given = dict(steps=args.steps, minutes=args.minutes, out_dir=args.out, pair=args.pair, size=args.size,
                 threads=args.threads)  # fmt: skip
    chosen = {k: v for k, v in given.items() if v is not None}
    with TimeBar(None, enabled=False) as bar:  # a step count: the Trainer's bar shows steps and ETA
        result = demo(**chosen, progress=not args.json, report=_reporter(out, bar))
    print_demo(result, as_json=args.json)
    return 0


def _data(args, _texts) -> int:
    from .data import load_corpus

    corpus = load_corpus(args.corpus or "numbers-dates", args.pair, seed=args.seed or 0, size=args.corpus_size)
    summary = corpus.summary()
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    else:
        print_corpus(summary, console(False))
    return 0


def _translate(args, texts: list[str]) -> int:
    from .alignment import cross_attention, plot_alignment
    from .model import Translator

    model_dir = _require_model(args, "text")
    if not texts and not sys.stdin.isatty():
        texts = [line.strip() for line in sys.stdin if line.strip()]
    if not texts:
        raise ValueError("no text to translate: pass sentences as arguments, or one sentence per line on stdin")
    translator = Translator.load(model_dir)
    beam = args.beam or 4
    translations = translator.translate(texts, beam_size=beam)
    confidences = translator.confidence(texts, translations)
    picture = None
    if args.plot_attention:
        alignment = cross_attention(translator.model, translator.tokenizer, texts[0], target=translations[0])
        picture = plot_alignment(alignment, args.plot_attention)
    if args.json:
        rows = zip(texts, translations, confidences, strict=True)
        pairs = [{"source": s, "translation": t, **c.to_dict()} for s, t, c in rows]
        doc = {"pair": translator.pair, "beam": beam, "translations": pairs, "alignment_png": picture and str(picture),
               "confidence_check": _confidence_check(translator.calibration)}  # fmt: skip
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return 0
    for source, translation, confidence in zip(texts, translations, confidences, strict=True):
        print(translation, flush=True)
        warning = confidence.warning(source)
        if warning:  # stderr: stdout stays one translation per line for scripts
            print(f"  ^ {warning}", file=sys.stderr, flush=True)
    if picture:
        print(f"alignment: {picture}", file=sys.stderr)
    return 0


def _confidence_check(calibration) -> dict:
    """What the out-of-domain flags mean for this model, or why there are none."""
    if calibration is None:
        return {"available": False, "reason": "this model was saved without a confidence calibration (trained "
                "before attnkit stored one); out_of_domain is null; retrain it to get the check"}  # fmt: skip
    return {"available": True, **calibration.to_dict()}


def _require_model(args, action: str) -> Path:
    if not args.model:
        example = "attnkit translate eval --model runs/translate" if action == "eval" else (
            'attnkit translate --model runs/translate "twenty-one"')  # fmt: skip
        raise ValueError(f"--model DIR is required (a trained model or training run directory), e.g. `{example}`")
    return Path(args.model)
