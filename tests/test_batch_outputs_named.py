"""A batch item's outputs are the files its conversion committed, whatever files the format
splits an output into: a sharded safetensors output is shards and an index, no
NAME.safetensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import converter
from tests.helpers import assert_same


def _two_tensors(path: Path) -> dict:
    tensors = {"a": np.arange(1000, dtype=np.float32), "b": np.ones(1000, np.float32)}
    converter.write(tensors, path)
    return tensors


def test_sharded_safetensors_items_are_done_and_resumed(tmp_path):
    tensors = _two_tensors(tmp_path / "src" / "w.npz")
    out = tmp_path / "out"
    results = converter.batch([str(tmp_path / "src")], to="safetensors", out=out,
                              max_shard_size=4096)
    assert [(r.status, r.error) for r in results] == [("done", None)]
    assert (out / "src" / "w.safetensors.index.json").is_file()
    with converter.read(out / "src" / "w.safetensors.index.json") as ckpt:
        assert sorted(ckpt) == sorted(tensors)
        for name, value in tensors.items():
            assert_same(ckpt[name].read(), value, name)
    again = converter.batch([str(tmp_path / "src")], to="safetensors", out=out,
                            max_shard_size=4096, resume=True)
    assert [r.status for r in again] == ["skipped"]

