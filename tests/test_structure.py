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


# ------------------------------------------------------------------ sizes a reader can hold

MODULE_LINES = 300
# The package and the benchmarks: no module longer than MODULE_LINES, no function longer or wider than this
# (parameters counted without self and cls; *args and **kwargs count one each).
SIZED = ("replicate", "tasks")
FUNCTION_LINES, FUNCTION_PARAMETERS = 60, 6


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            names = [a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]]
            count = len([name for name in names if name not in ("self", "cls")])
            count += (arguments.vararg is not None) + (arguments.kwarg is not None)
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1, count


def too_long_or_wide(path: Path, root: Path = ROOT) -> list[str]:
    return [
        f"{path.relative_to(root)}:{line} {name}: {length} lines, {count} parameters"
        for name, line, length, count in _functions(path)
        if length > FUNCTION_LINES or count > FUNCTION_PARAMETERS
    ]


def test_no_module_is_over_300_lines():
    too_long = {
        str(path.relative_to(ROOT)): lines
        for top in SIZED
        for path in sorted((ROOT / top).rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MODULE_LINES
    }
    assert not too_long, f"modules over {MODULE_LINES} lines (split them): {too_long}"


def test_no_function_is_over_60_lines_or_6_parameters():
    found = [
        problem
        for top in SIZED
        for path in sorted((ROOT / top).rglob("*.py"))
        for problem in too_long_or_wide(path)
    ]
    assert not found, (
        "functions too long or too wide (split them; group parameters in a typed object): " + "; ".join(found)
    )


def test_the_size_check_can_fail(tmp_path):
    wide = tmp_path / "wide.py"
    wide.write_text("def f(a, b, c, d, e, f, g):\n    return a\n" + "def long():\n" + "    x = 1\n" * 61)
    problems = [problem.split(" ", 1)[1] for problem in too_long_or_wide(wide, tmp_path)]
    assert problems == ["f: 2 lines, 7 parameters", "long: 62 lines, 0 parameters"]


# ------------------------------------------------------------------ the map of the code


def test_docs_architecture_names_every_module_and_every_package_says_what_lives_there():
    text = (ROOT / "docs" / "architecture.md").read_text()
    unnamed = sorted(
        str(path.relative_to(ROOT))
        for top in TOPS
        for path in (ROOT / top).rglob("*.py")
        if path.stem not in ("__init__", "__main__") and f"{path.stem}" not in text
    )
    assert not unnamed, f"docs/architecture.md does not name these modules: {unnamed}"
    silent = sorted(
        str(init.relative_to(ROOT))
        for top in TOPS
        for init in (ROOT / top).rglob("__init__.py")
        if len(ast.get_docstring(ast.parse(init.read_text())) or "") < 40
    )
    assert not silent, f"packages whose __init__ docstring does not say what lives there: {silent}"


def _libraries_loaded_by(imports: str, libraries: tuple[str, ...]) -> str:
    """Which of `libraries` a fresh interpreter has loaded after `import <imports>` (printed as a list)."""
    import subprocess
    import sys

    code = f"import sys, {imports}\nprint(sorted(name for name in {libraries!r} if name in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return loaded.stdout.strip() + loaded.stderr


def test_importing_the_package_loads_no_model_library():
    """`import replicate` and `import replicate.statistics` stay cheap: torch, transformers and Hydra load
    only when a model, a decoder or a config is first needed (a command's --help does not pay for them)."""
    imports = "replicate, replicate.statistics, replicate.schema, replicate.records"
    assert _libraries_loaded_by(imports, ("torch", "transformers", "hydra")) == "[]"


def test_importing_the_config_loads_no_model_library():
    """`import replicate.config` (every typed config: run, model, task, sampling, bootstrap) loads neither torch
    nor transformers: the method registry and the decoding loops load when a config is first typed."""
    imports = "replicate.config, tasks.config, replicate.core.model_config, replicate.core.sampling_config"
    assert _libraries_loaded_by(imports, ("torch", "transformers")) == "[]"
    assert _libraries_loaded_by("replicate.core.methods", ("torch",)) == "['torch']"  # the check can fail


# ------------------------------------------------------------------ the method registry

METHOD_NAMES = frozenset(path.stem for path in (ROOT / "conf" / "method").glob("*.yaml"))


def method_name_tests(path: Path, root: Path = ROOT) -> list[str]:
    """Where `path` tells methods apart by name: a comparison with a method's name (`== "autoregressive"`,
    `in ("hybrid", ...)`) or a literal list of two or more names (a `DRAFTING_METHODS` to compare with).
    A method says what it is through its registered config's traits (`replicate.core.methods.MethodTraits`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            literals = [item for operand in operands for item in getattr(operand, "elts", [operand])]
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            literals = node.elts if sum(_is_method_name(item) for item in node.elts) >= 2 else []
        else:
            continue
        names = sorted({item.value for item in literals if _is_method_name(item)})
        if names:
            found.append(f"{path.relative_to(root)}:{node.lineno} {', '.join(names)}")
    return sorted(set(found))


def _is_method_name(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in METHOD_NAMES


def test_no_code_tells_methods_apart_by_name():
    found = [problem for top in TOPS for path in sorted((ROOT / top).rglob("*.py"))
             for problem in method_name_tests(path)]  # fmt: skip
    assert not found, f"methods told apart by name (give the method config a trait instead): {found}"


def test_the_method_name_check_can_fail(tmp_path):
    source = tmp_path / "names.py"
    source.write_text(
        'DRAFTING = ("self_speculative", "adaptive_draft_exit")\n'
        'def f(method):\n    return method == "autoregressive" or method in ["hybrid"]\n'
        'LABEL = "autoregressive"\n'  # naming one method is fine: the registry finds it
    )
    assert method_name_tests(source, tmp_path) == [
        "names.py:1 adaptive_draft_exit, self_speculative",
        "names.py:3 autoregressive",
        "names.py:3 hybrid",
    ]
