"""TF2 object-based checkpoints laid out as TF Model Garden's BERT encoder saves them (the
``keras_bert`` checkpoints of ``official/nlp/bert``, ``tf.train.Checkpoint(model=encoder)``),
written by TensorFlow itself: ``python tests/tf2_bert_writer.py JOBS.json`` where the file lists
``{"npz": ..., "prefix": ..., "root": "model", "optimizer": true}``.

The npz holds the variables under their object paths without the root and without
``/.ATTRIBUTES/VARIABLE_VALUE`` (``layer_with_weights-4/_attention_layer/_query_dense/kernel``);
each path becomes a chain of trackable objects holding one variable, so the checkpoint's keys
are the ones Model Garden's encoder gives (the functional model's ``layer_with_weights-N``, then
each layer's attributes: ``_attention_layer``, ``_query_dense``, ``kernel``). With
``"optimizer"``, a tf-keras Adam takes one step, so the checkpoint also holds its slots
(``.OPTIMIZER_SLOT/optimizer/m``) and ``optimizer/iter``, as a training checkpoint does; the
model's values are written as given (the step's update is undone). ``"root": ""`` puts the
model's layers at the top of the checkpoint instead of under ``model/``.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _tree(arrays: dict[str, np.ndarray]) -> tuple[tf.Module, dict[str, tf.Variable]]:
    root = tf.Module()
    made: dict[str, tf.Variable] = {}
    nodes: dict[str, tf.Module] = {"": root}
    for path, value in arrays.items():
        *parents, leaf = path.split("/")
        node, at = root, ""
        for part in parents:
            at = f"{at}/{part}" if at else part
            if at not in nodes:
                nodes[at] = tf.Module()
                setattr(node, part, nodes[at])
            node = nodes[at]
        made[path] = tf.Variable(value, name=leaf)
        setattr(node, leaf, made[path])
    return root, made


def write(npz: str, prefix: str, root: str = "model", optimizer: bool = False) -> None:
    arrays = dict(np.load(npz))
    model, variables = _tree(arrays)
    objects: dict[str, object] = {}
    if optimizer:
        import tf_keras

        # Model Garden trained with a Keras 2 (OptimizerV2) Adam: slots under .OPTIMIZER_SLOT.
        opt = tf_keras.optimizers.legacy.Adam(1e-3)
        ordered = list(variables.values())
        opt.apply_gradients([(tf.ones_like(v), v) for v in ordered])
        for path, v in variables.items():
            v.assign(arrays[path])
        objects["optimizer"] = opt
    if root:
        objects[root] = model
        tf.train.Checkpoint(**objects).write(prefix)
    else:
        # The layers themselves at the top: the checkpoint's root is the model.
        for name, child in list(vars(model).items()):
            if not name.startswith("_"):
                objects[name] = child
        tf.train.Checkpoint(**objects).write(prefix)
    found = {n for n, _ in tf.train.list_variables(prefix)}
    head = f"{root}/" if root else ""
    want = {f"{head}{p}/.ATTRIBUTES/VARIABLE_VALUE" for p in arrays}
    assert want <= found, sorted(want - found)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        for job in json.load(f):
            write(job["npz"], job["prefix"], job.get("root", "model"),
                  job.get("optimizer", False))
