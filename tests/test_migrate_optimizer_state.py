"""Optimizer state: training that stopped in tf.keras or TF1 continues in Keras 3.

Each source trains a few steps, is saved, then takes one more step on a fixed batch; the
migrated Keras 3 model (``.keras`` with optimizer, loaded by ``keras.saving.load_model``) takes
the same step and must land on the same weights.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

import converter
from converter.cli import main
from converter.errors import LoadError, UsageError
from converter.rules import Rules

# tf.keras auto names count per process: reset them for the modules that run after this one.
pytestmark = pytest.mark.usefixtures("fresh_tf_keras_names")

MODELS = '''
import keras

def mlp_adam():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model
'''
RNG = np.random.default_rng(11)
X = RNG.standard_normal((16, 4)).astype(np.float32)
Y = RNG.standard_normal((16, 2)).astype(np.float32)


def _close(model, want) -> None:
    got = [np.asarray(v) for v in model.weights]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_tf_keras_adam_continues_in_keras3(tf, tmp_path, capsys):
    import keras

    models = tmp_path / "opt_models.py"
    models.write_text(textwrap.dedent(MODELS))
    tk = tf.keras
    src = tk.Sequential([tk.Input((4,)), tk.layers.Dense(8, activation="relu"),
                         tk.layers.BatchNormalization(), tk.layers.Dense(2)])
    src.compile(tk.optimizers.Adam(0.01), "mse")
    for _ in range(3):
        src.train_on_batch(X, Y)
    src.save_weights(str(tmp_path / "tfw" / "ckpt"))
    src.train_on_batch(X, Y)
    want = [w.numpy() for w in src.weights]

    out = tmp_path / "resume.keras"
    code = main(["migrate", str(tmp_path / "tfw" / "ckpt"), str(out), "--model",
                 f"{models}:mlp_adam", "--with-optimizer"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "optimizer: tf.keras Adam -> Adam, 12 slots, iterations 3" in printed.out
    model = keras.saving.load_model(out)
    assert int(model.optimizer.iterations) == 3
    model.train_on_batch(X, Y)
    _close(model, want)


TF_KERAS = {  # tf.keras optimizer, the Keras 3 one, label, slots (4 trainable variables)
    "legacy-adam": (lambda tk: tk.optimizers.legacy.Adam(0.01),
                    lambda k: k.optimizers.Adam(0.01), "tf.keras Adam", 8),
    "sgd": (lambda tk: tk.optimizers.SGD(0.05, momentum=0.9),
            lambda k: k.optimizers.SGD(0.05, momentum=0.9), "tf.keras SGD (momentum)", 4),
    "rmsprop": (lambda tk: tk.optimizers.RMSprop(0.01, momentum=0.5),
                lambda k: k.optimizers.RMSprop(0.01, momentum=0.5), "tf.keras RMSprop", 8),
}


@pytest.mark.parametrize("name", list(TF_KERAS))
def test_other_tf_keras_optimizers_continue(tf, tmp_path, name):
    import keras

    tf_keras_optimizer, keras_optimizer, label, slots = TF_KERAS[name]
    tk = tf.keras
    src = tk.Sequential([tk.Input((4,)), tk.layers.Dense(8, activation="relu", name="hidden"),
                         tk.layers.Dense(2, name="out")])
    src.compile(tf_keras_optimizer(tk), "mse")
    for _ in range(3):
        src.train_on_batch(X, Y)
    src.save_weights(str(tmp_path / "tfw" / "ckpt"))
    src.train_on_batch(X, Y)
    want = [w.numpy() for w in src.weights]
    report = converter.migrate(tmp_path / "tfw" / "ckpt",
                               lambda: _keras_mlp(keras, keras_optimizer(keras)),
                               tmp_path / "resume.keras", with_optimizer=True)
    assert report.optimizer == {"source": label, "target": type(keras_optimizer(keras)).__name__,
                                "slots": slots, "iterations": 3}
    model = keras.saving.load_model(tmp_path / "resume.keras")
    model.train_on_batch(X, Y)
    _close(model, want)


def _tf1_train(tf, prefix, make_optimizer) -> list[np.ndarray]:
    """Three steps, save, a fourth step; the weights after it (hidden, out: kernel, bias)."""
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        v1.set_random_seed(3)
        x = v1.placeholder(tf.float32, [None, 4])
        y = v1.placeholder(tf.float32, [None, 2])
        h = v1.layers.dense(x, 8, activation=tf.nn.relu, name="hidden")
        out = v1.layers.dense(h, 2, name="out")
        loss = tf.reduce_mean(tf.square(out - y))
        step = make_optimizer(v1).minimize(loss, global_step=v1.train.get_or_create_global_step())
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            for _ in range(3):
                sess.run(step, {x: X, y: Y})
            v1.train.Saver().save(sess, str(prefix), write_meta_graph=False)
            sess.run(step, {x: X, y: Y})
            return sess.run(v1.trainable_variables())


TF1 = {
    "adam": (lambda v1: v1.train.AdamOptimizer(0.01),
             lambda k: k.optimizers.Adam(0.01, epsilon=1e-8), "TF1 AdamOptimizer"),
    "momentum": (lambda v1: v1.train.MomentumOptimizer(0.05, 0.9),
                 lambda k: k.optimizers.SGD(0.05, momentum=0.9), "TF1 MomentumOptimizer"),
    "rmsprop": (lambda v1: v1.train.RMSPropOptimizer(0.01, momentum=0.5),
                lambda k: k.optimizers.RMSprop(0.01, rho=0.9, momentum=0.5, epsilon=1e-10),
                "TF1 RMSPropOptimizer"),
}


def _keras_mlp(keras, optimizer):
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(8, activation="relu", name="hidden"),
                              keras.layers.Dense(2, name="out")], name="mlp")
    model.compile(optimizer, "mse")
    return model


@pytest.mark.parametrize("name", list(TF1))
def test_tf1_optimizer_continues_in_keras3(tf, tmp_path, name):
    import keras

    tf1_optimizer, keras_optimizer, label = TF1[name]
    want = _tf1_train(tf, tmp_path / "model.ckpt", tf1_optimizer)
    out = tmp_path / "resume.keras"
    report = converter.migrate(tmp_path / "model.ckpt",
                               lambda: _keras_mlp(keras, keras_optimizer(keras)), out,
                               with_optimizer=True)
    assert report.ok and report.optimizer["source"] == label
    assert report.optimizer["slots"] == 4 * (2 if name == "adam" else 1) + (
        4 if name == "rmsprop" else 0)
    assert report.optimizer["iterations"] == 3
    model = keras.saving.load_model(out)
    model.train_on_batch(X, Y)
    _close(model, want)


def test_optimizer_errors_write_nothing(tf, tmp_path):
    import keras

    _tf1_train(tf, tmp_path / "model.ckpt", TF1["adam"][0])
    out = tmp_path / "resume.keras"
    with pytest.raises(LoadError, match="TF1 AdamOptimizer state into a Keras 3 SGD"):
        converter.migrate(tmp_path / "model.ckpt",
                          _keras_mlp(keras, keras.optimizers.SGD(0.1, momentum=0.9)), out,
                          with_optimizer=True)
    with pytest.raises(LoadError, match="no optimizer state"):
        converter.migrate(tmp_path / "model.ckpt",
                          _keras_mlp(keras, keras.optimizers.Adam(0.01)), out,
                          rules=Rules().preset("drop-optimizer"), with_optimizer=True)
    with pytest.raises(LoadError, match="beta_1=0.5"):
        converter.migrate(tmp_path / "model.ckpt",
                          _keras_mlp(keras, keras.optimizers.Adam(0.01, beta_1=0.5)), out,
                          with_optimizer=True)
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="hidden"),
                              keras.layers.Dense(2, name="out")])
    with pytest.raises(UsageError, match="compiled"):
        converter.migrate(tmp_path / "model.ckpt", plain, out, with_optimizer=True)
    assert not out.exists() and not list(tmp_path.glob("*.keras*"))
