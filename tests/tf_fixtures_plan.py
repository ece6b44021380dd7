"""TF1 graphs and checkpoints written by TensorFlow, and what ``Saver.restore`` does with them,
for tests/test_plan.py and tests/test_metagraph.py.

``python tests/tf_fixtures_plan.py OUTDIR`` builds a base graph (named and auto-named variables,
a resource variable, a partitioned variable, the global step), saves it with
``tf.compat.v1.train.Saver`` as ``base.ckpt`` (+ ``base.ckpt.meta``), then exports changed graphs
as ``VARIANT.meta`` and restores ``base.ckpt`` into each. ``expected.pkl`` holds, per ``.meta``:

- ``variables``: what ``tf.compat.v1.train.import_meta_graph`` gives (name, dtype, shape,
  trainable, save-slice info) in ``global_variables()`` order;
- ``restore``: the outcome of ``Saver().restore`` (``"ok"`` or the error's class name), and
  ``entries``: the outcome of restoring each checkpoint name alone (its variable, or the parts of a
  partitioned one), ``{name: (outcome, message)}``.

Also ``extra.ckpt`` (the ``extra`` graph's own checkpoint) and ``sm_tf1/``, a TF1 SavedModel
of the base graph (``saved_model.Builder``); ``sm_stripped/`` is the same without its
``collection_def``, as TF2 SavedModels are.
"""

from __future__ import annotations

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import pickle
import shutil
import sys
from pathlib import Path

import tensorflow as tf

v1 = tf.compat.v1
SEED = 1919
VARIANTS = ("same", "extra", "renamed", "swapped", "repartitioned", "wider", "fewer")


def build(variant: str) -> None:
    """The graph of ``variant`` in the default graph; ``base`` is the saved one."""
    init = v1.glorot_uniform_initializer(seed=SEED)
    with v1.variable_scope("encoder" if variant == "renamed" else "enc"):
        v1.get_variable("w", [3, 4], initializer=init)
        v1.get_variable("b", [4], initializer=v1.zeros_initializer())
    # Auto-named: "Variable", "Variable_1" in creation order.
    for shape in ([5], [2, 3]) if variant == "swapped" else ([2, 3], [5]):
        v1.Variable(tf.random.normal(shape, seed=SEED))
    v1.get_variable("r", [2], dtype=tf.float64, use_resource=True,
                    initializer=v1.ones_initializer())
    if variant != "fewer":
        parts = 5 if variant == "repartitioned" else 2
        rows = 12 if variant == "wider" else 10
        v1.get_variable("emb", [rows, 4], initializer=init,
                        partitioner=v1.fixed_size_partitioner(parts))
    v1.train.get_or_create_global_step()
    if variant == "extra":
        with v1.variable_scope("head"):
            v1.get_variable("w", [4, 2], initializer=init)


def _variables() -> list[dict]:
    trainable = {v.op.name for v in v1.trainable_variables()}
    out = []
    for v in v1.global_variables():
        info = v._save_slice_info
        out.append({"name": v.op.name, "dtype": v.dtype.base_dtype.name,
                    "shape": v.shape.as_list(), "trainable": v.op.name in trainable,
                    "partition": None if info is None else {
                        "full_name": info.full_name, "full_shape": list(info.full_shape),
                        "offset": list(info.var_offset), "length": list(info.var_shape)}})
    return out


def _outcome(fn) -> tuple[str, str]:
    try:
        fn()
    except Exception as exc:  # TF's own error classes are what the tests compare
        return type(exc).__name__, str(exc)
    return "ok", ""


def _groups() -> dict[str, list]:
    groups: dict[str, list] = {}
    for v in v1.global_variables():
        info = v._save_slice_info
        groups.setdefault(info.full_name if info else v.op.name, []).append(v)
    return groups


def restored(meta: Path, prefix: Path) -> dict:
    """Import ``meta`` into a fresh graph and restore ``prefix`` into it, whole and by entry."""
    with tf.Graph().as_default(), v1.Session() as sess:
        saver = v1.train.import_meta_graph(str(meta))
        variables = _variables()
        sess.run(v1.global_variables_initializer())
        whole = _outcome(lambda: saver.restore(sess, str(prefix)))
        entries = {name: _outcome(lambda parts=parts: v1.train.Saver(parts).restore(
                       sess, str(prefix)))
                   for name, parts in _groups().items()}
    return {"variables": variables, "restore": whole[0], "restore_message": whole[1],
            "entries": entries}


def make_all(out: Path) -> None:
    v1.disable_eager_execution()
    v1.disable_resource_variables()  # VariableV2 nodes, but for the one asked to be a resource
    expected: dict = {}
    with tf.Graph().as_default():
        v1.set_random_seed(SEED)
        build("base")
        builder_vars = v1.global_variables()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            v1.train.Saver().save(sess, str(out / "base.ckpt"))
            builder = v1.saved_model.Builder(str(out / "sm_tf1"))
            builder.add_meta_graph_and_variables(sess, ["serve"])
            builder.save()
        assert builder_vars
    for variant in VARIANTS:
        with tf.Graph().as_default():
            v1.set_random_seed(SEED)
            build(variant)
            v1.train.export_meta_graph(filename=str(out / f"{variant}.meta"))
            if variant == "extra":
                with v1.Session() as sess:
                    sess.run(v1.global_variables_initializer())
                    v1.train.Saver().save(sess, str(out / "extra.ckpt"), write_meta_graph=False)
        expected[variant] = restored(out / f"{variant}.meta", out / "base.ckpt")
    expected["base"] = restored(out / "base.ckpt.meta", out / "base.ckpt")

    from tensorflow.core.protobuf import saved_model_pb2

    shutil.copytree(out / "sm_tf1", out / "sm_stripped")
    model = saved_model_pb2.SavedModel.FromString((out / "sm_tf1/saved_model.pb").read_bytes())
    for graph in model.meta_graphs:
        graph.ClearField("collection_def")
    (out / "sm_stripped/saved_model.pb").write_bytes(model.SerializeToString())
    with open(out / "expected.pkl", "wb") as f:
        pickle.dump(expected, f)


def built(tmp_path_factory) -> tuple[Path, dict]:
    """The fixtures, written once per test session (in one subprocess), and what TensorFlow
    did with them; for session-scoped fixtures in the test modules that use them."""
    from tests.helpers import written_once

    return written_once(__file__, tmp_path_factory)


if __name__ == "__main__":
    make_all(Path(sys.argv[1]))
