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
