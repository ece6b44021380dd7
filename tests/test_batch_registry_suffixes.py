"""Batch discovery asks the format registry which files are checkpoints: a format registered with
a new suffix is found in directories, archives and remote listings without batch knowing it, and
the TF bundle layout claims only the names the registry gives to TensorFlow (the longest suffix
wins, as everywhere else)."""

from __future__ import annotations

import tarfile
import uuid
from pathlib import Path

import numpy as np
import pytest

import converter
from converter import registry
from converter.batch.items import is_checkpoint_name
from converter.registry import Format

# Plain, ending like a TF bundle's index, ending like a Hugging Face shard index.
SUFFIXES = [".tst", ".vec.index", ".tst.index.json"]


@pytest.fixture(params=SUFFIXES)
def suffix(request):
    # The registered format reads npz files: its reader is not what is under test.
    registry.register(Format("tstfmt", (request.param,), "converter.formats.npz"))
    try:
        yield request.param
    finally:
        registry.unregister("tstfmt")


def _checkpoint(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "src" / name
    converter.write({"w": np.arange(6, dtype=np.float32)}, tmp_path / "m.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "m.npz").rename(path)
    return path


def _planned(source: str, out: Path) -> list[tuple[str, str, str | None]]:
    results = converter.batch([source], to="safetensors", out=str(out), dry_run=True)
    return [(r.source, r.status, r.format) for r in results]


def test_directories_and_files_with_a_registered_suffix_are_found(tmp_path, suffix):
    path = _checkpoint(tmp_path, "m" + suffix)
    expected = [(str(path), "planned", "tstfmt")]
    assert _planned(str(path.parent), tmp_path / "out") == expected
    assert _planned(str(path), tmp_path / "out") == expected
    assert is_checkpoint_name(path.name)


def test_archive_members_with_a_registered_suffix_are_found(tmp_path, suffix):
    path = _checkpoint(tmp_path, "m" + suffix)
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(path, path.name)
    assert _planned(str(archive), tmp_path / "out") == [
        (f"{archive}::{path.name}", "planned", "tstfmt")]


def test_remote_objects_with_a_registered_suffix_are_found(tmp_path, suffix):
    fsspec = pytest.importorskip("fsspec")
    path = _checkpoint(tmp_path, "m" + suffix)
    fs = fsspec.filesystem("memory")
    root = f"/suffixes-{uuid.uuid4().hex}"
    fs.put_file(str(path), f"{root}/src/{path.name}")
    try:
        assert _planned(f"memory://{root}/src", tmp_path / "out") == [
            (f"memory://{root}/src/{path.name}", "planned", "tstfmt")]
    finally:
        fs.rm(root, recursive=True)


def test_the_bundle_layout_still_claims_its_own_names():
    assert not is_checkpoint_name("model.ckpt-10.index")
    assert not is_checkpoint_name("model.ckpt-10.data-00000-of-00001")
    assert not is_checkpoint_name("model.safetensors.index.json")  # its shards are found
    assert is_checkpoint_name("model.ckpt-1000")  # a pre-2016 single file with its step
    assert is_checkpoint_name("model-00001-of-00002.safetensors")
    assert not is_checkpoint_name("notes.index.json")
    assert not is_checkpoint_name("notes.txt")
