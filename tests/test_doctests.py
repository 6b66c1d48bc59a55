"""Every docstring example in src/attnkit runs and shows what it claims, module by module (doctest).

Examples are found by :class:`doctest.DocTestFinder` in every module that
``pkgutil.walk_packages`` finds, so a new module is checked without being listed here.
Three explicit lists say where that rule bends, each entry with its reason:

* ``SKIPPED``: modules whose docstrings keep an example marked ``# doctest: +SKIP``
  (it needs the published weights or minutes of work);
* ``WITHOUT_EXAMPLES``: modules with no example at all;
* ``UNDOCUMENTED``: names of a package's ``__all__`` that no runnable example uses yet.

An entry that is no longer true fails its test, so the lists only shrink.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re
import types

import pytest

import attnkit

MODULES = ["attnkit"] + sorted(m.name for m in pkgutil.walk_packages(attnkit.__path__, "attnkit."))
PACKAGES = ["attnkit"] + sorted(m.name for m in pkgutil.walk_packages(attnkit.__path__, "attnkit.") if m.ispkg)
OPTIONS = doctest.ELLIPSIS

#: module -> why an example in it is marked +SKIP (they stay as documentation)
SKIPPED = {
    "attnkit.apps.qa.core": "answer() loads MiniLM and SmolLM2-135M (540 MB) and generates",
    "attnkit.apps.qa.evaluate": "evaluate() runs retrieval and SmolLM2 over a question set: minutes",
    "attnkit.apps.summarize.evaluate": "evaluate() embeds a corpus with MiniLM: minutes",
    "attnkit.apps.translate.demo": "demo() trains a translation model for minutes",
    "attnkit.apps.translate.train": "train_translation() trains a model and writes checkpoints",
    "attnkit.bench.models": "measure_models() times MiniLM and SmolLM2 against transformers",
    "attnkit.pretrained.cache": "load_cached_llama() converts or maps the 540 MB SmolLM2 weights",
    "attnkit.pretrained.chat": "ChatModel.from_pretrained() loads SmolLM2-135M (540 MB) and generates",
    "attnkit.pretrained.gguf_reader": "reads the 540 MB SmolLM2 GGUF file",
    "attnkit.pretrained.llama": "load_llama_gguf() loads SmolLM2-135M (540 MB)",
}

#: module -> why it has no example
WITHOUT_EXAMPLES = {
    "attnkit.__main__": "`python -m attnkit`: runs the CLI when imported",
    "attnkit.bench.__main__": "`python -m attnkit.bench`: runs the benchmark when imported",
    "attnkit.apps": "names the applications only; importing it imports none",
}

#: package -> names of its __all__ that no runnable example uses yet (known gaps, owner in the comment)
UNDOCUMENTED = {
    "attnkit.apps.qa": {"answer", "evaluate"},  # load MiniLM and SmolLM2 (examples +SKIP in SKIPPED modules)
    "attnkit.apps.summarize": {"evaluate"},  # embeds a corpus with MiniLM: minutes (example +SKIP)
    "attnkit.pretrained": {"llama_config_from_gguf", "load_llama_gguf"},  # read the 540 MB SmolLM2 GGUF
}
#: package -> why it has no __all__
WITHOUT_ALL = {
    "attnkit.apps": "a namespace for the applications: importing it imports none, so it exports nothing; "
    "each application package (translate, summarize, qa, inspect) has its own __all__",
}


def _examples(module: types.ModuleType) -> list[doctest.DocTest]:
    """The docstrings with examples in ``module`` itself (not those of names it imports)."""
    return [t for t in doctest.DocTestFinder().find(module, module.__name__) if t.examples]


def _skipped(test: doctest.DocTest) -> list[doctest.Example]:
    return [e for e in test.examples if e.options.get(doctest.SKIP)]


def _runnable_source(module: types.ModuleType) -> str:
    return "\n".join(e.source for t in _examples(module) for e in t.examples if not e.options.get(doctest.SKIP))


def _run(module: types.ModuleType) -> tuple[doctest.TestResults, str]:
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    report: list[str] = []
    for test in _examples(module):
        runner.run(test, out=report.append)
    return runner.summarize(verbose=False), "".join(report)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result, report = _run(importlib.import_module(name))
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}:\n{report}"


def test_docstring_runner_catches_a_wrong_example_and_ignores_a_skipped_one():
    planted = types.ModuleType("planted", "Example:\n    >>> 1 + 1\n    3\n    >>> 1 / 0  # doctest: +SKIP\n")
    result, report = _run(planted)
    assert (result.failed, result.attempted) == (1, 1) and "Expected:\n    3\nGot:\n    2" in report


def test_every_module_has_examples_or_says_why():
    without = {name for name in MODULES if not _examples(importlib.import_module(name))}
    assert without - set(WITHOUT_EXAMPLES) == set(), "modules without a docstring example"
    assert set(WITHOUT_EXAMPLES) - without == set(), "these have examples now: remove them from WITHOUT_EXAMPLES"


def test_skipped_examples_are_named_with_a_reason():
    skipping = {name for name in MODULES if any(map(_skipped, _examples(importlib.import_module(name))))}
    assert skipping - set(SKIPPED) == set(), "an example is marked +SKIP: run it, or say why in SKIPPED"
    assert set(SKIPPED) - skipping == set(), "these skip nothing now: remove them from SKIPPED"


@pytest.mark.parametrize("package", PACKAGES)
def test_public_names_are_used_in_a_runnable_example(package):
    """Each name of ``__all__`` appears in a runnable example of the package or of the module defining it."""
    module = importlib.import_module(package)
    if not hasattr(module, "__all__"):
        assert package in WITHOUT_ALL, f"{package} has no __all__"
        return
    assert package not in WITHOUT_ALL, f"{package} has an __all__ now: remove it from WITHOUT_ALL"
    missing = set()
    for name in module.__all__:
        obj = getattr(module, name)
        home = obj if inspect.ismodule(obj) else inspect.getmodule(obj) or module
        text = _runnable_source(module) + "\n" + _runnable_source(home)
        if not name.startswith("__") and not re.search(rf"\b{re.escape(name)}\b", text):
            missing.add(name)
    known = UNDOCUMENTED.get(package, set())
    assert missing - known == set(), f"{package}: public names without a runnable example"
    assert known - missing == set(), f"{package}: these have examples now: remove them from UNDOCUMENTED"
