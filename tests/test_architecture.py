"""Layering rules of the package, checked on its source (AST): no import cycle, short functions, no uphill imports."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "volo_deploy"
# Files written out for devices (run there, not imported by the package).
TEMPLATES = PACKAGE / "export" / "jetson_bundle" / "templates"
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package (templates excluded)."""
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if TEMPLATES in path.parents:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module name of a (possibly relative) ``from ... import``."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imported(module: str, path: Path) -> set[str]:
    """Every ``volo_deploy`` name imported anywhere in the module (function bodies included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, path, node)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n == "volo_deploy" or n.startswith("volo_deploy.")}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (a name resolves to its longest module prefix)."""
    mods = _modules()

    def resolve(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for module, path in mods.items():
        targets = {resolve(name) for name in _imported(module, path)}
        # Importing a submodule runs its package's __init__: that edge is implied, not a design choice.
        graph[module] = {t for t in targets if t and t != module and not module.startswith(t + ".")}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Components of more than one module (Tarjan), i.e. the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_cycle_finder_sees_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]


def test_relative_imports_resolve():
    tree = ast.parse("from ..artifacts import atomic_write\nfrom . import layouts\n")
    path = PACKAGE / "data" / "samples.py"
    first, second = tree.body
    assert _absolute("volo_deploy.data.samples", path, first) == "volo_deploy.artifacts"
    assert _absolute("volo_deploy.data.samples", path, second) == "volo_deploy.data"


def test_no_import_cycle():
    cycles = strongly_connected(import_graph())
    assert not cycles, "import cycles (imports inside functions count):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_function_over_60_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if TEMPLATES in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                lines = node.end_lineno - start + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_backends_and_export_do_not_import_upward():
    upward = []
    for module, targets in import_graph().items():
        if module.startswith(("volo_deploy.backends", "volo_deploy.export")):
            bad = sorted(t for t in targets if t.startswith(("volo_deploy.cli", "volo_deploy.harness")))
            upward += [f"{module} -> {t}" for t in bad]
    assert not upward, "backends/ and export/ must not import cli/ or harness/:\n" + "\n".join(upward)


# Where ``print`` may appear: the CLIs' own output, and ``if __name__ == "__main__":`` script blocks.
PRINT_ALLOWED = (PACKAGE / "cli",)


def _is_main_guard(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and isinstance(node.test.left, ast.Name)
            and node.test.left.id == "__name__")


def print_uses(tree: ast.AST, name: str) -> list[str]:
    """``name:line`` of every use of ``print`` (called or passed, e.g. ``log=print``) outside a main guard."""
    hits: list[str] = []

    def visit(node: ast.AST) -> None:
        if _is_main_guard(node):
            return
        if isinstance(node, ast.Name) and node.id == "print":
            hits.append(f"{name}:{node.lineno}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return hits


def test_print_finder_sees_calls_and_callbacks_not_main_blocks():
    src = "def f(log=print):\n    print('x')\nif __name__ == '__main__':\n    print('ok')\n"
    assert print_uses(ast.parse(src), "m") == ["m:1", "m:2"]


def test_library_code_never_prints():
    """Library modules log (``logging.getLogger(__name__)``, configured by the CLIs); only cli/ prints."""
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if TEMPLATES in path.parents or any(d in path.parents for d in PRINT_ALLOWED):
            continue
        hits += print_uses(ast.parse(path.read_text(), str(path)), str(path.relative_to(PACKAGE.parent)))
    assert not hits, "print in library code (use a module logger):\n" + "\n".join(hits)
