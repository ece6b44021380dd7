"""Checkpoints we write, read back and restored by TensorFlow itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import converter
from converter import registry
from tests.helpers import assert_same
from tests.samples import sample

ATTR = "/.ATTRIBUTES/VARIABLE_VALUE"


def tf_values(tf, prefix) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(prefix))
    return {k: np.asarray(reader.get_tensor(k)) for k in reader.get_variable_to_shape_map()}


def as_bytes_array(value: np.ndarray) -> np.ndarray:
    if value.dtype.hasobject or value.dtype.kind == "S":
        out = np.empty(value.shape, dtype=object)
        out.reshape(-1)[:] = [bytes(x) for x in value.reshape(-1)]
        return out
    return value


def test_tensorflow_reads_every_dtype(tf, tmp_path):
    data = sample(registry.get("tf").stored_dtypes)
    converter.write(data, tmp_path / "model.ckpt")
    theirs = tf_values(tf, tmp_path / "model.ckpt")
    assert sorted(theirs) == sorted(data)
    for name, value in data.items():
        got = as_bytes_array(theirs[name])
        assert got.dtype.name == value.dtype.name or got.dtype.hasobject, name
        assert_same(got.view(value.dtype) if not got.dtype.hasobject else got, value, name)
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt")


def test_sharded_output(tf, tmp_path):
    data = {f"layer_{i}/w": np.full((64, 64), i, np.float32) for i in range(6)}
    converter.write(data, tmp_path / "m.ckpt", max_shard_size=40_000)
    shards = sorted(p.name for p in tmp_path.glob("m.ckpt.data-*"))
    assert len(shards) == 3 and shards[0].endswith("-of-00003")
    theirs = tf_values(tf, tmp_path / "m.ckpt")
    for name, value in data.items():
        assert_same(theirs[name], value, name)
    with converter.read(tmp_path / "m.ckpt") as back:
        assert list(back) == list(data)


def test_saver_restores_our_tf1_checkpoint(tf, tf_fixtures, tmp_path):
    """A TF1 Adam checkpoint passed through us restores into a graph with tf.compat.v1.Saver."""
    src = tf_fixtures["tf1_adam"]["prefix"]
    converter.convert(src, tmp_path / "copy.ckpt", to="tf").close()
    with converter.read(src) as ckpt:
        want = {k: t.read().copy() for k, t in ckpt.items()}
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        variables = {
            name: v1.get_variable(name, shape=value.shape, dtype=tf.as_dtype(value.dtype),
                                  initializer=v1.zeros_initializer())
            for name, value in want.items()
        }
        saver = v1.train.Saver(var_list=variables)
        with v1.Session() as sess:
            saver.restore(sess, str(tmp_path / "copy.ckpt"))
            got = sess.run(variables)
    for name, value in want.items():
        assert_same(np.asarray(got[name]), value, name)


def _keras_model(tf, seed: int):
    keras2 = tf.keras
    keras2.utils.set_random_seed(seed)
    model = keras2.Sequential([
        keras2.Input(shape=(4,)), keras2.layers.Dense(8, name="dense"),
        keras2.layers.BatchNormalization(), keras2.layers.Dense(2, name="out"),
    ])
    model.compile(optimizer=keras2.optimizers.Adam(0.01), loss="mse")
    rng = np.random.default_rng(seed)
    model.train_on_batch(rng.standard_normal((8, 4)).astype(np.float32),
                         rng.standard_normal((8, 2)).astype(np.float32))
    return model


def test_tf2_checkpoint_passes_through_and_restores(tf, tf_fixtures, tmp_path):
    src = tf_fixtures["tf2_keras"]["prefix"]
    converter.convert(src, tmp_path / "ckpt-1", to="tf").close()
    with converter.read(src) as ckpt:
        want = {k: t.read().copy() for k, t in ckpt.items() if t.kind == "variable"}
    model = _keras_model(tf, seed=99)  # different weights than the fixture's
    status = tf.train.Checkpoint(model=model, optimizer=model.optimizer).restore(
        str(tmp_path / "ckpt-1"))
    status.assert_existing_objects_matched()
    restored = {v.name: v.numpy() for v in model.weights}
    assert len(restored) == len(want)
    expected_by_name = {}
    with converter.read(src) as ckpt:
        for k in want:
            expected_by_name[ckpt[k].attrs["full_name"] + ":0"] = want[k]
    for name, value in restored.items():
        assert_same(value, expected_by_name[name], name)


def test_tf2_object_graph_rebuilt_after_dropping_optimizer(tf, tf_fixtures, tmp_path):
    """Dropping entries makes the stored object graph stale; we write a new one that TF accepts."""
    with converter.read(tf_fixtures["tf2_keras"]["prefix"]) as ckpt:
        kept = {k: t.read().copy() for k, t in ckpt.items()
                if k.startswith(("model/", "save_counter/"))}
    converter.write(kept, tmp_path / "weights", format="tf")
    keras2 = tf.keras
    keras2.utils.set_random_seed(7)
    model = keras2.Sequential([  # no optimizer: the checkpoint no longer holds one
        keras2.Input(shape=(4,)), keras2.layers.Dense(8), keras2.layers.BatchNormalization(),
        keras2.layers.Dense(2),
    ])
    status = tf.train.Checkpoint(model=model).restore(str(tmp_path / "weights"))
    status.assert_existing_objects_matched()
    # TensorFlow saves what it restored; the keys must hold our values.
    tf.train.Checkpoint(model=model).write(str(tmp_path / "resaved"))
    resaved = tf_values(tf, tmp_path / "resaved")
    model_keys = [k for k in kept if k.startswith("model/")]
    assert len(model_keys) == 8
    for key in model_keys:
        assert_same(resaved[key], kept[key], key)


def test_existing_output_needs_force(tf, tmp_path):
    converter.write({"a": np.ones(2)}, tmp_path / "m", format="tf")
    with pytest.raises(converter.UsageError, match="already exists"):
        converter.write({"a": np.zeros(2)}, tmp_path / "m", format="tf")
    converter.write({"a": np.zeros(2)}, tmp_path / "m", format="tf", force=True)
    assert_same(tf_values(tf, tmp_path / "m")["a"], np.zeros(2))
    leftovers = [p.name for p in Path(tmp_path).iterdir() if ".tmp-" in p.name]
    assert not leftovers
