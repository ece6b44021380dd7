"""Differential tests: checkpoints written by TensorFlow, read by us without TensorFlow, compared
bit-exact with what ``tf.train.load_checkpoint`` returns for the same files."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import converter
from converter.errors import CorruptionError, FormatError
from tests.helpers import assert_same

FIXTURES = ["tf1_adam", "tf1_partitioned", "tf1_strings", "all_dtypes", "sharded",
            "sharded_sliced", "tf2_keras", "tf2_keras_save_weights", "keras3_ckpt",
            "savedmodel", "tf1_ema"]


def expected(entry: dict) -> dict:
    with open(entry["expected"], "rb") as f:
        return pickle.load(f)


@pytest.mark.parametrize("name", FIXTURES)
def test_matches_tensorflow(tf_fixtures, name):
    entry = tf_fixtures[name]
    if entry.get("skipped"):
        pytest.skip(entry["notes"])
    want = expected(entry)
    with converter.read(entry["prefix"]) as ckpt:
        assert sorted(ckpt) == sorted(want)
        for key, value in want.items():
            t = ckpt[key]
            assert t.shape == value.shape and t.dtype == value.dtype, key
            assert_same(t.read(), value, key)


def test_every_dtype_is_covered(tf_fixtures):
    want = expected(tf_fixtures["all_dtypes"])
    for dtype in ("float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64",
                  "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "complex128",
                  "string"):
        assert f"t_{dtype}" in want


def test_tf1_kinds(tf_fixtures):
    with converter.read(tf_fixtures["tf1_adam"]["prefix"]) as ckpt:
        kinds = {name: t.kind for name, t in ckpt.items()}
    assert kinds["dense/kernel"] == "variable"
    assert kinds["dense/kernel/Adam_1"] == "slot"
    assert kinds["beta1_power"] == "slot"
    assert kinds["global_step"] == "counter"


@pytest.mark.parametrize("name", ["tf2_keras", "keras3_ckpt"])
def test_tf2_object_graph_classifies(tf_fixtures, name):
    with converter.read(tf_fixtures[name]["prefix"]) as ckpt:
        assert ckpt.source.layout == "tf2"
        by_kind: dict[str, list[str]] = {}
        for key, t in ckpt.items():
            by_kind.setdefault(t.kind, []).append(key)
        assert by_kind["object_graph"] == ["_CHECKPOINTABLE_OBJECT_GRAPH"]
        variables = {ckpt[k].attrs["full_name"] for k in by_kind["variable"]}
    if name == "tf2_keras":
        assert {"dense/kernel", "dense/bias", "out/kernel", "batch_normalization/moving_mean"} \
            <= variables
        assert len(by_kind["slot"]) >= 8  # Adam m and v for each trainable weight
    else:
        # Keras 3 keeps model weights under optimizer/_trainable_variables/N: still variables.
        assert all(k.startswith("optimizer/_trainable_variables/") for k in by_kind["variable"])
        assert len(by_kind["variable"]) == 4 and len(by_kind["slot"]) >= 8
        for key in by_kind["variable"]:
            assert ckpt[key].attrs["object_path"].startswith("model/")
    assert any(k.startswith("optimizer/_iterations") for k in by_kind["counter"])


def test_accepts_index_data_and_directory(tf_fixtures):
    prefix = Path(tf_fixtures["tf1_adam"]["prefix"])
    want = sorted(expected(tf_fixtures["tf1_adam"]))
    for path in (prefix, prefix.with_name(prefix.name + ".index"),
                 prefix.with_name(prefix.name + ".data-00000-of-00001"), prefix.parent):
        with converter.read(path) as ckpt:
            assert sorted(ckpt) == want
            assert ckpt.source.step == 3


def test_savedmodel_directory(tf_fixtures):
    sm = Path(tf_fixtures["savedmodel"]["prefix"]).parent.parent
    with converter.read(sm) as ckpt:
        assert "kernel/.ATTRIBUTES/VARIABLE_VALUE" in ckpt


def test_verify_off_skips_crc(tf_fixtures, tmp_path):
    src = Path(tf_fixtures["tf1_adam"]["prefix"])
    prefix = _copy(src, tmp_path)
    data = prefix.with_name(prefix.name + ".data-00000-of-00001")
    raw = bytearray(data.read_bytes())
    raw[5] ^= 0x40
    data.write_bytes(bytes(raw))
    with converter.read(prefix) as ckpt:
        with pytest.raises(CorruptionError, match="checksum"):
            for t in ckpt.values():
                t.read()
    with converter.read(prefix, verify=False) as ckpt:
        for t in ckpt.values():
            t.read()


def test_truncated_shard_is_a_clear_error(tf_fixtures, tmp_path):
    prefix = _copy(Path(tf_fixtures["tf1_adam"]["prefix"]), tmp_path)
    data = prefix.with_name(prefix.name + ".data-00000-of-00001")
    data.write_bytes(data.read_bytes()[:50])
    with converter.read(prefix) as ckpt:
        with pytest.raises(CorruptionError, match="truncated"):
            for t in ckpt.values():
                t.read()


def test_corrupt_index_is_a_clear_error(tf_fixtures, tmp_path):
    prefix = _copy(Path(tf_fixtures["tf1_adam"]["prefix"]), tmp_path)
    index = prefix.with_name(prefix.name + ".index")
    raw = bytearray(index.read_bytes())
    raw[20] ^= 0xFF
    index.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=r"\.index"):
        converter.read(prefix)
    index.write_bytes(bytes(raw[:30]))
    with pytest.raises(FormatError, match=r"\.index"):
        converter.read(prefix)


def _copy(prefix: Path, dst: Path) -> Path:
    import shutil

    for f in prefix.parent.glob(prefix.name + ".*"):
        shutil.copy(f, dst / f.name)
    return dst / prefix.name


def test_pre_2016_v1_checkpoint(tf, tmp_path):
    import subprocess
    import sys

    import numpy as np

    v1 = tf.compat.v1
    with tf.Graph().as_default():
        value = np.arange(6, dtype=np.float32).reshape(2, 3)
        v1.get_variable("w", initializer=value)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            v1.train.Saver(write_version=v1.train.SaverDef.V1).save(
                sess, str(tmp_path / "old.ckpt"), write_meta_graph=False)
    assert not (tmp_path / "old.ckpt.index").exists()
    with converter.read(tmp_path / "old.ckpt") as ckpt:  # through TensorFlow
        assert ckpt.source.layout == "tf1-v1"
        assert_same(ckpt["w"].read(), value)
    # Without TensorFlow: a clear error that says what is needed.
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "from converter.cli import main\n"
            f"sys.exit(main(['inspect', {str(tmp_path / 'old.ckpt')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert "needs TensorFlow" in result.stderr and "Traceback" not in result.stderr
