"""No import cycles inside src/attnkit, not even through imports hidden inside functions.

DESIGN.md: arrows point down only, and two modules that need the same private helper take
it from a third, lower one. This test reads every module's ``import`` statements with
``ast`` (module level, inside functions and classes; not those under ``if TYPE_CHECKING:``,
which never run), builds the graph of attnkit modules and reports every cycle, each as
the strongly connected component it forms and one concrete loop through it.

Edges are the modules an import names: ``from .x import y`` is an edge to ``x.y`` when
that is a module, else to ``x``. Importing ``a.b.c`` also runs ``a/__init__`` and
``a/b/__init__``; those implicit parent edges are left out, as import-linter does,
since every package's ``__init__`` imports its children.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "attnkit"


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Import nodes that can run: everywhere except under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def edges_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]  # the package relative imports start from
    targets = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            bases = [alias.name for alias in node.names]
            names: list[str] = []
        else:
            base = here[: len(here) - node.level + 1] if node.level else []
            bases = [".".join(base + ([node.module] if node.module else []))]
            names = [alias.name for alias in node.names]
        for base in bases:
            subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
            if subs:
                targets.update(subs)
            if len(subs) < len(names) or not names:
                targets.add(base)
    return {t for t in targets if t in modules and t != name}


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: edges_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def loop_through(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One concrete loop ``a -> b -> ... -> a`` inside a component (breadth-first back to the start)."""
    start, inside = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & inside):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return component


def describe(found: list[list[str]], graph) -> str:
    return "\n".join(f"  cycle among {comp}: {' -> '.join(loop_through(comp, graph))}" for comp in found)


def test_no_import_cycles_in_attnkit():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + describe(found, graph)


def test_cycle_finder_reports_a_function_level_import_cycle():
    """The finder itself: a cycle closed only by an import inside a function is found."""
    graph = {"p.a": {"p.b"}, "p.b": set(), "p.c": {"p.d"}, "p.d": {"p.e"}, "p.e": {"p.c"}}
    assert cycles(graph) == [["p.c", "p.d", "p.e"]]
    tree = ast.parse("def f():\n    from .b import x\nif TYPE_CHECKING:\n    from .c import y\n")
    assert [n.module for n in _imports(tree)] == ["b"]
