"""The code's shape, read statically (ast, nothing imported): no import cycle among the project's modules,
function-level imports included (a cycle hidden inside a function is still a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOPS = ("replicate", "tasks", "studies")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for top in TOPS for path in sorted((ROOT / top).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules `path` imports anywhere in its body (not under `if TYPE_CHECKING:`, which never
    runs). `from a.b import c` counts as importing a.b.c when that is a module, else a.b. A parent package
    is not counted: it is initialised before its submodules by the import system."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    skipped = {id(child) for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.If)
               and _is_type_checking(node) for child in ast.walk(node)}  # fmt: skip
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        else:
            continue
        if any(id(child) in skipped for child in ast.walk(node)):
            continue
        found |= {target for target in targets if target in known and target != name}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported(path, name, set(modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function():
    """The check can fail: two modules importing each other, one of them inside a function."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    source = "def f():\n    from replicate.search.run import run_search\n"
    tree = ast.parse(source)
    assert any(isinstance(node, ast.ImportFrom) for node in ast.walk(tree))  # ast.walk reaches into functions


def test_no_import_cycle_among_the_projects_modules():
    graph = import_graph()
    assert "replicate.search.selectors.selection" in graph["replicate.search.run"]  # the graph is real
    assert cycles(graph) == [], "import cycles (each a set of modules importing each other): " + "; ".join(
        " <-> ".join(component) for component in cycles(graph)
    )
