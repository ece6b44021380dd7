"""Reader facts (``Checkpoint.source``) stay out of outputs; user metadata travels between files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import converter
from converter import Source
from converter.cli import main
from tests.helpers import assert_same_checkpoint

# What a TensorFlow reader finds out; none of it may appear in a written file.
FACTS = ("format", "layout", "prefix", "checkpoints", "num_shards", "global_step", "step",
         "saved_model", "source_format")


def _safetensors_metadata(path: Path) -> dict[str, str] | None:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return f.metadata()


def _npz_side(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if n.endswith(".json")]
        return json.loads(zf.read(names[0])) if names else {}


@pytest.mark.parametrize("name", ["tf1_adam", "tf2_keras", "savedmodel"])
def test_tf_reader_facts_are_not_written(tf_fixtures, tmp_path, name):
    entry = tf_fixtures[name]
    src = Path(entry["prefix"])
    if name == "savedmodel":
        src = src.parent.parent  # the SavedModel directory
    with converter.read(src) as ckpt:
        assert ckpt.metadata == {}
        assert ckpt.source.format == "tf" and ckpt.source.path == entry["prefix"]
        assert ckpt.source.layout in ("tf1", "tf2") and ckpt.source.shards >= 1
    assert main(["convert", str(src), str(tmp_path / "w.safetensors"), "-q"]) == 0
    assert _safetensors_metadata(tmp_path / "w.safetensors") is None
    assert main(["convert", str(src), str(tmp_path / "w.npz"), "-q"]) == 0
    assert not _npz_side(tmp_path / "w.npz").get("metadata")
    assert main(["convert", str(src), str(tmp_path / "w_npy"), "--to", "npy", "-q"]) == 0
    index = json.loads((tmp_path / "w_npy" / "converter-index.json").read_text())
    assert not index.get("metadata")


def test_tf_step_and_directory_are_source_facts(tf_fixtures, tmp_path):
    prefix = Path(tf_fixtures["tf1_adam"]["prefix"])
    with converter.read(prefix.parent) as ckpt:
        assert ckpt.source.step == 3 and ckpt.source.layout == "tf1"
        assert ckpt.source.checkpoints == ((str(prefix), 3),)
        converter.write(ckpt, tmp_path / "w.h5")
    import h5py

    with h5py.File(tmp_path / "w.h5") as f:
        assert not set(f.attrs) & set(FACTS), dict(f.attrs)


def test_metadata_of_another_tool_round_trips(tmp_path):
    from safetensors.numpy import save_file

    data = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(2, np.int64)}
    user = {"format": "pt", "note": "ünïcode"}
    save_file(data, str(tmp_path / "theirs.safetensors"), metadata=user)
    with converter.read(tmp_path / "theirs.safetensors") as ckpt:
        assert ckpt.metadata == user and ckpt.source.format == "safetensors"
    chain = ["x.npz", "x.h5", "x_npy", "back.safetensors"]
    src = tmp_path / "theirs.safetensors"
    for name in chain:
        dst = tmp_path / name
        converter.convert(src, dst, to="npy" if name.endswith("_npy") else None).close()
        with converter.read(dst) as back:
            assert back.metadata == user, name
            assert_same_checkpoint(back, data, ordered=False)
        src = dst
    assert _safetensors_metadata(tmp_path / "back.safetensors") == user


def test_sharded_safetensors_keep_metadata_and_count_shards(tmp_path):
    ckpt = converter.as_checkpoint({f"t{i}": np.full(100, i, np.float32) for i in range(4)})
    ckpt.metadata["note"] = "kept"
    converter.write(ckpt, tmp_path / "m.safetensors", max_shard_size=800)
    with converter.read(tmp_path / "m.safetensors.index.json") as back:
        assert back.metadata == {"note": "kept"}
        assert back.source.shards == 2
        assert back.source.path == str(tmp_path / "m.safetensors.index.json")


def test_inspect_shows_source_and_metadata(tf_fixtures, tmp_path, capsys):
    prefix = tf_fixtures["tf1_adam"]["prefix"]
    assert main(["inspect", prefix, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metadata"] == {}
    assert report["source"] == {"format": "tf", "path": prefix, "layout": "tf1", "step": 3,
                                "shards": 1}
    ckpt = converter.as_checkpoint({"w": np.zeros(2, np.float32)})
    ckpt.metadata.update({"format": "pt", "origin": "test"})
    converter.write(ckpt, tmp_path / "m.safetensors")
    assert main(["inspect", str(tmp_path / "m.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "format safetensors" in out and "  format: pt" in out and "  origin: test" in out
    assert main(["inspect", str(tmp_path / "m.safetensors"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metadata"] == {"format": "pt", "origin": "test"}
    assert report["source"]["format"] == "safetensors"


def test_source_is_frozen_and_carried_through_rules():
    src = Source("tf", "m.ckpt", "tf1", step=7, checkpoints=[["a", 1]], facts={"k": "v"})
    with pytest.raises(AttributeError):
        src.step = 8  # type: ignore[misc]
    with pytest.raises(TypeError):
        src.facts["k"] = "w"  # type: ignore[index]
    assert src.checkpoints == (("a", 1),)
    ckpt = converter.Checkpoint({"a": converter.Tensor.from_array("a", np.zeros(1))},
                                {"note": "n"}, source=src)
    out = converter.rules.Rules().add_prefix("p/").apply(ckpt)
    assert out.source is src and out.metadata == {"note": "n"}
