"""Files written by TensorFlow and tf-keras for the optimizer-state and diff tests, in one
process: ``python tests/tf_fixtures_rules.py OUTDIR`` writes them and ``OUTDIR/manifest.json``
(paths, and what TensorFlow's own readers list in each file).

- Keras 2 full-model ``.h5`` files (``model.save``) after one training step, with the current
  tf-keras optimizers (``Adam/m/dense/kernel``, ``iteration``) and the legacy ones
  (``Adam/dense/kernel/m``, ``Adam/iter``);
- TF1 name-based checkpoints of a graph trained one step by a Keras optimizer under the
  ``training`` scope, as canned Estimators name them (``training/Adagrad/<var>/accumulator``,
  ``training/Adam/iter``, ``training/Adam/beta_1``, ...);
- a bundle holding a tensor of shape ``(0, 2**61)``, which has no elements.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

H5_OPTIMIZERS = [("Adam", False), ("Adam", True), ("SGD", True)]
ESTIMATOR_OPTIMIZERS = ["Adagrad", "Ftrl", "Adam", "RMSprop", "SGD"]


def _optimizer(name: str, legacy: bool):
    cls = getattr(tf.keras.optimizers.legacy if legacy else tf.keras.optimizers, name)
    return cls(momentum=0.9) if name == "SGD" else cls()


def keras2_h5(out: Path, name: str, legacy: bool) -> dict:
    model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(4, name="dense"),
                                 tf.keras.layers.Dense(2, name="out")])
    model.compile(optimizer=_optimizer(name, legacy), loss="mse")
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(8, 3)), rng.normal(size=(8, 2)), epochs=1, verbose=0)
    path = out / f"keras2_{name}{'_legacy' if legacy else ''}.h5"
    model.save(str(path))
    with h5py.File(path, "r") as f:
        group = f["optimizer_weights"]
        optimizer = {w: np.asarray(group[w]).tolist() for w in
                     (x.decode() if isinstance(x, bytes) else x
                      for x in group.attrs["weight_names"])}
    weights = {w.name: w.numpy().tolist() for w in model.weights}
    return {"path": str(path), "optimizer_weights": optimizer, "model_weights": weights}


def estimator_like(out: Path, name: str) -> dict:
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        x = v1.placeholder(tf.float32, [None, 3])
        with v1.variable_scope("dnn"):
            kernel = v1.get_variable("hiddenlayer_0/kernel", [3, 2])
            bias = v1.get_variable("hiddenlayer_0/bias", [2])
        loss = tf.reduce_sum(tf.matmul(x, kernel) + bias)
        v1.train.get_or_create_global_step()
        optimizer = _optimizer(name, True)
        with tf.name_scope("training"):
            train = optimizer.apply_gradients(zip(tf.gradients(loss, [kernel, bias]),
                                                  [kernel, bias], strict=True))
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            sess.run(train, {x: np.ones((1, 3), np.float32)})
            prefix = v1.train.Saver().save(sess, str(out / f"estimator_{name}" / "model.ckpt"),
                                           write_meta_graph=False)
    names = [n for n, _ in tf.train.list_variables(prefix)]
    return {"prefix": prefix, "names": names}


def zero_size(out: Path) -> dict:
    prefix = str(out / "zero_size" / "model")
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=["empty", "w"], shape_and_slices=["", ""],
                      tensors=[tf.zeros((0, 2**61), tf.float32), tf.constant([1.0, 2.0])])
    return {"prefix": prefix, "shapes": {n: s for n, s in tf.train.list_variables(prefix)}}


def main(argv: list[str]) -> int:
    out = Path(argv[1])
    manifest = {
        "h5": {f"{n}{'_legacy' if legacy else ''}": keras2_h5(out, n, legacy)
               for n, legacy in H5_OPTIMIZERS},
        "estimator": {n: estimator_like(out, n) for n in ESTIMATOR_OPTIMIZERS},
        "zero_size": zero_size(out),
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
