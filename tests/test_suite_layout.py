"""The test suite's own layout: shared helpers come from ``tests.helpers`` (and the other
helper modules of the ``tests`` package), fixtures from conftest.py; no test module imports
from conftest or from another test module, and none edits ``sys.path`` to find its helpers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
MODULES = sorted(HERE.glob("*.py"))


def _imported(tree: ast.Module) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
            if node.module == "tests":
                names += [f"tests.{alias.name}" for alias in node.names]
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_imports_name_the_tests_package(path):
    local = {p.stem for p in MODULES}
    for name in _imported(ast.parse(path.read_text())):
        parts = name.split(".")
        assert parts[0] not in local, f"{path.name}: import {name} (use tests.{name})"
        if parts[0] == "tests" and len(parts) > 1:
            assert parts[1] != "conftest", f"{path.name}: fixtures come from conftest by name"
            assert not parts[1].startswith("test_"), f"{path.name}: imports test module {name}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_module_edits_sys_path(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr == "path" and \
                isinstance(node.value, ast.Name) and node.value.id == "sys":
            pytest.fail(f"{path.name}:{node.lineno}: sys.path")
