"""An item converted where the run's scratch directory does not exist (a Dask worker on
another machine) works in scratch space of its own, which another batch starting on that
machine must not take for a killed run's, however long the conversion leaves it unchanged."""

from __future__ import annotations

import os
import tarfile
import tempfile
import time

import numpy as np

import converter
import converter.api as api
from converter.batch import scratch as scratch_module
from converter.batch import worker
from converter.batch.discover import discover


def test_a_live_items_own_scratch_survives_another_batch_starting(tmp_path, monkeypatch):
    base = tmp_path / "tmp"
    base.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    converter.write({"w": np.arange(6, dtype=np.float32)}, tmp_path / "a.npz")
    archive = tmp_path / "a.tar"  # a member the parent did not unpack: unpacked by the worker
    with tarfile.open(archive, "w") as tf:
        tf.add(tmp_path / "a.npz", "a.npz")
    (item,) = discover([str(archive)])
    job = worker.Job(str(tmp_path / "out"), "safetensors", scratch=str(tmp_path / "elsewhere"))
    survived = []
    convert = api.convert

    def slow_convert(src, dst, **kwargs):
        # Over an hour into a long conversion, another batch starts on this machine.
        (own,) = [p for p in base.iterdir() if p.is_dir()]
        old = time.time() - scratch_module.UNLOCKED_GRACE - 60
        os.utime(own, (old, old))
        scratch_module.Scratch().close()
        survived.append(os.path.isfile(src))
        return convert(src, dst, **kwargs)

    monkeypatch.setattr(api, "convert", slow_convert)
    result = worker.convert_item(item, job)
    assert survived == [True]
    assert result.status == "done", result.error
    assert list(base.iterdir()) == []  # and it is removed when the item is done
