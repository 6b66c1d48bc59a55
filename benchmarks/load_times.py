"""Model load times and QA answer times, each load in a fresh process (a measurement script, not a test).

    python benchmarks/load_times.py [--threads 2] [--skip-direct]

Prints one line per measurement: wall seconds and the process's CPU seconds (on a busy
machine wall time grows with the load, CPU time much less). Loads exclude the
interpreter and ``import torch``; the GGUF cache goes to a fresh temp folder
(``ATTNKIT_CACHE_DIR``), so the first SmolLM2 load converts and the next reads the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[2]))
what = sys.argv[1]
wall, cpu = time.perf_counter(), time.process_time()
if what == "minilm":
    from attnkit.pretrained import SentenceEncoder
    SentenceEncoder.from_pretrained()
elif what in ("smollm2", "smollm2-direct"):
    from attnkit.pretrained import ChatModel
    ChatModel.from_pretrained(cache=what == "smollm2")
elif what == "qa":
    from attnkit.apps.qa.core import answer_many
    context = {"capitals.txt": "Paris is the capital of France. The Seine flows through Paris.\n\n"
                               "Rome is the capital of Italy.\nThe Tiber flows through Rome.\n"}
    questions = ["What is the capital of Italy?", "Which river flows through Rome?",
                 "What is the capital of France?", "Which river flows through Paris?"]
    times = []
    def asked():
        for q in questions:
            times.append((time.perf_counter(), time.process_time()))
            yield q
    rows = []
    for i, a in enumerate(answer_many(asked(), context)):
        w0, c0 = (wall, cpu) if i == 0 else times[i]
        rows.append({"question": a.question, "answer": a.reply, "wall_s": time.perf_counter() - w0,
                     "cpu_s": time.process_time() - c0})
    print(json.dumps(rows))
    sys.exit(0)
print(json.dumps({"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}))
"""


def measure(what: str, threads: int, env: dict) -> object:
    out = subprocess.run([sys.executable, "-c", CHILD, what, str(threads)], env=env, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-direct", action="store_true", help="skip the 25-35 s direct GGUF load")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = os.environ | {"ATTNKIT_CACHE_DIR": cache}
        steps = [("minilm", "MiniLM load"), ("minilm", "MiniLM load (again)"),
                 ("smollm2", "SmolLM2 first load (converts the GGUF)"), ("smollm2", "SmolLM2 load from the cache"),
                 ("smollm2", "SmolLM2 load from the cache (again)")]  # fmt: skip
        if not args.skip_direct:
            steps.append(("smollm2-direct", "SmolLM2 load, GGUF read directly (cache=False)"))
        for what, label in steps:
            r = measure(what, args.threads, env)
            print(f"{label:48s} wall {r['wall_s']:6.2f} s   cpu {r['cpu_s']:6.2f} s", flush=True)
        for i, r in enumerate(measure("qa", args.threads, env)):
            label = "qa: first answer (loads included)" if i == 0 else f"qa: answer {i + 1}"
            print(f"{label:48s} wall {r['wall_s']:6.2f} s   cpu {r['cpu_s']:6.2f} s   {r['answer']!r}", flush=True)


if __name__ == "__main__":
    main()
