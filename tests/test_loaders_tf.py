"""Loading checkpoints written by TensorFlow into changed TF1 graphs and into Keras models: the
situations users report, each on a checkpoint TensorFlow writes in the test."""

from __future__ import annotations

import numpy as np
import pytest

import converter
from converter.errors import LoadError
from converter.rules import Rules
from tests.helpers import assert_same


@pytest.fixture(scope="module")
def v1(tf):
    return tf.compat.v1


def _save(tf, path, build) -> dict[str, np.ndarray]:
    """Build variables with ``build()`` in a fresh graph, initialize, save; return values."""
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        v1.set_random_seed(1)
        build()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            values = {v.op.name: sess.run(v) for v in v1.global_variables()}
            v1.train.Saver().save(sess, str(path), write_meta_graph=False)
    return values


def test_a_auto_named_variables_in_another_order(tf, v1, tmp_path):
    saved = _save(tf, tmp_path / "m", lambda: (
        tf.Variable(v1.random_normal([3, 2]), name=None),  # Variable   (weights)
        tf.Variable(v1.random_normal([2]), name=None)))    # Variable_1 (bias)
    with tf.Graph().as_default():
        b = tf.Variable(tf.zeros([2]))       # now "Variable"
        w = tf.Variable(tf.zeros([3, 2]))    # now "Variable_1"
        with v1.Session() as sess:
            report = converter.tf1.restore(tmp_path / "m", session=sess)
            got_w, got_b = sess.run([w, b])
    assert_same(got_w, saved["Variable"])
    assert_same(got_b, saved["Variable_1"])
    assert {p.how for p in report.pairings} == {"shape (auto-named variables in another order)"}
    assert report.ok


def test_b_partial_restore_with_renames_and_ema(tf, v1, tmp_path):
    saved = _save(tf, tmp_path / "m", lambda: (
        v1.get_variable("v1", [2, 2]), v1.get_variable("v2", [3])))
    rules = Rules().map({"v1": "other-v1"})
    with tf.Graph().as_default():
        other = v1.get_variable("other-v1", [2, 2], initializer=v1.zeros_initializer())
        v1.get_variable("v3", [4])
        with v1.Session() as sess:
            with pytest.raises(LoadError, match="missing: v3"):
                converter.tf1.restore(tmp_path / "m", rules=rules, session=sess)
            report = converter.tf1.restore(tmp_path / "m", rules=rules, session=sess,
                                           strict=False)
            assert_same(sess.run(other), saved["v1"])
    assert report.missing == ["v3"] and report.unexpected == ["v2"]
    assert report.matched == ["other-v1"]


def test_b_ema_shadows_restored_as_variables(tf, tf_fixtures, v1):
    entry = tf_fixtures["tf1_ema"]
    with converter.read(entry["prefix"]) as ckpt:
        shadows = {n: ckpt[n + "/ExponentialMovingAverage"].read().copy() for n in ("w", "b")}
    with tf.Graph().as_default():
        w = v1.get_variable("w", [3, 2])
        b = v1.get_variable("b", [2])
        with v1.Session() as sess:
            report = converter.tf1.restore(entry["prefix"], session=sess,
                                           rules=Rules().preset("use-ema"))
            assert_same(sess.run(w), shadows["w"])
            assert_same(sess.run(b), shadows["b"])
    assert report.ok


def _branches(tf, v1, with_c: bool):
    x = v1.placeholder(tf.float32, [None, 4])
    a = v1.layers.dense(x, 8, name="A")
    b = v1.layers.dense(a, 3, name="B")
    out = [v1.layers.dense(b, 2, name="Out1")]
    if with_c:
        c = v1.layers.dense(a, 5, name="C")
        out.append(v1.layers.dense(c, 2, name="Out2"))
    return x, out


def test_c_one_branch_checkpoint_into_two_branch_model(tf, v1, tmp_path):
    saved = _save(tf, tmp_path / "m", lambda: _branches(tf, v1, False))
    with tf.Graph().as_default():
        _branches(tf, v1, True)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            report = converter.tf1.restore(tmp_path / "m", session=sess, strict=False)
            values = {v.op.name: sess.run(v) for v in v1.global_variables()}
    assert sorted(report.missing) == ["C/bias", "C/kernel", "Out2/bias", "Out2/kernel"]
    assert not report.unexpected and not report.shape_mismatch
    for name in ("A/kernel", "A/bias", "B/kernel", "Out1/kernel"):
        assert_same(values[name], saved[name], name)


