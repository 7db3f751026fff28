"""The layers of the package, read from the imports (AST): spec <- reference <- conformance <- gen, docsgen <- cli.
No module imports from a higher layer, and no modules import each other in a cycle, whether the import is at
the top of the file or inside a function (where it would only hide the cycle)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from typecheck import module_name, package_dir

#: Layer of each part of the package; a module may import only from its own layer or lower ones.
LAYERS: dict[str, int] = {
    "pvmsi.spec": 0,
    "pvmsi.reference": 1,
    "pvmsi.conformance": 2,
    "pvmsi.gen": 3,
    "pvmsi.docsgen": 3,
    "pvmsi.cli": 4,
    "pvmsi.__main__": 4,
    "pvmsi": 0,  # the package's own __init__: the version, from spec
}


def layer_of(module: str) -> tuple[str, int]:
    part = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return part, LAYERS[part]


def modules() -> dict[str, Path]:
    """Every module of the installed package, by name."""
    return {
        module_name(package, folder, path): path
        for package, folder in package_dir().items()
        for path in sorted(folder.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def imports(module: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """The pvmsi modules ``module`` imports (``from X import Y`` names module X.Y where that is one), with lines."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([node.module] if node.module else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            if target == "pvmsi" or target.startswith("pvmsi."):
                yield target, node.lineno


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: {t for t, _ in imports(m, p, known) if t != m} for m, p in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in edges:
                continue
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_from_a_higher_layer() -> None:
    known = modules()
    upward = []
    for module, path in known.items():
        name, rank = layer_of(module)
        for target, line in imports(module, path, known):
            target_name, target_rank = layer_of(target)
            if target_rank > rank:
                upward.append(f"{path}:{line}: {module} ({name}) imports {target} ({target_name})")
    assert upward == []


def test_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_the_checks_see_a_cycle_and_an_upward_import() -> None:
    """The two checks above would fail on a cycle and on an upward import (so they can fail)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert layer_of("pvmsi.reference.backend")[1] < layer_of("pvmsi.conformance.runner")[1]
    edges = graph()
    assert "pvmsi.spec.iut" in edges["pvmsi.reference.backend"]  # from ..spec.iut import (...)
    assert "pvmsi.spec.layout" in edges["pvmsi.spec.codec"]
    assert "pvmsi.conformance.connect" in edges["pvmsi.conformance.runner"]  # an import inside a function
