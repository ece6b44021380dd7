"""Rename rules end to end against TensorFlow: checkpoints written by TF in the test (or by
tests/tf_fixtures.py), converted with rules, restored by TF/Keras."""

from __future__ import annotations

import argparse
import pickle

import numpy as np
import pytest

import converter
from converter.cli.rule_args import add_rule_args, rules_from_args
from converter.rules import Rules
from tests.helpers import assert_same, tf1_lstm_checkpoint

UNITS, STEPS, FEATURES, BATCH = 5, 4, 3, 2


def _expected(entry: dict) -> dict:
    with open(entry["expected"], "rb") as f:
        return pickle.load(f)


def _fixture(tf_fixtures: dict, name: str) -> dict:
    entry = tf_fixtures[name]
    if entry.get("skipped"):
        pytest.skip(entry["notes"])
    return entry


def _flags(*argv: str) -> Rules:
    parser = argparse.ArgumentParser()
    add_rule_args(parser)
    rules = rules_from_args(parser.parse_args(list(argv)))
    assert rules is not None
    return rules


def _restore(tf, prefix, build, var_list=None) -> dict[str, np.ndarray]:
    """Build a TF1 graph with ``build()`` (returning its variables), restore ``prefix`` into
    ``var_list(variables)`` (default: all), and return every variable's value."""
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        variables = build()
        restored = variables if var_list is None else var_list(variables)
        with v1.Session() as sess:
            sess.run(v1.variables_initializer([v for v in variables if v not in restored]))
            v1.train.Saver(var_list=restored).restore(sess, str(prefix))
            return {v.op.name: sess.run(v) for v in variables}


# ----------------------------------------------------------------------------- LSTM


@pytest.mark.filterwarnings("ignore:`tf.nn.rnn_cell")
@pytest.mark.parametrize("cell_name, forget_bias", [("LSTMCell", 1.0), ("BasicLSTMCell", 1.0),
                                                    ("BasicLSTMCell", 0.25)])
def test_tf1_lstm_to_keras_lstm(tf, tmp_path, cell_name, forget_bias):
    import keras

    x = np.random.default_rng(0).standard_normal((BATCH, STEPS, FEATURES)).astype(np.float32)
    scope = "lstm_cell" if cell_name == "LSTMCell" else "basic_lstm_cell"  # TF1's defaults
    expected, prefix = tf1_lstm_checkpoint(tf, tmp_path / cell_name / "model.ckpt", x, UNITS,
                                           cell_name=cell_name, scope=scope,
                                           forget_bias=forget_bias)
    options = {} if forget_bias == 1.0 else {"forget_bias": forget_bias}
    rules = Rules().preset("tf1-lstm-to-keras", **options).strip_prefix("rnn/")
    out = tmp_path / "keras_lstm.npz"
    converter.write(rules.apply(converter.read(prefix)), out)
    with converter.read(out) as ckpt:
        assert sorted(ckpt) == sorted(f"{scope}/{n}" for n in ("kernel", "recurrent_kernel",
                                                                 "bias"))
        weights = [np.asarray(ckpt[f"{scope}/{n}"]) for n in ("kernel", "recurrent_kernel",
                                                              "bias")]
    layer = keras.layers.LSTM(UNITS, return_sequences=True, name="lstm")
    layer.build((None, STEPS, FEATURES))
    layer.set_weights(weights)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- seed cases


def test_map_v1_to_other_v1(tf, tmp_path):
    v1 = tf.compat.v1
    values = {"v1": np.arange(6, dtype=np.float32).reshape(2, 3), "v2": np.float32([1.5, -2])}
    with tf.Graph().as_default():
        for name, value in values.items():
            tf.Variable(value, name=name)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            prefix = v1.train.Saver().save(sess, str(tmp_path / "src" / "model.ckpt"))
    dst = tmp_path / "dst"
    dst.mkdir()
    converter.convert(prefix, dst / "model.ckpt", to="tf", rules=_flags("--map", "v1=other-v1"))

    def build():
        return [tf.Variable(tf.zeros([2, 3]), name="other-v1"), tf.Variable(tf.zeros([2]),
                                                                            name="v2")]

    got = _restore(tf, dst / "model.ckpt", build)
    assert_same(got["other-v1"], values["v1"])
    assert_same(got["v2"], values["v2"])


