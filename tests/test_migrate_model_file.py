"""``--model FILE:FUNCTION`` naming a file Python cannot import as a module."""

from __future__ import annotations

import os

import pytest

from converter.errors import UsageError
from converter.migrate import load_factory


def test_model_file_without_python_suffix_is_named(tmp_path, monkeypatch):
    # A path with a separator is read as a file; without ``.py`` importlib finds no loader.
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "build").write_text("def build():\n    return 1\n")
    monkeypatch.chdir(tmp_path)
    spec = f"models{os.sep}build:build"
    with pytest.raises(UsageError) as info:
        load_factory(spec)
    message = str(info.value)
    assert message.startswith(f"--model {spec!r}: ")
    assert "not a Python file" in message
    assert "NoneType" not in message
