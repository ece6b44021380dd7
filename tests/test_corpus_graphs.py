"""The graph seeds of the corruption corpus (tests/corpus_graphs.py) are what TensorFlow reads
them as: its own protobuf messages parse them, ``tf.make_ndarray`` gives every constant bit for
bit as converter reads it, the ``.meta``'s variables are its VariableDefs, and the
corpus's independent parser agrees with TensorFlow on the frozen graph."""

from __future__ import annotations

import numpy as np
import pytest

import converter
from converter import graphs
from tests import corpus_graphs
from tests.helpers import assert_same


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph_seeds")
    for seed in corpus_graphs.SEEDS:
        seed.write(root)
    return root


def test_frozen_seed_reads_as_tensorflow_reads_it(tf, seeds):
    raw = (seeds / "frozen.pb").read_bytes()
    graph_def = tf.compat.v1.GraphDef.FromString(raw)
    theirs = {n.name: tf.make_ndarray(n.attr["value"].tensor) for n in graph_def.node
              if n.op == "Const"}
    inside = {f"{f.signature.name}/{n.name}": tf.make_ndarray(n.attr["value"].tensor)
              for f in graph_def.library.function for n in f.node_def if n.op == "Const"}
    assert list(inside) == ["branch/cond/scale"]
    theirs.update(inside)
    oracle = corpus_graphs.graphdef_oracle(seeds / "frozen.pb")
    with converter.read(seeds / "frozen.pb") as ckpt:
        assert sorted(ckpt) == sorted(theirs) == sorted(oracle)
        for name, value in theirs.items():
            assert_same(np.asarray(ckpt[name].read()), value, name)
            mine = np.asarray(ckpt[name].read())
            if mine.dtype.hasobject:
                assert list(oracle[name].ravel()) == list(value.ravel())
            else:
                assert oracle[name].tobytes() == value.tobytes(), name
        assert ckpt["dense/kernel"].kind == "variable"
        # Passed to the If's branches, which read it as a variable.
        assert ckpt["cond/input_1"].kind == "variable"
        assert ckpt["cond/input_1"].attrs["named_after"] == "reader"
        assert ckpt["branch/cond/scale"].kind == "other"
        assert ckpt["branch/cond/scale"].attrs["function"] == "branch"


def test_meta_seed_is_what_tensorflow_parses(tf, seeds):
    from tensorflow.core.framework import variable_pb2
    from tensorflow.core.protobuf import meta_graph_pb2

    path = seeds / "model.ckpt.meta"
    meta = meta_graph_pb2.MetaGraphDef.FromString(path.read_bytes())
    defs = [variable_pb2.VariableDef.FromString(raw)
            for raw in meta.collection_def["variables"].bytes_list.value]
    trainable = {variable_pb2.VariableDef.FromString(raw).variable_name.split(":")[0]
                 for raw in meta.collection_def["trainable_variables"].bytes_list.value}
    nodes = {n.name: n for n in meta.graph_def.node}
    theirs = []
    for d in defs:
        name = d.variable_name.split(":")[0]
        n, info = nodes[name], d.save_slice_info_def
        theirs.append((name, tf.as_dtype(n.attr["dtype"].type).name,
                       tuple(x.size for x in n.attr["shape"].shape.dim), name in trainable,
                       d.is_resource, (info.full_name, tuple(info.full_shape),
                                       tuple(info.var_offset), tuple(info.var_shape))
                       if info.full_name else None))
    mine = graphs.meta_graph(path)
    assert [(v.name, v.dtype, v.shape, v.trainable, v.resource,
             (v.partition.full_name, v.partition.full_shape, v.partition.offset,
              v.partition.length) if v.partition else None)
            for v in mine.variables] == theirs


def test_saved_model_seed_is_what_tensorflow_parses(tf, seeds):
    from tensorflow.core.protobuf import saved_model_pb2

    raw = (seeds / "sm" / "saved_model.pb").read_bytes()
    model = saved_model_pb2.SavedModel.FromString(raw)
    (meta,) = model.meta_graphs
    mine = graphs.saved_model(seeds / "sm").meta_graph("serve")
    assert mine.tags == tuple(meta.meta_info_def.tags)
    assert {s.name: {t.key: (t.name, t.dtype, t.shape) for t in s.inputs + s.outputs}
            for s in mine.signatures} == {
        name: {key: (info.name, tf.as_dtype(info.dtype).name,
                     None if info.tensor_shape.unknown_rank
                     else tuple(d.size for d in info.tensor_shape.dim))
               for key, info in list(sig.inputs.items()) + list(sig.outputs.items())}
        for name, sig in meta.signature_def.items()}
    reader = tf.train.load_checkpoint(str(seeds / "sm" / "variables" / "variables"))
    with converter.read(seeds / "sm") as ckpt:
        for name in reader.get_variable_to_shape_map():
            assert_same(np.asarray(ckpt[name].read()), reader.get_tensor(name), name)