def _dense(tf, x, scope: str, units: int):
    v1 = tf.compat.v1
    with v1.variable_scope(scope):
        w = v1.get_variable("weights", [x.shape[1], units])
        b = v1.get_variable("biases", [units], initializer=v1.random_normal_initializer())
    return tf.nn.relu(tf.matmul(x, w) + b), [w, b]


REUSE_RULES = """
[[rule]]
preset = "drop-optimizer"

[[rule]]
only = "hidden[123]/*"

[[rule]]
rename = 'hidden([123])/'
to = 'dnn/layer\\1/'
"""


def test_reuse_hidden_layers_in_a_new_net(tf, tmp_path):
    v1 = tf.compat.v1
    rng = np.random.default_rng(2)
    with tf.Graph().as_default():
        v1.set_random_seed(2)
        x = tf.constant(rng.standard_normal((16, 8)).astype(np.float32))
        h = x
        for i, units in enumerate((6, 6, 5), 1):
            h, _ = _dense(tf, h, f"hidden{i}", units)
        logits, _ = _dense(tf, h, "softmax_linear", 3)
        step = v1.train.get_or_create_global_step()
        train = v1.train.AdamOptimizer(0.05).minimize(tf.reduce_mean(logits ** 2),
                                                      global_step=step)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            for _ in range(3):
                sess.run(train)
            trained = {v.op.name: sess.run(v) for v in v1.trainable_variables()}
            prefix = v1.train.Saver().save(sess, str(tmp_path / "old" / "model.ckpt"),
                                           global_step=step)
    (tmp_path / "reuse.toml").write_text(REUSE_RULES)
    rules = Rules.from_toml(tmp_path / "reuse.toml")
    new_prefix = tmp_path / "new" / "model.ckpt"
    new_prefix.parent.mkdir()
    converter.write(rules.apply(converter.read(prefix)), new_prefix, format="tf")
    assert sorted(name for name, _ in tf.train.list_variables(str(new_prefix))) == sorted(
        f"dnn/layer{i}/{n}" for i in (1, 2, 3) for n in ("weights", "biases"))

    def build():
        h, variables = tf.constant(np.zeros((1, 8), np.float32)), []
        for i, units in enumerate((6, 6, 5, 4), 1):
            h, new = _dense(tf, h, f"dnn/layer{i}", units)
            variables += new
        return variables

    got = _restore(tf, new_prefix, build, lambda vs: [v for v in vs if "layer4" not in v.name])
    for i in (1, 2, 3):
        for n in ("weights", "biases"):
            assert_same(got[f"dnn/layer{i}/{n}"], trained[f"hidden{i}/{n}"])
    assert got["dnn/layer4/weights"].shape == (5, 4)


def test_use_ema_restores_shadows_like_variables_to_restore(tf, tf_fixtures, tmp_path):
    entry = _fixture(tf_fixtures, "tf1_ema")
    dst = tmp_path / "ema" / "model.ckpt"
    dst.parent.mkdir()
    converter.write(_flags("--preset", "use-ema").apply(converter.read(entry["prefix"])), dst,
                    format="tf")
    v1 = tf.compat.v1

    def build():
        return [v1.get_variable("w", [3, 2]), v1.get_variable("b", [2])]

    got = _restore(tf, dst, build)
    with tf.Graph().as_default():  # what TensorFlow's own EMA restore gives
        variables = build()
        ema = v1.train.ExponentialMovingAverage(0.9)
        with v1.Session() as sess:
            v1.train.Saver(ema.variables_to_restore(variables)).restore(sess, entry["prefix"])
            want = {v.op.name: sess.run(v) for v in variables}
    want_file = _expected(entry)
    for name in ("w", "b"):
        assert_same(got[name], want[name], name)
        assert_same(got[name], want_file[f"{name}/ExponentialMovingAverage"], name)


