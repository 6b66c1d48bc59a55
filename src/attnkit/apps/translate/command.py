"""``attnkit translate``: train, evaluate and use a translation model (a thin CLI over the library).

::

    attnkit translate train [--corpus numbers-dates|gettext|tsv:PATH] [--pair en-de] [--size tiny|small|base]
                            [--minutes N | --steps N] [--out DIR] [--resume] [--noise P]
    attnkit translate eval  --model DIR [--split test|valid] [--limit N] [--beam N]
    attnkit translate demo  [--steps 1400] [--minutes CAP] [--out DIR]
    attnkit translate data  [--corpus ...] [--pair ...]          # the corpus summary, no training
    attnkit translate --model DIR "text" ["text" ...]           # or one sentence per line on stdin
                            [--beam N] [--plot-attention FILE.png] [--html OUT.html]

The first positional word (before or after options) is an action when it is exactly
``train``, ``eval``, ``demo`` or ``data`` (a near miss such as ``trian`` is refused with "did you mean");
anything else is text to translate (to translate one of those words, put ``--``
before it, or give it on stdin). Each action has its own options and ``--help``;
an option of another action is refused, naming the action it belongs to.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ...console import literal, status
from .render import TimeBar, console, print_corpus, print_eval, print_train_result

DEFAULT_RUN_DIR = "out/translate"  #: `translate train --out` default; demo: out/translate-demo
#: action -> one line of help; without an action, `attnkit translate` translates text with --model
ACTIONS = {
    "train": "train a translation model on a corpus (resumable; data-parallel under torchrun)",
    "eval": "BLEU, chrF and exact match of a model on its held-out split, beside the copy baseline",
    "demo": "train + eval + samples + alignment picture in a few minutes (what `make demo` runs)",
    "data": "summarize a corpus and its splits, no training",
}
ACTION_NAMES = tuple(ACTIONS)  # kept for callers of the old name


def _options() -> dict[str, tuple[tuple[str, ...], dict]]:
    """Every option: dest -> (flags, add_argument keywords). Defaults are None: the library decides."""
    from ..._argtypes import positive_float, positive_int, unit_interval

    return {
        "corpus": (("--corpus",), dict(metavar="NAME",
                                       help="numbers-dates | gettext | tsv:PATH (default: numbers-dates)")),
        "pair": (("--pair",), dict(metavar="SRC-TGT", help="language pair, e.g. en-fr (default: en-de)")),
        "size": (("--size",), dict(choices=("tiny", "small", "base"), help="model size (default: tiny)")),
        "minutes": (("--minutes",), dict(type=positive_float, metavar="M", help="wall-clock training budget "
                                         "(demo: a cap; stopping early leaves the model under-trained)")),
        "steps": (("--steps",), dict(type=positive_int, metavar="N",
                                     help="optimizer updates in total (default: train 2000, demo 1400)")),
        "out": (("--out",), dict(metavar="DIR", help=f"run directory (default: {DEFAULT_RUN_DIR})")),
        "resume": (("--resume",), dict(action="store_true", default=None, help="continue the run in --out")),
        "seed": (("--seed",), dict(type=int, metavar="S", help="corpus split, init and batch order (default: 0)")),
        "corpus_size": (("--corpus-size",), dict(type=positive_int, metavar="N", help="pairs to generate / keep")),
        "max_tokens": (("--max-tokens",), dict(type=positive_int, metavar="N", help="padded tokens per global batch")),
        "noise": (("--noise",), dict(type=unit_interval, metavar="P", help="augmentation: misspell each source word "
                                     "and change each source's case with probability P, afresh every step "
                                     "(default: 0)")),
        "eval_every": (("--eval-every",), dict(type=int, metavar="N",
                                               help="steps between validation BLEU, 0 = never (default: 250)")),
        "model": (("--model",), dict(metavar="DIR", help="a model directory, or a training run directory, e.g. "
                                                        f"{DEFAULT_RUN_DIR}")),
        "split": (("--split",), dict(choices=("test", "valid"), help="which split (default: test)")),
        "limit": (("--limit",), dict(type=positive_int, metavar="N", help="score only the first N pairs")),
        "beam": (("--beam",), dict(type=positive_int, metavar="N", help="beam size, 1 = greedy (default: 4)")),
        "plot_attention": (("--plot-attention",), dict(
            metavar="FILE.png", help="write the cross-attention alignment of the first sentence")),
        "html": (("--html",), dict(metavar="OUT.html", help="write the interactive attention explorer (encoder, "
                                   "decoder, cross-attention) of the first sentence: one offline file")),
    }  # fmt: skip


#: action (None = translating text) -> its options, in help order
_ACTION_OPTIONS = {
    None: ("model", "beam", "plot_attention", "html"),
    "train": ("corpus", "pair", "size", "minutes", "steps", "out", "resume", "seed", "corpus_size", "max_tokens",
              "noise", "eval_every"),
    "eval": ("model", "split", "limit", "beam"),
    "demo": ("steps", "minutes", "out", "pair", "size"),
    "data": ("corpus", "pair", "seed", "corpus_size"),
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser, action: str | None = None) -> None:
    """Declare the options of ``attnkit translate [ACTION]`` on ``parser``.

    Example:
        >>> import argparse
        >>> parser = argparse.ArgumentParser(prog="attnkit translate eval")
        >>> add_arguments(parser, "eval")
        >>> args = parser.parse_args(["--model", "out/translate", "--beam", "2"])
        >>> args.model, args.beam, args.json
        ('out/translate', 2, False)
    """
    if action is None:
        parser.usage = ("attnkit translate --model DIR [TEXT ...] [options]    (TEXT, or one sentence per line on "
                        "stdin)\n       attnkit translate {train,eval,demo,data} [options]")  # fmt: skip
        parser.add_argument("text", nargs="*", metavar="TEXT", help="sentences to translate (default: stdin lines)")
    options = _options()
    for dest in _ACTION_OPTIONS[action]:
        flags, keywords = options[dest]
        parser.add_argument(*flags, dest=dest, **{"default": None, **keywords})
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch threads (default: torch's choice)")


def run(args: argparse.Namespace) -> int:
    action = args.action or "text"
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    texts = getattr(args, "text", [])
    return {"train": _train, "eval": _eval, "demo": _demo, "data": _data, "text": _translate}[action](args, texts)


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
                 eval_every=args.eval_every, noise=args.noise, threads=args.threads)  # fmt: skip
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
            out.print(literal(f"step {payload['step']}: valid {scores}   {source!r} -> {hypothesis!r}"))
        elif event == "resumed":
            out.print(f"resumed at step {payload}")

    return report


def _eval(args, _texts) -> int:
    from .evaluate import evaluate
    from .model import Translator, find_model_dir
    from .run import test_pairs_for

    model_dir = _require_model(args, "eval")
    with status(f"translate eval: loading the model in {model_dir}"):
        translator = Translator.load(model_dir)
    split = args.split or "test"
    pairs = test_pairs_for(find_model_dir(args.model), translator.info, split)
    n = len(pairs) if args.limit is None else min(args.limit, len(pairs))
    with status(f"translate eval: translating {n} {split} sentences (beam {args.beam or 4}) and scoring them"):
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

    with status(f"translate data: loading the {args.corpus or 'numbers-dates'} corpus"):
        corpus = load_corpus(args.corpus or "numbers-dates", args.pair, seed=args.seed or 0, size=args.corpus_size)
    summary = corpus.summary()
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    else:
        print_corpus(summary, console(False))
    return 0


def _translate(args, texts: list[str]) -> int:
    from .alignment import cross_attention, explore_translation, plot_alignment
    from .model import Translator

    model_dir = _require_model(args, "text")
    if not texts and not sys.stdin.isatty():
        texts = [line.strip() for line in sys.stdin if line.strip()]
    if not texts:
        raise ValueError("no text to translate: pass sentences as arguments, or one sentence per line on stdin")
    with status(f"translate: loading the model in {model_dir}"):
        translator = Translator.load(model_dir)
    beam = args.beam or 4
    with status(f"translate: translating {len(texts)} sentence(s) with beam search (beam {beam})"):
        translations = translator.translate(texts, beam_size=beam)
        confidences = translator.confidence(texts, translations)  # one teacher-forced pass: cheap
    picture = None
    if args.plot_attention:
        with status(f"translate: drawing the cross-attention alignment into {args.plot_attention}"):
            alignment = cross_attention(translator.model, translator.tokenizer, texts[0], target=translations[0])
            picture = plot_alignment(alignment, args.plot_attention)
    explorer = None
    if args.html:
        with status(f"translate: writing the attention explorer into {args.html}"):
            page = explore_translation(translator.model, translator.tokenizer, texts[0], target=translations[0])
            explorer = page.save(args.html)
    if args.json:
        rows = zip(texts, translations, confidences, strict=True)
        pairs = [{"source": s, "translation": t, **c.to_dict()} for s, t, c in rows]
        doc = {"pair": translator.pair, "beam": beam, "translations": pairs, "alignment_png": picture and str(picture),
               "html": explorer and str(explorer),
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
    if explorer:
        print(f"explorer: {explorer}", file=sys.stderr)
    return 0


def _confidence_check(calibration) -> dict:
    """What the out-of-domain flags mean for this model, or why there are none."""
    if calibration is None:
        return {"available": False, "reason": "this model was saved without a confidence calibration (trained "
                "before attnkit stored one); out_of_domain is null; retrain it to get the check"}  # fmt: skip
    return {"available": True, **calibration.to_dict()}


def _require_model(args, action: str) -> Path:
    if not args.model:
        from .demo import DEFAULT_DEMO_DIR

        example = f"attnkit translate eval --model {DEFAULT_RUN_DIR}" if action == "eval" else (
            f'attnkit translate --model {DEFAULT_RUN_DIR} "twenty-one"')  # fmt: skip
        raise ValueError(f"--model DIR is required (a trained model or training run directory), e.g. `{example}`; "
                         f"`translate train` writes {DEFAULT_RUN_DIR}, "
                         f"`translate demo` {DEFAULT_DEMO_DIR}")  # fmt: skip
    return Path(args.model)
