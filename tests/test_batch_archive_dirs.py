"""Each archive of a batch is unpacked into a directory of its own, also when another
archive's directory was removed before it was unpacked."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

import converter
from converter.batch.discover import discover
from converter.batch.run import _Archives
from converter.batch.worker import Job


def test_an_archive_unpacked_after_another_finished_gets_its_own_directory(tmp_path):
    for name in ("a", "b", "c"):
        converter.write({"w": np.zeros(2, np.float32)}, tmp_path / "src" / name / "w.npz")
        with tarfile.open(tmp_path / f"{name}.tar", "w") as tf:
            tf.add(tmp_path / "src" / name, arcname=name)
    items = {Path(i.source).stem: i for i in
             discover([str(tmp_path / f"{n}.tar") for n in "abc"])}
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    archives = _Archives(list(items.values()), scratch, Job(out=str(tmp_path / "out"), to="npz"))
    a, b = archives.prepare(items["a"]), archives.prepare(items["b"])
    archives.finished(items["a"])
    c = archives.prepare(items["c"])
    assert c.unpacked != b.unpacked and c.unpacked != a.unpacked
    archives.finished(items["c"])
    assert (Path(b.unpacked) / b.read_as).exists()  # b's items may still be running
