"""``attnkit inspect "text"``: heatmaps per layer and head, and per-head distance/entropy tables.

``--html OUT.html`` writes the interactive explorer page instead (head view, model view,
statistics; with ``--model smollm2`` also the generation view of ``--generate N`` tokens).

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="attnkit inspect")
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["hello world", "--layers", "0,-1"])
    >>> args.model, args.layers
    ('minilm', [0, -1])
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..._argtypes import positive_int
from ...console import literal, print_json, status, stdout_console

__all__ = ["add_arguments", "run", "DEFAULT_OUT_DIR"]

DEFAULT_OUT_DIR = Path("out/inspect")  #: relative to the current directory
#: the same values as .core.MODELS and .core.MAX_TOKENS (a test checks), here so that --help needs no torch
MODELS = ("minilm", "smollm2")
MAX_TOKENS = 64
MAX_HTML_TOKENS = 2048  #: .explore.MAX_HTML_TOKENS: the explorer page stays usable at 2,000 tokens
GENERATE_HTML = 16  #: tokens SmolLM2 generates for the page's generation view unless --generate says otherwise


def _layer_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected layer numbers like 0,3,-1, got {text!r}") from None


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``attnkit inspect`` options on ``parser``."""
    add = parser.add_argument
    add("text", help="the text to run through the model (one sentence or a short paragraph)")
    add("--model", choices=MODELS, default="minilm",
        help="minilm: all-MiniLM-L6-v2 encoder; smollm2: SmolLM2-135M-Instruct decoder (causal)")
    add("--out", type=Path, default=DEFAULT_OUT_DIR, metavar="DIR", help="folder for layer_NN.png")
    add("--no-plots", action="store_true", help="measure only; write no PNG")
    add("--layers", type=_layer_list, metavar="LIST", help="layers to inspect, e.g. 0,5,-1 (default: all)")
    add("--method", choices=("lse", "need_weights"),
        help="lse: weights from the tiled backend's log-sum-exp; need_weights: reference (default: lse where "
             "available)")
    add("--max-tokens", type=positive_int, metavar="N",
        help=f"refuse longer texts (default: {MAX_TOKENS}; with --html {MAX_HTML_TOKENS}, prompt + generated)")
    add("--html", type=Path, metavar="OUT.html",
        help="write the interactive explorer page (one offline file) instead of the PNGs")
    add("--generate", type=_non_negative, metavar="N",
        help=f"with --html and --model smollm2: generate N tokens (greedy) and step through their attention "
             f"(default: {GENERATE_HTML}; 0 = none)")
    add("--json", action="store_true", help="print tokens, per-head statistics and PNG paths as JSON")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if args.html is not None:
        return _run_html(args)
    if args.generate:
        raise ValueError("--generate needs --html (the generation view is part of the explorer page)")
    from .core import inspect

    args.max_tokens = args.max_tokens or MAX_TOKENS
    drawing = "" if args.no_plots else f" and drawing heatmaps into {args.out}"
    with status(f"inspect: loading {args.model}, running it on the text{drawing}"):
        result = inspect(args.text, model=args.model, out=None if args.no_plots else args.out, layers=args.layers,
                         method=args.method, max_tokens=args.max_tokens)  # fmt: skip
    if args.json:
        print_json(result.to_dict())
        return 0
    from rich.text import Text

    tables = _tables(result)
    console = stdout_console(*(table for _, table in tables))
    console.print(Text.assemble((result.model, "bold"), f" on {len(result.tokens)} tokens: " + " ".join(result.tokens)))
    for title, table in tables:
        console.print(f"[bold]{title}[/]")
        console.print(table)
    worst = max(x.max_error for x in result.layers)
    console.print(literal(f"weights: {result.method} — {result.method_note}; recomputed layer outputs match the "
                          f"model's to {worst:.1e}"))  # fmt: skip
    console.print(literal(_reading(result)))
    for layer in result.layers:
        if layer.png:
            console.print(literal(f"heatmap: {layer.png}"))
    return 0


def _run_html(args: argparse.Namespace) -> int:
    from .explore import explore_text

    generate = args.generate if args.generate is not None else (GENERATE_HTML if args.model == "smollm2" else 0)
    if generate and args.model != "smollm2":
        raise ValueError(f"--generate needs a decoder: use --model smollm2 (got --model {args.model})")
    doing = f" and generating {generate} tokens" if generate else ""
    with status(f"inspect: loading {args.model}, running it on the text{doing}, writing {args.html}"):
        page = explore_text(args.text, model=args.model, generate=generate, layers=args.layers, method=args.method,
                            max_tokens=args.max_tokens or MAX_HTML_TOKENS)  # fmt: skip
        path = page.save(args.html)
    sections = [{"name": s.name, "queries": len(s.query_tokens), "keys": len(s.key_tokens), "layers": list(s.layers),
                 "heads": s.num_heads, "mode": s.mode, "top_k": s.top_k} for s in page.sections]  # fmt: skip
    if args.json:
        print_json({"html": str(path), "title": page.title, "note": page.note, "sections": sections})
        return 0
    console = stdout_console()
    console.print(literal(f"{page.title}: {page.note}"))
    console.print(literal(f"explorer: {path} ({path.stat().st_size / 1e6:.2f} MB; open it in a browser, no network "
                          "needed)"))  # fmt: skip
    return 0


def _tables(result):
    """Layers down the side, heads across: mean distance, then entropy."""
    from rich import box
    from rich.table import Table

    H = result.layers[0].weights.shape[0]
    out = []
    for title, field, fmt in (("mean attention distance (tokens)", "mean_distance", "{:.1f}"),
                              ("attention entropy (nats)", "entropy", "{:.2f}")):  # fmt: skip
        table = Table(box=box.SIMPLE_HEAD, padding=(0, 1))
        table.add_column("layer", justify="right")
        for h in range(H):
            table.add_column(f"h{h}", justify="right")
        table.add_column("mean", justify="right", style="cyan")
        for layer in result.layers:
            values = getattr(layer.statistics, field).tolist()
            finite = [v for v in values if not math.isnan(v)]
            cells = [fmt.format(v) for v in values] + [fmt.format(sum(finite) / max(len(finite), 1))]
            table.add_row(str(layer.index), *cells)
        out.append((title, table))
    return out


def _reading(result) -> str:
    """One sentence on local vs long-range heads, for the reader in a hurry."""
    L = len(result.tokens)
    pairs = [(float(layer.statistics.mean_distance[h]), layer.index, h)
             for layer in result.layers for h in range(layer.weights.shape[0])]  # fmt: skip
    near, far = min(pairs), max(pairs)
    uniform = (L - 1) / 4 if result.causal else (L * L - 1) / (3 * L)  # mean |i - j| under uniform attention
    text = (f"long-range: head {far[2]} of layer {far[1]} reaches {far[0]:.1f} tokens on average, head {near[2]} of "
            f"layer {near[1]} only {near[0]:.1f} (uniform attention over these {L} tokens: {uniform:.1f}); "
            "every head sees every allowed token in one step")  # fmt: skip
    if L > 1:
        sink = sum(float(x.weights[:, 1:, 0].mean()) for x in result.layers) / len(result.layers)
        text += (f". {100 * sink:.0f}% of the weight of tokens 1..{L - 1} goes to token 0 ({result.tokens[0]!r}); "
                 "a large share is an attention sink, which inflates the mean distance")  # fmt: skip
    return text
