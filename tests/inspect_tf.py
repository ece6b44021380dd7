"""What TensorFlow itself says about the ``tf_fixtures`` checkpoints, for the ``inspect`` tests:
``inspect_checkpoint.print_tensors_in_checkpoint_file`` output under numpy print options, and
each object-based checkpoint's object graph (checkpoint key → ``full_name``), decoded by
TensorFlow's own ``TrackableObjectGraph`` proto. One subprocess per session.

``python tests/inspect_tf.py MANIFEST OUT.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# print options the tests pass to ckpt as --threshold/--precision
PRINT_OPTIONS = {"threshold": 6, "precision": 3}
PRINTED = {"tf1_adam": ["dense/kernel", "global_step", "beta1_power"],
           "all_dtypes": ["t_bfloat16", "t_float16", "t_bool", "t_string", "rank5_i32",
                          "t_int64", "scalar_f32"]}
OBJECT_BASED = ("tf2_keras", "keras3_ckpt", "savedmodel")


@pytest.fixture(scope="session")
def tf_views(tf_fixtures, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("inspect_tf") / "views.json"
    manifest = out.with_name("manifest.json")
    manifest.write_text(json.dumps(tf_fixtures))
    subprocess.run([sys.executable, __file__, str(manifest), str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def _printed(call) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        call()
    return buf.getvalue()


def main(manifest_path: str, out_path: str) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2
    from tensorflow.python.tools import inspect_checkpoint as ic

    manifest = json.loads(Path(manifest_path).read_text())
    views: dict = {"printed": {}, "all": {}, "full_names": {}}
    np.set_printoptions(**PRINT_OPTIONS)
    for fixture, names in PRINTED.items():
        prefix = manifest[fixture]["prefix"]
        views["printed"][fixture] = {
            n: _printed(lambda p=prefix, n=n: ic.print_tensors_in_checkpoint_file(p, n, False))
            for n in names}
        views["all"][fixture] = _printed(
            lambda p=prefix: ic.print_tensors_in_checkpoint_file(p, None, True))
    for fixture in OBJECT_BASED:
        if manifest[fixture]["skipped"]:
            continue
        reader = tf.train.load_checkpoint(manifest[fixture]["prefix"])
        graph = trackable_object_graph_pb2.TrackableObjectGraph()
        graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
        views["full_names"][fixture] = {a.checkpoint_key: a.full_name
                                        for node in graph.nodes for a in node.attributes}
    Path(out_path).write_text(json.dumps(views))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
