"""Only TensorFlow's `checkpoint` state file beside a TF source is a pointer a TF output may
rewrite: a source of another format that happens to be named `checkpoint` is data."""

from __future__ import annotations

import numpy as np
import pytest

import converter


def test_a_tf_output_never_replaces_a_source_named_checkpoint(tmp_path):
    src = tmp_path / "checkpoint"
    converter.write({"w": np.arange(3, dtype=np.float32)}, src, format="npz")
    before = src.read_bytes()
    with pytest.raises(converter.UsageError, match="checkpoint being converted"):
        converter.convert(src, tmp_path / "model.ckpt", to="tf", force=True)
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
