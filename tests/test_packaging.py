"""What pyproject.toml ships: one version (``converter.__version__``), the ``py.typed`` marker,
and package data that exists in the package."""

from __future__ import annotations

from pathlib import Path

import pytest

import converter

tomllib = pytest.importorskip("tomllib")
ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(converter.__file__).parent


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_version_lives_in_the_package_only(pyproject):
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "converter.__version__"}


def test_package_data_names_files_of_the_package(pyproject):
    data = pyproject["tool"]["setuptools"]["package-data"]
    assert set(data) == {"converter"}
    for pattern in data["converter"]:
        assert any(PACKAGE.glob(pattern)), f"converter/{pattern} matches nothing"
    assert "py.typed" in data["converter"] and (PACKAGE / "py.typed").is_file()


def test_dev_extra_holds_the_checkers(pyproject):
    dev = " ".join(pyproject["project"]["optional-dependencies"]["dev"])
    for tool in ("pytest", "hypothesis", "ruff", "moto", "mypy"):
        assert tool in dev, tool


def test_model_families_ship_with_the_package(pyproject):
    """--to hf reads its families from package data: a wheel without them knows none."""
    patterns = pyproject["tool"]["setuptools"]["package-data"]["converter"]
    families = sorted((PACKAGE / "hf" / "families").glob("*.toml"))
    assert families
    for path in families:
        rel = path.relative_to(PACKAGE)
        assert any(rel.match(p) for p in patterns), f"converter/{rel} is not package data"
