"""The search for what killed writers left removes only what is recognisably ours: a dated
backup whose name happens to fit the pattern (``.run.old-20240101``: eight digits are hex too)
is the user's, whatever its age."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

import converter
from converter import _tempfiles


def _age(path: Path) -> None:
    old = time.time() - _tempfiles.STALE_AFTER - 3600
    os.utime(path, (old, old), follow_symlinks=False)


def test_dated_backups_beside_an_output_are_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(_tempfiles, "_swept", {})
    out = tmp_path / "out"
    backup = out / ".run.old-20240101"  # a training run put aside on New Year's day
    converter.write({"w": np.zeros(3, np.float32)}, backup / "model.ckpt-1", format="tf")
    (backup / "events.out.tfevents.1").write_bytes(b"logs")
    weights = out / ".weights.old-20231231.h5"
    weights.write_bytes(b"the user's old weights")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    for p in [*out.rglob("*"), backup]:
        _age(p)
    converter.write({"x": np.ones(2)}, out / "new.npz")
    after = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert after == sorted([*before, Path("new.npz")])
