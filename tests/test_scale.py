"""Bounded memory, streamed copies that still check crc32c, and sharded outputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import converter
from converter.errors import CorruptionError
from tests.helpers import assert_same, assert_same_checkpoint, need_disk

MiB = 2**20

# Run the conversion from a small launcher: a child forked from the (large) pytest process would
# start with the parent's peak RSS on record.
LAUNCHER = """
import os, subprocess, sys
p = subprocess.Popen([sys.executable, "-m", "converter", *sys.argv[1:]])
_, status, usage = os.wait4(p.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)
"""


def _lazy_big_checkpoint(n: int, shape: tuple[int, int]) -> converter.Checkpoint:
    def make(i: int):
        return lambda: np.full(shape, i, np.float32)

    return converter.Checkpoint({
        f"layer_{i}/kernel": converter.Tensor(f"layer_{i}/kernel", np.float32, shape, make(i))
        for i in range(n)
    })


@pytest.fixture(scope="module")
def big_bundle(tmp_path_factory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("big")
    need_disk(root, 2 * 8 * 2048 * 9600 * 4)  # the bundle and one converted copy
    # ~600 MiB
    converter.write(_lazy_big_checkpoint(8, (2048, 9600)), root / "model.ckpt", format="tf")
    yield root / "model.ckpt"
    shutil.rmtree(root)  # not kept to the end of the session: a small disk fills up


@pytest.mark.parametrize("out", ["x.safetensors", "x.h5", "x.npz", "y.ckpt"])
def test_converting_600_mib_stays_under_200_mib(big_bundle, tmp_path, out):
    data = big_bundle.with_name(big_bundle.name + ".data-00000-of-00001")
    assert data.stat().st_size > 580 * MiB
    result = subprocess.run(
        [sys.executable, "-c", LAUNCHER, "convert", str(big_bundle), str(tmp_path / out), "-q"],
        capture_output=True, text=True, check=True)
    code, peak = map(int, result.stdout.split())
    assert code == 0
    assert peak < 200 * MiB, f"peak RSS {peak / MiB:.0f} MiB"
    with converter.read(tmp_path / out) as back:
        assert back["layer_7/kernel"].shape == (2048, 9600)
        assert float(back["layer_7/kernel"].read()[-1, -1]) == 7.0


def test_streamed_copy_checks_crc(tmp_path):
    data = {"a": np.arange(1000, dtype=np.float32), "b": np.ones(10, np.float64)}
    converter.write(data, tmp_path / "m.ckpt")
    shard = tmp_path / "m.ckpt.data-00000-of-00001"
    raw = bytearray(shard.read_bytes())
    raw[100] ^= 1
    shard.write_bytes(bytes(raw))
    with pytest.raises(CorruptionError, match="'a'.*checksum"):
        converter.convert(tmp_path / "m.ckpt", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    # Told not to verify, the bytes are copied as they are.
    converter.convert(tmp_path / "m.ckpt", tmp_path / "out.safetensors",
                      read_options={"verify": False}).close()
    with converter.read(tmp_path / "out.safetensors") as back:
        assert back["a"].read().tobytes() == bytes(raw[:4000])


def test_truncated_source_stops_the_copy(tmp_path):
    converter.write({"a": np.arange(1000, dtype=np.float32)}, tmp_path / "a.safetensors")
    blob = (tmp_path / "a.safetensors").read_bytes()
    (tmp_path / "a.safetensors").write_bytes(blob[:-100])
    with pytest.raises(converter.FormatError):
        converter.convert(tmp_path / "a.safetensors", tmp_path / "b.npz")
    assert not (tmp_path / "b.npz").exists()


def test_sharded_safetensors(tmp_path):
    from safetensors.numpy import load_file

    data = {f"layer_{i}/w": np.full((50, 100), i, np.float32) for i in range(7)}  # 20 kB each
    converter.write(data, tmp_path / "model.safetensors", max_shard_size=45_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert shards == [f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)]
    assert index["metadata"]["total_size"] == 7 * 20_000
    merged = {}
    for shard in shards:
        merged.update(load_file(tmp_path / shard))
    for name, value in data.items():
        assert_same(merged[name], value, name)
    for source in (tmp_path, tmp_path / "model.safetensors.index.json"):
        with converter.read(source) as back:
            assert_same_checkpoint(back, data)
    assert not (tmp_path / "model.safetensors").exists()


def test_small_output_is_not_sharded(tmp_path):
    converter.write({"a": np.zeros(3)}, tmp_path / "m.safetensors", max_shard_size=10**9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