def _mlp(tf, v1, x, hidden: int, fresh_tail: bool = False):
    h = x
    for i in range(1, hidden + 1):
        h = v1.layers.dense(h, 16, activation=tf.nn.relu, name=f"hidden{i}")
    return v1.layers.dense(h, 10, name="outputs")


def test_d_reuse_hidden_layers_then_migrate_to_keras(tf, v1, tmp_path):
    import keras

    rng = np.random.default_rng(0)
    x_data = rng.standard_normal((32, 12)).astype(np.float32)
    with tf.Graph().as_default():  # a trained 5-layer net: hidden1..4 + outputs
        v1.set_random_seed(3)
        x = v1.placeholder(tf.float32, [None, 12])
        y = v1.placeholder(tf.int64, [None])
        logits = _mlp(tf, v1, x, 4)
        loss = v1.losses.sparse_softmax_cross_entropy(y, logits)
        train = v1.train.AdamOptimizer(0.01).minimize(loss)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            for _ in range(3):
                sess.run(train, {x: x_data, y: rng.integers(0, 10, 32)})
            trained = {v.op.name: sess.run(v) for v in v1.trainable_variables()}
            want = sess.run(logits, {x: x_data})
            v1.train.Saver().save(sess, str(tmp_path / "net"), write_meta_graph=False)

    reuse = Rules().preset("drop-optimizer").only("hidden[123]/*")
    with tf.Graph().as_default():  # a new net: hidden1..3 reused, fresh hidden4 and outputs
        x = v1.placeholder(tf.float32, [None, 12])
        _mlp(tf, v1, x, 4)
        with v1.Session() as sess:
            report = converter.tf1.restore(tmp_path / "net", rules=reuse, session=sess,
                                           strict=False)
            sess.run(v1.variables_initializer(
                [v for v in v1.global_variables() if not v.op.name.startswith("hidden")]
                + [v for v in v1.global_variables() if v.op.name.startswith("hidden4")]))
            got = {v.op.name: sess.run(v) for v in v1.global_variables()}
    assert sorted(report.matched) == sorted(f"hidden{i}/{k}" for i in (1, 2, 3)
                                            for k in ("kernel", "bias"))
    assert sorted(report.missing) == ["hidden4/bias", "hidden4/kernel", "outputs/bias",
                                      "outputs/kernel"]
    for name in report.matched:
        assert_same(got[name], trained[name], name)

    # The same checkpoint migrated into an equivalent Keras 3 model predicts the same.
    model = keras.Sequential(
        [keras.Input((12,))]
        + [keras.layers.Dense(16, activation="relu", name=f"hidden{i}") for i in range(1, 5)]
        + [keras.layers.Dense(10, name="outputs")], name="mlp")
    report = converter.load_into(model, tmp_path / "net",
                                 rules=Rules().preset("drop-optimizer"))
    assert report.ok and len(report.matched) == 10
    np.testing.assert_allclose(np.asarray(model(x_data)), want, rtol=1e-6, atol=1e-6)
    for v in model.weights:
        assert_same(np.asarray(v), trained[v.path.split("/", 1)[1]], v.path)


def test_e_initializer_after_restore_keeps_values(tf, v1, tmp_path):
    saved = _save(tf, tmp_path / "m", lambda: v1.get_variable("w", [4, 4]))
    with tf.Graph().as_default():
        w = v1.get_variable("w", [4, 4], initializer=v1.zeros_initializer())
        with v1.Session() as sess:
            converter.tf1.restore(tmp_path / "m", session=sess)
            sess.run(v1.global_variables_initializer())  # the classic mistake
            assert_same(sess.run(w), saved["w"])
        with v1.Session() as sess:  # a new session: initializing alone restores
            sess.run(v1.global_variables_initializer())
            assert_same(sess.run(w), saved["w"])


def test_keras_strict_report_and_order_matching(tf, tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")], name="m")
    weights = {"somewhere/w": np.ones((3, 2), np.float32), "elsewhere/b": np.zeros(2, np.float32)}
    with pytest.raises(LoadError, match="missing"):
        converter.load_into(model, weights)
    report = converter.load_into(model, weights, match="order")
    assert [p.how for p in report.pairings] == ["order+shape", "order+shape"]
    assert_same(np.asarray(model.weights[0]), weights["somewhere/w"])
    bad = {"d/kernel": np.ones((4, 2), np.float32), "d/bias": np.zeros(2, np.float32)}
    report = converter.load_into(model, bad, strict=False)
    assert [m.variable for m in report.shape_mismatch] == ["m/d/kernel"]
    assert report.matched == ["m/d/bias"]
    assert "shape mismatch" in report.table()