@pytest.mark.parametrize("name, kept, readable", [
    ("tf1_adam", ["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"], None),
    ("tf2_keras", None, ["dense/kernel", "dense/bias", "batch_normalization/gamma",
                         "batch_normalization/beta", "batch_normalization/moving_mean",
                         "batch_normalization/moving_variance", "out/kernel", "out/bias"]),
    ("keras3_ckpt", None, ["sequential/dense/kernel", "sequential/dense/bias",
                           "sequential/dense_1/kernel", "sequential/dense_1/bias"]),
])
def test_drop_optimizer_keeps_exactly_the_model_weights(tf_fixtures, name, kept, readable):
    entry = _fixture(tf_fixtures, name)
    want = _expected(entry)
    with converter.read(entry["prefix"]) as ckpt:
        out = Rules().preset("drop-optimizer").apply(ckpt)
        if kept is not None:
            assert sorted(out) == sorted(kept)
        else:
            assert sorted(ckpt[k].attrs["full_name"] for k in out) == sorted(readable)
            named = Rules().preset("drop-optimizer").preset("tf2-names").apply(ckpt)
            assert list(named) == readable
            for new, old in zip(named, out, strict=True):
                assert_same(named[new].read(), want[old], new)
        for key in out:
            assert_same(out[key].read(), want[key], key)


def test_tf2_keras_without_optimizer_restores_into_a_model(tf, tf_fixtures, tmp_path):
    entry = _fixture(tf_fixtures, "tf2_keras")
    dst = tmp_path / "model" / "ckpt"
    dst.parent.mkdir()
    converter.write(_flags("--preset", "drop-optimizer").apply(converter.read(entry["prefix"])),
                    dst, format="tf")
    # tf-keras: the fixture's architecture, fresh and untrained. Explicit names leave Keras's
    # global name counters alone (other tests expect the default names).
    layers = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input(shape=(4,), name="x"), layers.Dense(8, name="dense"),
        layers.BatchNormalization(name="batch_normalization"), layers.Dense(2, name="out"),
    ], name="sequential")
    tf.train.Checkpoint(model=model).read(str(dst)).assert_existing_objects_matched()
    want = _expected(entry)
    for i, layer in enumerate(layer for layer in model.layers if layer.weights):
        for weight in layer.weights:
            leaf = weight.name.split("/")[-1].split(":")[0]
            key = f"model/layer_with_weights-{i}/{leaf}/.ATTRIBUTES/VARIABLE_VALUE"
            assert_same(weight.numpy(), want[key], key)


def test_keras3_weights_by_readable_name(tf_fixtures):
    keras = pytest.importorskip("keras")
    entry = _fixture(tf_fixtures, "keras3_ckpt")
    rules = Rules().preset("drop-optimizer").preset("tf2-names")
    model = keras.Sequential([keras.Input(shape=(4,), name="x"),
                              keras.layers.Dense(8, name="dense"),
                              keras.layers.Dense(2, name="dense_1")], name="sequential")
    with converter.read(entry["prefix"]) as src:
        ckpt = rules.apply(src)
        for weight in model.weights:
            weight.assign(ckpt[weight.path].read())
        x = np.ones((1, 4), np.float32)
        kernel0, bias0, kernel1, bias1 = (ckpt[w.path].read() for w in model.weights)
    want = (x @ kernel0 + bias0) @ kernel1 + bias1  # two linear Dense layers
    np.testing.assert_allclose(np.asarray(model(x)), want, rtol=1e-6)
