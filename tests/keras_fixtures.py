"""Write Keras files for the tests in one process: python keras_fixtures.py OUT_DIR.

``wrapped.keras`` (Keras 3: Bidirectional and TimeDistributed layers, trained one step) with
``wrapped.json`` (its variables' paths in ``model.weights`` order), ``wrapped.npz`` (their
values by path) and ``wrapped.weights.h5`` (``save_weights``); ``adam.h5`` (tf-keras full
model, compiled with Adam, trained one step) with ``adam.npz`` (the optimizer's variables by
name).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tf.keras is tf-keras; `import keras` stays Keras 3
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def keras3(out: Path) -> None:
    import keras

    layers = keras.layers
    inp = keras.Input((5, 3))
    x = layers.Bidirectional(layers.GRU(4, return_sequences=True))(inp)
    x = layers.TimeDistributed(layers.Dense(2))(x)
    x = layers.Bidirectional(layers.LSTM(3), backward_layer=layers.LSTM(
        3, go_backwards=True, name="back"))(x)
    model = keras.Model(inp, layers.Dense(1)(x))
    model.compile("adam", "mse")
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((4, 5, 3)), rng.standard_normal((4, 1)), verbose=0)
    model.save(out / "wrapped.keras")
    model.save_weights(out / "wrapped.weights.h5")
    (out / "wrapped.json").write_text(json.dumps([v.path for v in model.weights]))
    np.savez(out / "wrapped.npz", **{v.path: np.asarray(v) for v in model.weights})


def dense(out: Path) -> None:
    import keras

    model = keras.Sequential([keras.Input((100,)), keras.layers.Dense(
        3000, bias_initializer="random_normal", name="dense")], name="net")
    model.save(out / "dense.keras")
    np.savez(out / "dense.npz", **{v.path: np.asarray(v) for v in model.weights})


def tf_keras(out: Path) -> None:
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.layers.Dense(3, input_shape=(2,)),
                                 tf.keras.layers.Dense(1)])
    model.compile(tf.keras.optimizers.Adam(), "mse")
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((4, 2)), rng.standard_normal((4, 1)), verbose=0)
    model.save(out / "adam.h5")
    np.savez(out / "adam.npz", **{v.name: np.asarray(v) for v in model.optimizer.variables})


if __name__ == "__main__":
    target = Path(sys.argv[1])
    keras3(target)
    dense(target)
    tf_keras(target)
