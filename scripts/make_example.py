"""Write the bundled example: a small TF1 MLP (hidden1..3 + softmax_linear) trained a few steps
with Adam by tf.compat.v1.train.Saver, as the seed posts' users have them.

usage: python scripts/make_example.py [OUT_DIR]   (default: examples/mlp; needs TensorFlow)
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def main(out: Path) -> None:
    v1 = tf.compat.v1
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    x_data = rng.standard_normal((64, 16)).astype(np.float32)
    y_data = rng.integers(0, 10, 64)
    with tf.Graph().as_default():
        v1.set_random_seed(0)
        x = v1.placeholder(tf.float32, [None, 16])
        y = v1.placeholder(tf.int64, [None])
        h = x
        for i, units in enumerate((32, 32, 16), start=1):
            with v1.variable_scope(f"hidden{i}"):
                w = v1.get_variable("weights", [h.shape[1], units])
                b = v1.get_variable("biases", [units], initializer=v1.zeros_initializer())
                h = tf.nn.relu(tf.matmul(h, w) + b)
        with v1.variable_scope("softmax_linear"):
            w = v1.get_variable("weights", [16, 10])
            b = v1.get_variable("biases", [10], initializer=v1.zeros_initializer())
            logits = tf.matmul(h, w) + b
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                             logits=logits))
        step = v1.Variable(997, dtype=tf.int64, name="global_step", trainable=False)
        train = v1.train.AdamOptimizer(0.01).minimize(loss, global_step=step)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            for _ in range(3):
                sess.run(train, {x: x_data, y: y_data})
            v1.train.Saver().save(sess, str(out / "model.ckpt"), global_step=step,
                                  write_meta_graph=False)
    # A relative state file keeps the example valid wherever the repository is checked out.
    (out / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-1000"\n'
                                    'all_model_checkpoint_paths: "model.ckpt-1000"\n')


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "examples/mlp")
