"""Remote batch outputs whose names hold glob characters (``w[1]``) are uploaded as named:
local paths are files to send, not patterns to expand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import converter
from tests.helpers import assert_same


def test_remote_outputs_with_glob_characters_are_uploaded(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    tensors = {"a": np.arange(8, dtype=np.float32)}
    converter.write(tensors, tmp_path / "src" / "w[1].npz")
    results = converter.batch([str(tmp_path / "src")], to="tf", out="memory://globnames/out")
    assert [(r.status, r.error) for r in results] == [("done", None)]
    fs = fsspec.filesystem("memory")
    names = sorted(Path(p).name for p in fs.find("/globnames/out/src"))
    assert names == ["w[1].data-00000-of-00001", "w[1].index"]
    back = tmp_path / "back"
    back.mkdir()
    for name in names:
        fs.get_file(f"/globnames/out/src/{name}", str(back / name))
    with converter.read(back / "w[1]") as ckpt:
        assert_same(ckpt["a"].read(), tensors["a"])
