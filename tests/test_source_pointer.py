"""Only TensorFlow's `checkpoint` state file beside a TF source is a pointer a TF output may
rewrite: a source of another format that happens to be named `checkpoint` is data."""

from __future__ import annotations

import numpy as np
import pytest

import converter
from converter.errors import ConverterWarning


def test_a_tf_output_never_replaces_a_source_named_checkpoint(tmp_path):
    src = tmp_path / "checkpoint"
    converter.write({"w": np.arange(3, dtype=np.float32)}, src, format="npz")
    before = src.read_bytes()
    with pytest.raises(converter.UsageError, match="checkpoint being converted"):
        converter.convert(src, tmp_path / "model.ckpt", to="tf", force=True)
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_the_state_file_of_a_named_directory_is_protected_wherever_it_points(tmp_path):
    converter.write({"w": np.arange(3, dtype=np.float32)}, tmp_path / "other" / "model.ckpt-5",
                    format="tf")
    run = tmp_path / "run"
    run.mkdir()
    state = run / "checkpoint"
    state.write_text('model_checkpoint_path: "../other/model.ckpt-5"\n', encoding="utf-8")
    with pytest.warns(ConverterWarning, match="outside"):
        with pytest.raises(converter.UsageError, match="checkpoint being converted"):
            converter.convert(run, state, to="npz", force=True)
    assert state.read_text(encoding="utf-8").startswith("model_checkpoint_path")
    with pytest.warns(ConverterWarning, match="outside"):
        converter.convert(run, run / "copy.ckpt", to="tf")  # a TF output still updates it
    with converter.read(run / "copy.ckpt") as back:
        assert back["w"].read().tolist() == [0.0, 1.0, 2.0]
    assert "copy.ckpt" in state.read_text(encoding="utf-8")
