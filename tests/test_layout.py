"""The shape of the package: no import cycles, and engines meet only in the
session.

Every module under src/pyward/ is parsed (not imported); each import of a
pyward module is an edge, whether it stands at module level or inside a
function: a lazy import still ties the two modules together.  Imports under
`if TYPE_CHECKING:` are left out, since they never run.
"""
from __future__ import annotations

import ast
import pathlib

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
PACKAGE = "pyward"
ENGINES = ("pyward.sandbox", "pyward.tamper", "pyward.heal")

# Edges allowed to close a cycle: none.  Keep it that way.
ALLOWED: set[tuple[str, str]] = set()


def module_names() -> dict[str, pathlib.Path]:
    names = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node, skipping `if TYPE_CHECKING:` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _owner(name: str, modules: dict[str, pathlib.Path]) -> str | None:
    """The pyward module that `name` (dotted) names or lies in."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".")
                    if not is_package:
                        base.pop()
                    base = base[: len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                # `from pkg import sub` imports the submodule; `from mod import
                # name` imports mod.
                targets = [f"{prefix}.{alias.name}" for alias in node.names]
            for target in targets:
                owner = _owner(target, modules)
                if owner and owner != name:
                    graph[name].add(owner)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, ..., a], or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    for root in sorted(graph):
        if colour[root] != WHITE:
            continue
        path = [root]
        colour[root] = GREY
        iterators = [iter(sorted(graph[root]))]
        while iterators:
            nxt = next(iterators[-1], None)
            if nxt is None:
                colour[path.pop()] = BLACK
                iterators.pop()
            elif colour[nxt] == GREY:
                return path[path.index(nxt):] + [nxt]
            elif colour[nxt] == WHITE:
                colour[nxt] = GREY
                path.append(nxt)
                iterators.append(iter(sorted(graph[nxt])))
    return None


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Components of more than one module (Tarjan), for reading failures."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _without_allowed(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {a: {b for b in targets if (a, b) not in ALLOWED} for a, targets in graph.items()}


def _package(name: str) -> str | None:
    for engine in ENGINES:
        if name == engine or name.startswith(engine + "."):
            return engine
    return None


def test_graph_sees_known_imports():
    graph = import_graph()
    assert "pyward.journal" in graph["pyward.runner"]
    assert "pyward._isolation" in graph["pyward.journal"]
    assert "pyward.sandbox.errors" in graph["pyward.sandbox"]


def test_allowance_still_needed():
    graph = import_graph()
    for a, b in ALLOWED:
        assert b in graph[a], f"{a} -> {b} is gone: drop it from ALLOWED"


def test_no_import_cycles():
    graph = _without_allowed(import_graph())
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_engines_meet_only_in_the_session():
    graph = import_graph()
    wrong = []
    for name, targets in sorted(graph.items()):
        engine = _package(name)
        for target in sorted(targets):
            other = _package(target)
            if engine and other and other != engine:
                wrong.append(f"{name} -> {target} (engine imports another engine)")
            if engine and target == "pyward.cli":
                wrong.append(f"{name} -> {target} (engine imports the CLI entry point)")
            if name == "pyward.config" and other:
                wrong.append(f"{name} -> {target} (config imports an engine)")
    assert not wrong, "\n".join(wrong)


if __name__ == "__main__":
    graph = import_graph()
    for component in strongly_connected(graph):
        print("cycle among:", ", ".join(component))
        inner = set(component)
        for a in component:
            for b in sorted(graph[a] & inner):
                print(f"    {a} -> {b}")
