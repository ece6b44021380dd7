"""A remote DIR's manifest is fetched once per run, in one request, and read as bytes, like a
local one: a line cut short mid-character is skipped with a warning, not a crash."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

import converter
from converter.batch import MANIFEST


@pytest.fixture
def memory_fs():
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    root = f"/manifest-{uuid.uuid4().hex}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def _reads(monkeypatch, fs, name: str) -> list[str]:
    calls: list[str] = []
    for method in ("exists", "info", "cat", "cat_file"):
        real = getattr(type(fs), method)

        def counted(self, path, *args, _real=real, _method=method, **kwargs):
            if str(path).endswith(name):
                calls.append(_method)
            return _real(self, path, *args, **kwargs)

        monkeypatch.setattr(type(fs), method, counted)
    return calls


@pytest.mark.parametrize("dry_run", [False, True])
def test_resume_fetches_the_remote_manifest_in_one_request(tmp_path, memory_fs, monkeypatch,
                                                           dry_run):
    fs, root = memory_fs
    converter.write({"w": np.arange(4, dtype=np.float32)}, tmp_path / "src" / "m.npz")
    out = f"memory://{root}/out"
    first = converter.batch([str(tmp_path / "src")], to="safetensors", out=out, jobs=1)
    assert [r.status for r in first] == ["done"]
    reads = _reads(monkeypatch, fs, MANIFEST)
    again = converter.batch([str(tmp_path / "src")], to="safetensors", out=out, jobs=1,
                            resume=True, dry_run=dry_run)
    assert [r.status for r in again] == ["skipped"]
    assert reads == ["cat_file"]


def test_a_remote_manifest_cut_mid_character_is_read_with_a_warning(tmp_path, memory_fs):
    fs, root = memory_fs
    converter.write({"w": np.arange(4, dtype=np.float32)}, tmp_path / "src" / "m.npz")
    out = f"memory://{root}/out"
    converter.batch([str(tmp_path / "src")], to="safetensors", out=out, jobs=1)
    # A record written with raw UTF-8 (by another tool), cut short inside the é.
    torn = json.dumps({"source": "caf\u00e9"}, ensure_ascii=False).encode("utf-8")[:-3]
    fs.pipe_file(f"{root}/out/{MANIFEST}", fs.cat_file(f"{root}/out/{MANIFEST}") + torn)
    with pytest.warns(converter.errors.ConverterWarning, match="not a whole record"):
        again = converter.batch([str(tmp_path / "src")], to="safetensors", out=out, jobs=1,
                                resume=True)
    assert [r.status for r in again] == ["skipped"]
