"""The package's import graph: no cycles, no module importing another module's underscore
names, and a private module (``formats/_common.py``) used only inside its package. Read from the
source with ``ast``, so lazy imports inside functions count too: they are cycles that only show
up at run time."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "converter"


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def _package_of(module: str) -> str:
    return module if MODULES[module][1] else module.rpartition(".")[0]


def _imports(module: str) -> list[tuple[str, str | None]]:
    """``(target module, imported name or None)`` for every import in ``module``."""
    path, _ = MODULES[module]
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names if a.name in MODULES]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(module).split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                if f"{target}.{alias.name}" in MODULES:
                    out.append((f"{target}.{alias.name}", None))
                elif target in MODULES:
                    out.append((target, alias.name))
    return out


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _ in _imports(m) if t != m} for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_private_names_from_outside():
    wrong = []
    for module in MODULES:
        home = _package_of(module)
        for target, name in _imports(module):
            parts = target.split(".")
            # converter.formats._common is private to converter.formats (and its subpackages).
            for i, part in enumerate(parts):
                if _private(part):
                    owner = ".".join(parts[:i])
                    if home != owner and not home.startswith(owner + "."):
                        wrong.append(f"{module} imports {target}")
                    break
            else:
                if name and _private(name):  # an underscore name is its module's own
                    wrong.append(f"{module} imports {target}.{name}")
    assert wrong == []
