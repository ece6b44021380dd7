"""TF1 checkpoints under an original release's variable names, written by TensorFlow itself:
``python tests/tf_hf_writer.py JOBS.json`` where the file lists ``{"npz": ..., "prefix": ...}``.
Each npz's arrays become variables of those names; every variable gets AdamWeightDecay's
``/adam_m`` and ``/adam_v`` slots, and the graph a ``global_step``, as run_pretraining.py's
checkpoints have them; ``tf.compat.v1.train.Saver`` writes ``prefix``."""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def write(npz: str, prefix: str) -> None:
    arrays = dict(np.load(npz))
    with tf.Graph().as_default():
        variables = []
        for name, value in arrays.items():
            variables.append(tf.compat.v1.Variable(value, name=name))
            for slot in ("adam_m", "adam_v"):
                tf.compat.v1.Variable(np.full_like(value, 0.5), name=f"{name}/{slot}",
                                      trainable=False)
        tf.compat.v1.train.get_or_create_global_step()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(sess, prefix, write_meta_graph=False)
    found = {n for n, _ in tf.train.list_variables(prefix)}
    assert set(arrays) <= found, sorted(set(arrays) - found)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        for job in json.load(f):
            write(job["npz"], job["prefix"])
