"""The ``attnkit`` command: a thin shell over the library.

Every subcommand is a module that exposes two functions::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...          # the exit code

and is registered with one line in :data:`COMMANDS`. A command with actions
(``attnkit translate train``) also defines ``ACTIONS = {"train": "one line of
help", ...}`` and takes the action: ``add_arguments(parser, action)``, where
``action=None`` is the command without an action word (``attnkit translate
--model DIR "text"``); ``args.action`` tells ``run`` which one was given. The
action is the first positional word when it is exactly an action name (before
or after options; after ``--`` it is an ordinary argument). Each action has its
own options and its own ``--help``.

Only the module of the subcommand being run is imported, and command modules
import torch only inside ``run``, so ``attnkit --version`` and every ``--help``
start in a fraction of a second. A missing optional part only disables its own
subcommand, which then says so.

Parsing forgives: options may come before or after positionals
(``parse_intermixed_args``); an unknown command, action, flag or choice gets a
"did you mean" from :mod:`difflib`; an option of another action says which
action it belongs to. Help texts show defaults in one style, ``(default: X)``.

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
import difflib
import importlib
import os
import re
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

__all__ = ["main", "build_parser", "command_parser", "COMMANDS", "CommandUnavailable", "Parser"]

#: name -> (module exposing add_arguments(parser) and run(args) -> int, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("attnkit.info", "versions, threads, CPU, devices and attention backends"),
    "demo": ("attnkit.demo", "self-attention on one sentence, in the three steps of the formula"),
    "summarize": ("attnkit.apps.summarize.command",
                  "summarize a text file (MiniLM extractive or SmolLM2 abstractive); eval: ROUGE"),
    "qa": ("attnkit.apps.qa.command",
           "answer a question, grounded in --context files (MiniLM retrieval + SmolLM2); eval"),
    "inspect": ("attnkit.apps.inspect.command",
                "attention heatmaps, distance and entropy per head; --html: the interactive explorer"),
    "bench": ("attnkit.bench.command", "benchmark attention against its peers on this machine"),
    "cost": ("attnkit.cost.command", "parameters, FLOPs and memory of a Transformer config; --measure times it here"),
    "translate": ("attnkit.apps.translate.command",
                  "train, evaluate and run a translation Transformer (train|eval|demo|data)"),
    "export": ("attnkit.integrations.export_command", "write a saved model as ONNX, checked in onnxruntime (onnx)"),
    "lab": ("attnkit.lab.command",
            "the FAQ, measured: heads, prune, long-range, noise (sweeps you can rerun on your own data)"),
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


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; an option with a default says ``(default: X)``, one style for all."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        unset = any(default is x for x in (None, False, argparse.SUPPRESS)) or default == []
        if not action.option_strings or "(default" in text or unset or text is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors suggest the closest flag, choice or action.

    ``siblings`` maps the other actions of the same command to a function building
    their parser, so that ``--steps`` given to ``translate demo`` is reported as an
    option of ``translate train``.
    """

    def __init__(self, *args, siblings: dict | None = None, unknown_hint: str = "", **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.siblings = siblings or {}
        self.unknown_hint = unknown_hint  # one sentence added to "unrecognized arguments" errors

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {self._explain(message)}\n")

    def option_strings(self) -> list[str]:
        return [s for action in self._actions for s in action.option_strings]

    def _explain(self, message: str) -> str:
        if message.startswith("unrecognized arguments: "):
            return self._explain_unrecognized(message.split(": ", 1)[1].split(" "))
        choice = re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)$", message)
        if choice:
            options = re.findall(r"'(.*?)'", choice.group(2))
            return message + did_you_mean(choice.group(1), options)
        return message

    def _explain_unrecognized(self, tokens: list[str]) -> str:
        parts: list[str] = []
        skip_value = False
        for token in tokens:
            if skip_value and not token.startswith("-"):  # the value of an option reported just before
                skip_value = False
                continue
            skip_value = False
            if not token.startswith("-") or token == "-":
                hint = f" ({self.unknown_hint})" if self.unknown_hint else ""
                parts.append(f"unexpected argument {token!r}{hint}")
                continue
            flag = token.split("=", 1)[0]
            owners = {name: build() for name, build in self.siblings.items() if flag in build().option_strings()}
            if owners:
                takes = next(iter(owners.values()))._option_string_actions[flag].nargs != 0
                skip_value = takes and "=" not in token
                where = " and ".join(f"`{self._command_of(o)}`" for o in owners)
                parts.append(f"{flag} is an option of {where}, not of `{self.prog}`")
            else:
                parts.append(f"unknown option {flag}" + self._closest(flag))
        return "; ".join(parts) + f"; see `{self.prog} --help`"

    def _closest(self, flag: str) -> str:
        """A did-you-mean among this parser's options and the other actions' options, the closest winning."""
        owner_of: dict[str, str | None] = {}
        for name, build in self.siblings.items():
            owner_of.update(dict.fromkeys(build().option_strings(), name))
        own = self.option_strings()
        owner_of.update(dict.fromkeys(own, "\0"))  # marks this parser's own options
        close = difflib.get_close_matches(flag, list(owner_of), n=1, cutoff=0.6)
        if not close:
            return ""
        owner = owner_of[close[0]]
        return f"; did you mean {close[0]!r}?" if owner == "\0" else \
            f"; did you mean {close[0]!r} of `{self._command_of(owner)}`?"

    def _command_of(self, action: str | None) -> str:
        """``attnkit translate train`` for a sibling action of this parser (None: the command without one)."""
        command = " ".join(self.prog.split(" ")[:2])  # "attnkit translate"
        return command if action is None else f"{command} {action}"


