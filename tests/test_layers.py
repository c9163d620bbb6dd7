"""Imports point one way down the layers of docs/ARCHITECTURE.md.

Every ``import`` of every module of the package is parsed (deferred imports inside functions
included) and mapped to its layer; an import of a higher layer fails the test, unless it is one of
the :data:`KNOWN_UPWARD` arrows that the redesign of issue 18 has not cut yet. That list only
shrinks: an arrow that is cut but still listed fails the test too, so it must be struck off.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pdebench"

#: Bottom to top. A module's layer is that of its top-level subpackage or module of ``pdebench``.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core", "fft", "registry", "atomic", "signals"),
    ("equations",),
    ("problems",),
    ("solvers",),
    ("io",),
    ("data",),
    ("models",),
    ("training",),
    ("evaluation",),
    ("cli", "__main__"),
)

#: ``(importer, imported)`` arrows that still point up (to be cut by issue 18; never to be added to).
KNOWN_UPWARD: frozenset[tuple[str, str]] = frozenset()

RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    """Rank of ``pdebench.X...`` (the package itself, ``pdebench``, is the bottom)."""
    parts = module.split(".")
    if len(parts) == 1:
        return 0
    if parts[1] not in RANK:
        raise AssertionError(f"{module} belongs to no layer: add pdebench.{parts[1]} to LAYERS (and docs/ARCHITECTURE.md)")
    return RANK[parts[1]]


def imports_of(path: Path) -> set[str]:
    """The ``pdebench`` modules that ``path`` imports anywhere in its body (relative imports resolved)."""
    module = module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module and node.module.split(".")[0] == "pdebench":
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "pdebench"}
    return found


def upward_imports() -> set[tuple[str, str]]:
    arrows = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        arrows |= {(importer, imported) for imported in imports_of(path) if layer(imported) > layer(importer)}
    return arrows


def test_imports_point_down_the_layers():
    new = upward_imports() - KNOWN_UPWARD
    assert not new, "imports that point up the layers (docs/ARCHITECTURE.md): " + ", ".join(f"{a} -> {b}" for a, b in sorted(new))


def test_the_list_of_upward_imports_only_shrinks():
    cut = KNOWN_UPWARD - upward_imports()
    assert not cut, "these arrows are cut: strike them off KNOWN_UPWARD: " + ", ".join(f"{a} -> {b}" for a, b in sorted(cut))


def test_the_parser_sees_deferred_and_relative_imports():
    """The check itself: an import inside a function and a relative one are both found."""
    path = PACKAGE / "problems" / "base.py"
    assert "pdebench.core.grid_transfer" in imports_of(path)
    assert any(imported.startswith("pdebench.") for imported in imports_of(PACKAGE / "problems" / "__init__.py"))
    deferred = [p for p in PACKAGE.rglob("*.py") if any(isinstance(n, ast.FunctionDef) and any(
        isinstance(m, ast.ImportFrom) and (m.module or "").startswith("pdebench") for m in ast.walk(n))
        for n in ast.walk(ast.parse(p.read_text())))]
    assert deferred and all(imports_of(p) for p in deferred)


def module_imports() -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere (``from A import b`` names ``A.b`` when
    that is a module: a submodule imported through its package is not an import of the package)."""
    paths = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    graph = {}
    for module, path in paths.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "pdebench":
                subs = {f"{node.module}.{a.name}" for a in node.names} & set(paths)
                targets |= subs if len(subs) == len(node.names) else {node.module, *subs}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == "pdebench"}
        graph[module] = {t for t in targets if t in paths} - {module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_closes_a_cycle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check itself
    assert import_cycles({"a": {"b"}, "b": set()}) == []
    cycles = import_cycles(module_imports())
    assert not cycles, "import cycles (deferred imports included): " + "; ".join(" <-> ".join(c) for c in cycles)


#: Modules that may import the package inside a function body, each for its one reason.
DEFERRED_ALLOWED = {
    "pdebench.cli": "each command imports its layers when run: `pdebench --help` and a refusal need no torch",
    "pdebench.training.module": "matplotlib loads only when a rollout curve is drawn (core.plots)",
}


def test_internal_imports_are_deferred_only_where_a_reason_is_listed():
    deferred = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for function in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                    isinstance(n, ast.ImportFrom) and (n.module or "").startswith("pdebench")
                    or isinstance(n, ast.Import) and any(a.name.startswith("pdebench") for a in n.names)
                    for n in ast.walk(function)):
                deferred.add(module_name(path))
    assert deferred <= set(DEFERRED_ALLOWED), f"deferred internal imports in {sorted(deferred - set(DEFERRED_ALLOWED))}"
