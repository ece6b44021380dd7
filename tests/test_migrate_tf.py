"""``ckpt migrate``: TF1 checkpoints and Keras 2 files into Keras 3 models, checked by what
Keras itself loads and predicts."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import numpy as np
import pytest

import converter
import converter.rules
from converter.cli import main
from tests.helpers import assert_same, tf1_lstm_checkpoint

EXAMPLE = Path(__file__).parent.parent / "examples" / "mlp"

FACTORIES = '''
import keras

def mlp():
    return keras.Sequential(
        [keras.Input((16,))]
        + [keras.layers.Dense(n, activation="relu", name=f"hidden{i}")
           for i, n in enumerate((32, 32, 16), start=1)]
        + [keras.layers.Dense(10, name="softmax_linear")], name="mlp")

def mlp_renamed():
    return keras.Sequential(
        [keras.Input((16,))]
        + [keras.layers.Dense(n, activation="relu") for n in (32, 32, 16)]
        + [keras.layers.Dense(10)], name="other")

def cnn():
    return keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, padding="same", name="conv1"),
        keras.layers.BatchNormalization(name="batch_normalization", epsilon=1e-3),
        keras.layers.ReLU(),
        keras.layers.Flatten(),
        keras.layers.Dense(5, name="logits"),
    ], name="cnn")
'''


@pytest.fixture(scope="module")
def factories(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "models.py"
    path.write_text(textwrap.dedent(FACTORIES))
    return path


@pytest.fixture(scope="module")
def models(factories):
    """The factories module, for building the same models the tests migrate into."""
    spec = importlib.util.spec_from_file_location("models", factories)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mlp_forward(ckpt, x):
    h = x
    for name in ("hidden1", "hidden2", "hidden3"):
        h = np.maximum(h @ ckpt[f"{name}/weights"].read() + ckpt[f"{name}/biases"].read(), 0)
    return h @ ckpt["softmax_linear/weights"].read() + ckpt["softmax_linear/biases"].read()


def test_migrate_tf1_example_to_weights_h5(tf, factories, models, tmp_path, capsys):

    out = tmp_path / "mlp.weights.h5"
    code = main(["migrate", str(EXAMPLE), str(out), "--model", f"{factories}:mlp",
                 "--preset", "drop-optimizer", "--rename", "/weights$=/kernel",
                 "--rename", "/biases$=/bias"])
    assert code == 0, capsys.readouterr()
    assert "8 matched, 0 missing, 0 unexpected" in capsys.readouterr().out
    model = models.mlp()
    model.load_weights(str(out))  # Keras itself reads what we wrote
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    with converter.read(EXAMPLE) as ckpt:
        for v in model.weights:
            layer, weight = v.path.split("/")[1:]
            source = f"{layer}/{'weights' if weight == 'kernel' else 'biases'}"
            assert_same(np.asarray(v), ckpt[source].read(), v.path)
        np.testing.assert_allclose(np.asarray(model(x)), _mlp_forward(ckpt, x), rtol=1e-6,
                                   atol=1e-6)


def test_migrate_strict_failure_writes_nothing(tf, factories, tmp_path, capsys):
    out = tmp_path / "x.weights.h5"
    code = main(["migrate", str(EXAMPLE), str(out), "--model", f"{factories}:mlp"])
    assert code == 2
    err = capsys.readouterr().err
    assert "missing" in err and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def test_migrate_by_order_into_tf2_checkpoint(tf, factories, tmp_path, capsys):
    import keras

    prefix = tmp_path / "tf2" / "ckpt"
    code = main(["migrate", str(EXAMPLE), str(prefix), "--model", f"{factories}:mlp_renamed",
                 "--preset", "drop-optimizer", "--match", "order", "--json"])
    assert code == 0
    report = __import__("json").loads(capsys.readouterr().out)
    assert report["ok"] and {p["how"] for p in report["pairings"]} == {"order+shape"}
    fresh = keras.Sequential([keras.Input((16,))] + [keras.layers.Dense(n) for n in
                                                      (32, 32, 16, 10)])
    status = tf.train.Checkpoint(model=fresh).read(str(prefix))
    status.assert_existing_objects_matched()
    with converter.read(EXAMPLE) as ckpt:
        kernels = [ckpt[f"{n}/weights"].read() for n in
                   ("hidden1", "hidden2", "hidden3", "softmax_linear")]
    for layer, kernel in zip(fresh.layers, kernels, strict=True):
        assert_same(np.asarray(layer.kernel), kernel)


def test_keras2_h5_into_keras3(tf, tmp_path):
    import keras

    old = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3, name="hidden1"),
                               tf.keras.layers.BatchNormalization(name="batch_normalization"),
                               tf.keras.layers.Dense(2, name="out")])
    old.layers[1].set_weights([w + 0.5 for w in old.layers[1].get_weights()])
    old.save_weights(str(tmp_path / "old.h5"))
    with converter.read(tmp_path / "old.h5") as ckpt:
        assert ckpt.source.layout == "keras2"
        assert list(ckpt)[:2] == ["hidden1/kernel", "hidden1/bias"]
    new = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="hidden1"),
                            keras.layers.BatchNormalization(name="batch_normalization"),
                            keras.layers.Dense(2, name="out")], name="new")
    report = converter.migrate(tmp_path / "old.h5", new, tmp_path / "new.weights.h5")
    assert report.ok and len(report.matched) == 8
    x = np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32)
    again = keras.models.clone_model(new)
    again.load_weights(str(tmp_path / "new.weights.h5"))
    np.testing.assert_allclose(np.asarray(again(x)), old(x).numpy(), rtol=1e-6, atol=1e-6)


def test_tf1_cnn_with_batch_norm_into_keras3(tf, models, tmp_path):
    v1 = tf.compat.v1
    rng = np.random.default_rng(2)
    x_data = rng.standard_normal((4, 8, 8, 3)).astype(np.float32)
    with tf.Graph().as_default():
        v1.set_random_seed(5)
        x = v1.placeholder(tf.float32, [None, 8, 8, 3])
        training = v1.placeholder_with_default(False, [])
        h = v1.layers.conv2d(x, 4, 3, padding="same", name="conv1")
        h = v1.layers.batch_normalization(h, training=training, name="batch_normalization")
        h = tf.nn.relu(h)
        logits = v1.layers.dense(v1.layers.flatten(h), 5, name="logits")
        loss = tf.reduce_mean(tf.square(logits))
        with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
            train = v1.train.MomentumOptimizer(0.01, 0.9).minimize(loss)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            for _ in range(3):  # moves the moving mean/variance away from 0/1
                sess.run(train, {x: x_data, training: True})
            want = sess.run(logits, {x: x_data})
            v1.train.Saver().save(sess, str(tmp_path / "cnn"), write_meta_graph=False)
    model = models.cnn()
    report = converter.load_into(model, tmp_path / "cnn",
                                 rules=converter.rules.Rules().preset("drop-optimizer"))
    assert report.ok and len(report.matched) == 8
    np.testing.assert_allclose(np.asarray(model(x_data, training=False)), want, rtol=1e-5,
                               atol=1e-6)


@pytest.mark.filterwarnings("ignore:`tf.nn.rnn_cell")
def test_tf1_lstm_into_keras3_model(tf, tmp_path):
    import keras

    x = np.random.default_rng(4).standard_normal((2, 5, 3)).astype(np.float32)
    want, _ = tf1_lstm_checkpoint(tf, tmp_path / "lstm", x, 4)
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4, return_sequences=True)],
                             name="seq")
    rules = converter.rules.Rules().preset("tf1-lstm-to-keras").strip_prefix("rnn/")
    report = converter.migrate(tmp_path / "lstm", model, tmp_path / "lstm.weights.h5",
                               rules=rules)
    assert report.ok and {p.how for p in report.pairings} == {"scope suffix"}
    again = keras.models.clone_model(model)
    again.load_weights(str(tmp_path / "lstm.weights.h5"))
    np.testing.assert_allclose(np.asarray(again(x)), want, rtol=0, atol=1e-6)