def did_you_mean(word: str, candidates, cutoff: float = 0.6) -> str:
    """``"; did you mean 'train'?"`` for the candidate closest to ``word``, or ``""``.

    Example:
        >>> did_you_mean("trian", ["train", "eval", "demo"])
        "; did you mean 'train'?"
        >>> did_you_mean("xyz", ["train"])
        ''
    """
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else ""


def build_parser() -> Parser:
    """The top-level parser: ``--version``, ``--debug`` and the list of commands (none imported)."""
    parser = Parser(
        prog="attnkit",
        usage="attnkit [--version] [--debug] COMMAND [ACTION] [options]",
        description="attnkit: self-attention done right — exact, fast, memory-efficient attention on PyTorch.",
        epilog="commands:\n" + _listing({name: help_line for name, (_, help_line) in COMMANDS.items()})
        + "\n\nRun `attnkit COMMAND --help` for the options of a command. "
        "Errors print one line; add --debug for the full traceback.",
    )
    parser.add_argument("--version", action="version", version=f"attnkit {_version()}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    return parser


def command_parser(name: str, module: ModuleType, action: str | None = None) -> Parser:
    """The parser of ``attnkit NAME [ACTION]``, with the options ``module.add_arguments`` declares."""
    _, help_line = COMMANDS[name]
    actions: dict[str, str] = getattr(module, "ACTIONS", {})
    prog = f"attnkit {name}" + (f" {action}" if action else "")
    siblings = {other: _sibling(name, module, other) for other in [None, *actions] if other != action}
    description = actions[action] if action else help_line
    epilog = None
    if actions and action is None:
        epilog = "actions (each has its own --help):\n" + _listing({f"{name} {a}": h for a, h in actions.items()})
    parser = Parser(prog=prog, description=description, epilog=epilog, siblings=siblings)
    parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    if actions:
        module.add_arguments(parser, action)
    else:
        module.add_arguments(parser)
    parser.set_defaults(run=module.run, command=name, action=action, parser=parser)
    if actions and action is None and parser.usage is None:  # the default form, then the actions
        default = parser.format_usage().removeprefix("usage: ").rstrip()
        parser.usage = f"{default}\n       attnkit {name} {{{','.join(actions)}}} [options]"
    return parser


def _sibling(name: str, module: ModuleType, action: str | None):
    def build() -> Parser:
        return command_parser(name, module, action)

    return build


def _listing(rows: dict[str, str]) -> str:
    width = max(map(len, rows))
    return "\n".join(f"  {key:<{width}}  {text}" for key, text in rows.items())


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``attnkit`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _parse(argv)
    except SystemExit as e:  # --help, --version or a usage error (argparse printed it)
        return e.code if isinstance(e.code, int) else EXIT_USER_ERROR
    except CommandUnavailable as e:
        print(f"attnkit {e.args[1]}: unavailable: {e.args[0]}", file=sys.stderr)
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
        print(f"attnkit {args.command}: error: {_name_the_flag(_one_line(e), args.parser)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"attnkit {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _parse(argv: list[str]) -> argparse.Namespace:
    """Top-level options, then the command, its action (if any), and its options in any order."""
    root = build_parser()
    at = next((i for i, token in enumerate(argv) if not token.startswith("-") or token == "-"), len(argv))
    head, name, rest = argv[:at], (argv[at] if at < len(argv) else None), argv[at + 1:]
    top = root.parse_args(head)  # --help and --version exit here
    if name is None:
        root.print_help(sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)
    if name not in COMMANDS:
        root.error(f"unknown command {name!r}{did_you_mean(name, COMMANDS)} (commands: {', '.join(COMMANDS)})")
    try:
        module = load_command(name)
    except CommandUnavailable as e:
        raise CommandUnavailable(str(e), name) from e
    actions = getattr(module, "ACTIONS", {})
    action = None
    parsers = [command_parser(name, module, a) for a in (None, *actions)] if actions and "--" not in rest else []
    first = _first_positional(parsers, rest) if parsers else None
    if first is not None and rest[first] in actions:  # the first positional word, before or after options
        action = rest.pop(first)
    elif first is not None and _looks_like(rest[first], actions):
        word = rest[first]
        command_parser(name, module).error(
            f"unknown action {word!r}{did_you_mean(word, actions, cutoff=0.75)} "
            f"(actions: {', '.join(actions)}; to pass the word itself as an argument, put `--` before it)"
        )
    args = command_parser(name, module, action).parse_intermixed_args(rest)
    args.debug = args.debug or top.debug
    return args


def _first_positional(parsers: Sequence[argparse.ArgumentParser], tokens: list[str]) -> int | None:
    """Index of the first token that is not an option or an option's value (options of any of ``parsers``)."""
    options = {flag: a for parser in parsers for flag, a in parser._option_string_actions.items()}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("-") or token == "-":
            return i
        action = options.get(token.split("=", 1)[0])
        takes_value = action is not None and action.nargs != 0 and "=" not in token
        i += 2 if takes_value else 1
    return None


def _looks_like(token: str, actions) -> bool:
    """A single word close to an action name (``trian``): a typo, not an argument."""
    plain = re.fullmatch(r"[A-Za-z-]+", token) is not None
    return plain and bool(difflib.get_close_matches(token, list(actions), n=1, cutoff=0.75))


def _name_the_flag(message: str, parser: argparse.ArgumentParser) -> str:
    """A library error as the command line says it: ``summarize(): sentences must ...`` -> ``--sentences must ...``.

    The function prefix is dropped (the line already starts with ``attnkit COMMAND:``);
    an argument named right after it becomes the flag (or the positional) that set it.

    Example:
        >>> p = argparse.ArgumentParser()
        >>> _ = p.add_argument("--d-model", type=int)
        >>> _name_the_flag("run_demo(): d_model must be a positive int, got 0", p)
        '--d-model must be a positive int, got 0'
        >>> _name_the_flag("inspect(): the text gives no tokens", p)
        'the text gives no tokens'
    """
    match = re.match(r"[\w.]+\(\): (\w+)(.*)$", message, re.S)
    if not match:
        return message
    word, rest = match.groups()
    for action in parser._actions:
        if action.dest == word and action.help is not argparse.SUPPRESS:
            name = action.option_strings[-1] if action.option_strings else (action.metavar or action.dest)
            return f"{name}{rest}"
    return f"{word}{rest}"


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
    **dict.fromkeys(("onnx", "onnxscript", "onnxruntime"), "onnx"),
}
#: subcommand -> the extra that installs everything it may import (apps includes viz)
EXTRA_OF_COMMAND: dict[str, str] = {
    "demo": "viz", "bench": "bench", "export": "onnx",
    **dict.fromkeys(("translate", "summarize", "qa", "inspect", "lab"), "apps"),
}


def _missing_extra(command: str, error: ModuleNotFoundError) -> str | None:
    """``needs the 'apps' extra: pip install 'attnkit[apps]' (...)`` if ``error`` is an optional dependency."""
    package = (error.name or "").partition(".")[0]
    if package not in EXTRA_OF_PACKAGE:
        return None
    extra = EXTRA_OF_COMMAND.get(command, EXTRA_OF_PACKAGE[package])
    return f"needs the {extra!r} extra: pip install 'attnkit[{extra}]' ({package} is not installed)"
