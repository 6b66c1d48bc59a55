"""The attention explorer's pages, timed and photographed in headless Chromium (README screenshots, issue 16).

    PYTHONPATH=src python benchmarks/explorer.py --translate-model DIR \
        [--long-text /usr/share/common-licenses/GPL-3 | --long PAGE.html] --out benchmarks/results/explorer

Builds the pages (MiniLM on the example sentence, SmolLM2 with 8 generated tokens, a
translation model's encoder/decoder/cross-attention; optionally a prebuilt long page),
opens each in Debian's chromium through Playwright, measures in the page how long the
first view took (``data-ready-ms``: navigation start to the end of the explorer's
script) and how long each interaction takes (event dispatched and handled, in-page
``performance.now()``), and writes one PNG per view plus ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SENTENCE = "The animal didn't cross the street because it was too tired"
CLICK = """([sel, n]) => { const els = document.querySelectorAll(sel); const e = els[n || 0];
  const t = performance.now(); e.dispatchEvent(new MouseEvent('click', {bubbles: true}));
  return performance.now() - t; }"""
HOVER = """([sel]) => { const e = document.querySelector(sel); const t = performance.now();
  e.dispatchEvent(new MouseEvent('mouseover', {bubbles: true})); e.dispatchEvent(new MouseEvent('mousemove',
  {bubbles: true})); return performance.now() - t; }"""


def build_pages(args) -> dict[str, tuple[Path, float]]:
    import torch

    from attnkit.apps.inspect import explore_text
    from attnkit.apps.translate import Translator
    from attnkit.apps.translate.alignment import explore_translation

    torch.set_num_threads(1)
    out: dict[str, tuple[Path, float]] = {}
    explore_text(SENTENCE, model="minilm", layers=[0])  # load the model once: the timings are the page's
    t = time.perf_counter()
    page = explore_text(SENTENCE, model="minilm")
    out["minilm"] = (page.save(args.work / "minilm.html"), time.perf_counter() - t)
    explore_text("Hi", model="smollm2", layers=[0])
    t = time.perf_counter()
    page = explore_text("The capital of France is Paris. The capital of Germany is", model="smollm2", generate=8)
    out["smollm2"] = (page.save(args.work / "smollm2.html"), time.perf_counter() - t)
    if args.translate_model:
        translator = Translator.load(args.translate_model)
        t = time.perf_counter()
        page = explore_translation(translator.model, translator.tokenizer, "Friday, March 5, 2027")
        out["translation"] = (page.save(args.work / "translation.html"), time.perf_counter() - t)
    if args.long_text:
        from attnkit.apps.summarize.models import chat_model

        tokenizer = chat_model().tokenizer
        ids = tokenizer.encode(args.long_text.read_text(encoding="utf-8"), add_special_tokens=False).ids
        text = tokenizer.decode(ids[: args.long_tokens])
        t = time.perf_counter()
        page = explore_text(text, model="smollm2")
        args.long = page.save(args.work / f"smollm2-{args.long_tokens}.html")
        out["long"] = (args.long, time.perf_counter() - t)
    elif args.long:
        out["long"] = (args.long, float("nan"))
    return out


def shoot(browser, path: Path, steps: list, pictures: Path, name: str) -> dict:
    """Open ``path``, run ``steps`` [(kind, selector, picture or None)], return timings."""
    context = browser.new_context(viewport={"width": 1180, "height": 1000}, device_scale_factor=1)
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    t = time.perf_counter()
    page.goto(path.resolve().as_uri())
    wall = time.perf_counter() - t
    ready = float(page.get_attribute(".ax-root", "data-ready-ms"))
    timings: dict = {"goto_wall_ms": round(1000 * wall, 1), "ready_ms": ready, "bytes": path.stat().st_size}
    for kind, selector, picture in steps:
        if kind == "click":
            timings[f"click {selector}"] = round(page.evaluate(CLICK, [selector, 0]), 2)
        elif kind == "hover":
            timings[f"hover {selector}"] = round(page.evaluate(HOVER, [selector]), 2)
        elif kind == "select":
            page.select_option(".ax-layer", selector)
        elif kind == "scale":
            page.select_option(".ax-scale", selector)
        if picture:
            page.locator(".ax-root").screenshot(path=str(pictures / f"{name}-{picture}.png"))
    timings["console_errors"] = errors
    timings["requests_beyond_the_file"] = [u for u in requests if u != path.resolve().as_uri()]
    context.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/explorer"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/explorer-pages"))
    parser.add_argument("--translate-model", type=Path)
    parser.add_argument("--long", type=Path, help="a prebuilt page of ~2,000 tokens to time and photograph")
    parser.add_argument("--long-text", type=Path, metavar="FILE",
                        help="build the long page here: SmolLM2 on the first --long-tokens tokens of FILE "
                             "(minutes: 209 s for 2,000 tokens at load ~10)")
    parser.add_argument("--long-tokens", type=int, default=2000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    pages = build_pages(args)
    from playwright.sync_api import sync_playwright

    plans = {
        "minilm": [("select", "2", None), ("click", '.ax-tok[data-side="q"][data-i="10"]', "head"),
                   ("click", '.ax-tab[data-view="model"]', "model"),
                   ("click", '.ax-thumb[data-layer="2"][data-head="3"]', None),
                   ("hover", '.ax-cell[data-q="9"][data-k="5"]', "zoom"),
                   ("click", '.ax-tab[data-view="stats"]', None), ("click", 'th[data-key="distance"]', "stats")],
        "smollm2": [("select", "5", None), ("click", '.ax-tab[data-view="gen"]', None), ("click", ".ax-next", None),
                    ("click", ".ax-next", None), ("click", ".ax-next", "generation"),
                    ("click", '.ax-tab[data-view="model"]', None),
                    ("click", '.ax-thumb[data-layer="5"][data-head="1"]', "causal")],
        "translation": [("click", '.ax-sec[data-sec="2"]', None), ("click", '.ax-tok[data-side="q"][data-i="2"]',
                                                                          "cross")],
        "long": [("select", "3", None), ("click", '.ax-tok[data-side="q"][data-i="24"]', "head"),
                 ("click", '.ax-tab[data-view="model"]', "model"), ("scale", "sqrt", None),
                 ("click", '.ax-thumb[data-layer="3"][data-head="0"]', "zoom")],
    }  # fmt: skip
    results: dict = {"command": "PYTHONPATH=src python benchmarks/explorer.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None), "pages": {}}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        results["chromium"] = browser.version
        for name, (path, build_s) in pages.items():
            timings = shoot(browser, path, plans[name], args.out, name)
            results["pages"][name] = {"build_s": round(build_s, 3), **timings}
        browser.close()
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
