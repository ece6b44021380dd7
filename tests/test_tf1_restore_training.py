"""``converter.tf1.restore`` into the training graph that wrote the checkpoint: optimizer slots,
``beta*_power``, ``global_step`` and EMA shadows come back, so one more step after the restore
is the step the original session would have taken, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import converter
from converter.errors import LoadError
from tests.helpers import assert_same

STEPS = 3


def _build(tf):
    """A small training graph: two dense layers, Adam with global_step, an EMA of the weights."""
    v1 = tf.compat.v1
    rng = np.random.default_rng(7)
    x = tf.constant(rng.standard_normal((8, 4)).astype(np.float32))
    y = tf.constant(rng.standard_normal((8, 2)).astype(np.float32))
    step = v1.train.get_or_create_global_step()
    k0 = v1.get_variable("dense/kernel", [4, 5])
    b0 = v1.get_variable("dense/bias", [5], initializer=v1.zeros_initializer())
    k1 = v1.get_variable("dense_1/kernel", [5, 2])
    b1 = v1.get_variable("dense_1/bias", [2], initializer=v1.zeros_initializer())
    loss = tf.reduce_mean(tf.square(tf.matmul(tf.nn.relu(tf.matmul(x, k0) + b0), k1) + b1 - y))
    minimize = v1.train.AdamOptimizer(0.05).minimize(loss, global_step=step)
    ema = v1.train.ExponentialMovingAverage(0.9)
    with tf.control_dependencies([minimize]):
        train = ema.apply([k0, b0, k1, b1])
    return train, [k0, b0, k1, b1]


def _values(tf, sess) -> dict[str, np.ndarray]:
    return {v.op.name: sess.run(v) for v in tf.compat.v1.global_variables()}


@pytest.fixture(scope="module")
def trained(tf, tmp_path_factory):
    """``(prefix, values after STEPS steps, values after one more)``, all from TensorFlow."""
    v1 = tf.compat.v1
    prefix = tmp_path_factory.mktemp("train") / "model.ckpt"
    with tf.Graph().as_default():
        v1.set_random_seed(3)
        train, _ = _build(tf)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            for _ in range(STEPS):
                sess.run(train)
            saved = v1.train.Saver().save(sess, str(prefix), global_step=STEPS)
            at_save = _values(tf, sess)
            sess.run(train)
            after = _values(tf, sess)
    return saved, at_save, after


def test_restore_continues_training_exactly(tf, trained):
    v1 = tf.compat.v1
    prefix, at_save, after = trained
    with tf.Graph().as_default():
        v1.set_random_seed(99)  # other initial values: everything must come from the checkpoint
        train, _ = _build(tf)
        with v1.Session() as sess:
            report = converter.tf1.restore(prefix, session=sess)
            sess.run(v1.global_variables_initializer())  # must not wipe what was restored
            restored = _values(tf, sess)
            sess.run(train)
            stepped = _values(tf, sess)
    assert report.ok and not report.ignored
    assert {"global_step", "beta1_power", "beta2_power", "dense/kernel/Adam_1",
            "dense/kernel/ExponentialMovingAverage"} <= set(report.matched)
    assert sorted(restored) == sorted(at_save)
    for name in at_save:
        assert_same(restored[name], at_save[name], name)
        assert_same(stepped[name], after[name], name)
    assert int(stepped["global_step"]) == STEPS + 1


def test_restore_var_list_is_like_saver_var_list(tf, trained):
    v1 = tf.compat.v1
    prefix, at_save, _ = trained
    with tf.Graph().as_default():
        _, (k0, b0, _, _) = _build(tf)
        with v1.Session() as sess:
            report = converter.tf1.restore(prefix, var_list=[k0], session=sess)  # strict
            sess.run(v1.global_variables_initializer())
            assert_same(sess.run(k0), at_save["dense/kernel"])
            assert not np.array_equal(sess.run(b0), at_save["dense/bias"])
    assert report.matched == ["dense/kernel"] and not report.missing
    assert "dense/bias" in report.unexpected and "dense/kernel/Adam" in report.ignored
    assert "global_step" in report.ignored


def test_restore_strict_failure_carries_the_report(tf, trained):
    prefix, _, _ = trained
    with tf.Graph().as_default():
        _build(tf)
        tf.compat.v1.get_variable("new_head/kernel", [2, 2])
        with pytest.raises(LoadError, match="missing: new_head/kernel") as info:
            converter.tf1.restore(prefix)
    assert info.value.report.missing == ["new_head/kernel"]
    assert "global_step" in info.value.report.matched
    assert "strict=False" in str(info.value) and "--no-strict" not in str(info.value)


def test_pretrained_weights_into_a_training_graph(tf, trained, tmp_path):
    from converter.rules import Rules

    prefix, at_save, _ = trained
    weights = tmp_path / "weights.ckpt"
    converter.convert(prefix, weights, to="tf", rules=Rules().preset("drop-optimizer"))
    with tf.Graph().as_default():
        _, model = _build(tf)
        with pytest.raises(LoadError, match="no optimizer state for these: leave them out of "
                                            "var_list"):
            converter.tf1.restore(weights)
        with tf.compat.v1.Session() as sess:
            report = converter.tf1.restore(weights, var_list=model, session=sess)
            sess.run(tf.compat.v1.global_variables_initializer())  # slots start fresh
            assert_same(sess.run(model[0]), at_save["dense/kernel"])
    assert len(report.matched) == 4
    assert set(report.unexpected) == {n for n in at_save if n.endswith("ExponentialMovingAverage")}
