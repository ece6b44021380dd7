"""A TF checkpoint with an empty prefix (``run/.index``, from ``saver.save(sess, "run/")``)
given to batch by one of its files fails as an item with a one-line reason; it does not stop
the batch with a traceback."""

from __future__ import annotations

import numpy as np

import converter


def test_an_unnamed_prefix_fails_alone(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".index").write_bytes(b"")
    (run / ".data-00000-of-00001").write_bytes(b"")
    converter.write({"w": np.arange(3, dtype=np.float32)}, tmp_path / "m.npz")
    sources = [str(run / ".index"), str(run / ".data-00000-of-00001"), str(tmp_path / "m.npz")]
    results = converter.batch(sources, to="safetensors", out=str(tmp_path / "out"),
                              dry_run=True)
    assert [r.status for r in results] == ["failed", "failed", "planned"]
    for r in results[:2]:
        assert r.error.startswith(r.source + ": a TF checkpoint with no name before")
        assert "\n" not in r.error
