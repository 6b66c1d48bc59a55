"""The ``attnkit`` command: a thin shell over the library.

Every subcommand is a module that exposes two functions::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...          # the exit code

and is registered with one line in :data:`COMMANDS`. Only the module of the
subcommand being run is imported, so ``attnkit --help`` is fast and a missing
optional part (say ``attnkit.bench`` in an older checkout) only disables its own
subcommand, which then says so.

Errors a user can cause — ``ValueError``, ``TypeError``, ``OSError`` such as
``FileNotFoundError`` — print one line to stderr and exit with status 2; ``--debug``
shows the full traceback instead.

Example:
    >>> main(["info", "--json"])  # doctest: +ELLIPSIS
    {
      "attnkit": ...
    0
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType
from typing import Sequence

__all__ = ["main", "build_parser", "COMMANDS", "CommandUnavailable"]

#: name -> (module exposing add_arguments(parser) and run(args) -> int, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("attnkit.info", "versions, threads, CPU, devices and attention backends"),
    "demo": ("attnkit.demo", "self-attention on one sentence, in the three steps of the formula"),
    "summarize": ("attnkit.apps.summarize.command", "summarize a text file (MiniLM extractive or SmolLM2 abstractive); eval: ROUGE"),
    "qa": ("attnkit.apps.qa.command", "answer a question, grounded in --context files (MiniLM retrieval + SmolLM2); eval"),
    "inspect": ("attnkit.apps.inspect.command", "attention heatmaps per layer and head, distance and entropy per head"),
    "bench": ("attnkit.bench.command", "benchmark attention against its peers on this machine"),
    "translate": ("attnkit.apps.translate.command", "train, evaluate and run a translation Transformer (train|eval|demo|data)"),
}

#: What a user can cause with bad input: reported in one line, exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError)
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class CommandUnavailable(RuntimeError):
    """A registered subcommand whose module cannot be imported here."""


def load_command(name: str) -> ModuleType:
    """Import the module behind subcommand ``name`` and check it has ``add_arguments`` and ``run``."""
    module_name, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise CommandUnavailable(
                f"this installation of attnkit has no {module_name} module yet"
            ) from e
        raise CommandUnavailable(
            _missing_extra(name, e) or f"it needs the Python package {e.name!r}, which is not installed"
        ) from e
    except ImportError as e:
        raise CommandUnavailable(f"importing {module_name} failed: {e}") from e
    missing = [f for f in ("add_arguments", "run") if not callable(getattr(module, f, None))]
    if missing:
        raise CommandUnavailable(f"{module_name} does not define {' and '.join(f + '()' for f in missing)}")
    return module


def build_parser(load: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; subcommand ``load`` (if any) gets its module's arguments.

    The other subcommands are listed with their help line but not imported.
    """
    parser = argparse.ArgumentParser(
        prog="attnkit",
        description="attnkit: self-attention done right — exact, fast, memory-efficient attention on PyTorch.",
        epilog="Run `attnkit COMMAND --help` for the options of a command. "
        "Errors print one line; add --debug for the full traceback.",
    )
    parser.add_argument("--version", action="version", version=f"attnkit {_version()}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (_, help_line) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_line, description=help_line)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if name == load:
            module = load_command(name)
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``attnkit`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    name = _command_name(argv)
    try:
        parser = build_parser(load=name)
    except CommandUnavailable as e:
        print(f"attnkit {name}: unavailable: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version or a usage error (argparse printed it)
        return e.code if isinstance(e.code, int) else EXIT_USER_ERROR
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    try:
        return int(args.run(args) or 0)
    except ModuleNotFoundError as e:  # an optional dependency imported inside run()
        message = _missing_extra(args.command, e)
        if message is None or args.debug:
            raise
        print(f"attnkit {args.command}: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # before USER_ERRORS: it is an OSError
        return _quiet_broken_pipe()
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"attnkit {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"attnkit {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _command_name(argv: list[str]) -> str | None:
    """The subcommand in ``argv``: the first token that is not an option (top-level options take no value)."""
    for token in argv:
        if token == "--":
            return None
        if not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if isinstance(e, (ValueError, TypeError)) else f"{text} ({type(e).__name__})"


def _quiet_broken_pipe() -> int:
    """Output piped into e.g. ``head`` that closed early: stop without a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python flushes stdout at exit; let it flush into nothing
    except (OSError, ValueError):
        pass
    return 1


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("attnkit")
    except PackageNotFoundError:
        return "unknown (not installed)"


#: optional dependency (its import name) -> the extra of pyproject.toml that installs it
EXTRA_OF_PACKAGE: dict[str, str] = {
    "matplotlib": "viz",
    **dict.fromkeys(("tokenizers", "gguf", "jinja2", "sacrebleu", "rouge_score", "num2words", "babel"), "apps"),
}
#: subcommand -> the extra that installs everything it may import (apps includes viz)
EXTRA_OF_COMMAND: dict[str, str] = {
    "demo": "viz", "bench": "bench", **dict.fromkeys(("translate", "summarize", "qa", "inspect"), "apps"),
}


def _missing_extra(command: str, error: ModuleNotFoundError) -> str | None:
    """``needs the 'apps' extra: pip install 'attnkit[apps]' (...)`` if ``error`` is an optional dependency."""
    package = (error.name or "").partition(".")[0]
    if package not in EXTRA_OF_PACKAGE:
        return None
    extra = EXTRA_OF_COMMAND.get(command, EXTRA_OF_PACKAGE[package])
    return f"needs the {extra!r} extra: pip install 'attnkit[{extra}]' ({package} is not installed)"
