"""SavedModels and frozen graphs written by TensorFlow, with what TensorFlow reads back from
them, for tests/test_graphs_savedmodel.py and tests/test_graphdef_reader.py.

``python tests/tf_fixtures_graphs.py OUTDIR`` writes into OUTDIR:

- ``module_sm/``: a SavedModel of a ``tf.Module`` with two signatures; ``keras_sm/``: a tf.keras
  model saved as a SavedModel; ``tf1_sm/``: a TF1 export as Estimators wrote them
  (``tf.compat.v1.saved_model.Builder``: predict, classification and regression signatures
  and a sparse input, tagged ``serve``, and a second MetaGraph tagged ``eval``);
- ``frozen_v2.pb`` (``convert_variables_to_constants_v2`` of the module's function) and
  ``frozen_tf1.pb`` (TF1 ``graph_util.convert_variables_to_constants``), and ``unpacked.pb``,
  a GraphDef whose constants use the encodings TensorFlow parses but does not write
  (unpacked repeated fields, mixed runs, fewer values than elements);
- ``cond_functions.pb`` and ``cond_lowered.pb``: a ``tf.Module`` whose function reads its
  variables inside a ``tf.cond`` and a ``tf.while_loop``, frozen with
  ``lower_control_flow=False`` (the branches and the loop body stay library functions, with
  their constants) and with the default lowering; ``nested.pb``: a variable read in a nested
  ``tf.function`` (inlined: its constant is named by a number); ``defun.pb``: a TF1 graph
  calling a ``Defun`` that holds a constant;
- ``keras/CASE.pb``: the Keras models of :func:`keras_models` (tf.keras and Keras 3) frozen
  from a ``tf.function`` with ``convert_variables_to_constants_v2``, and ``keras/tf1.pb``, a
  tf.keras model built in a TF1 graph and frozen with ``convert_variables_to_constants``;
- ``expected.pkl``: ``{fixture: {...}}`` as TensorFlow reports it: signatures from the
  MetaGraphDef and from ``tf.saved_model.load(dir).signatures``, variable values from
  ``tf.train.load_checkpoint``, what ``saved_model_cli show --all`` prints (``cli``), frozen
  variables ``{const name: value}`` from the variables
  themselves, and every constant's value as a TensorFlow session computes it; for the Keras
  models, ``{CASE: {"weights": {variable path: value}, "consts": [constant names], "truth":
  {constant name: the path of the variable it froze}}}`` (from the function's captures).
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import pickle
import struct
import sys
from pathlib import Path

import keras  # Keras 3; tf.keras is tf-keras 2 (TF_USE_LEGACY_KERAS)
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

SEED = 1919


def _signature_defs(directory: Path) -> dict:
    """Tags and signatures as the MetaGraphDefs hold them (what saved_model_cli shows)."""
    model = saved_model_pb2.SavedModel.FromString((directory / "saved_model.pb").read_bytes())
    graphs = []
    for meta in model.meta_graphs:
        sigs = {}
        for name, sig in meta.signature_def.items():
            def infos(m):
                out = {}
                for key, info in m.items():
                    shape = None if info.tensor_shape.unknown_rank else \
                        [d.size for d in info.tensor_shape.dim]
                    out[key] = {"name": info.name or info.coo_sparse.values_tensor_name,
                                "dtype": tf.as_dtype(info.dtype).name if info.dtype
                                else "invalid", "shape": shape,
                                "encoding": info.WhichOneof("encoding")}
                return out
            sigs[name] = {"method": sig.method_name, "inputs": infos(sig.inputs),
                          "outputs": infos(sig.outputs)}
        graphs.append({"tags": list(meta.meta_info_def.tags), "signatures": sigs,
                       "tensorflow_version": meta.meta_info_def.tensorflow_version})
    return {"schema_version": model.saved_model_schema_version, "meta_graphs": graphs}


def _loaded_signatures(directory: Path) -> dict:
    loaded = tf.saved_model.load(str(directory))
    out = {}
    for name, fn in loaded.signatures.items():
        _, kwargs = fn.structured_input_signature
        inputs = {k: (spec.dtype.name, spec.shape.as_list() if spec.shape.rank is not None
                      else None) for k, spec in kwargs.items()}
        outputs = {k: (spec.dtype.name, spec.shape.as_list() if spec.shape.rank is not None
                       else None) for k, spec in fn.structured_outputs.items()}
        out[name] = {"inputs": inputs, "outputs": outputs}
    return out


def _saved_model_cli(directory: Path) -> str:
    """What ``saved_model_cli show --all --dir DIRECTORY`` prints (its own function, run here
    rather than in a process of its own)."""
    import contextlib
    import io

    from tensorflow.python.tools import saved_model_cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        saved_model_cli._show_all(str(directory))
    return out.getvalue()


def _bundle(prefix: str) -> dict:
    reader = tf.train.load_checkpoint(prefix)
    return {k: np.asarray(reader.get_tensor(k)) for k in reader.get_variable_to_shape_map()}


def _session_consts(graph_def) -> dict:
    """Every Const node's value, computed by a TensorFlow session from the GraphDef."""
    with tf.Graph().as_default() as g:
        tf.compat.v1.import_graph_def(graph_def, name="")
        names = [n.name for n in graph_def.node if n.op == "Const"]
        with tf.compat.v1.Session(graph=g) as sess:
            values = sess.run([g.get_tensor_by_name(n + ":0") for n in names])
    return dict(zip(names, [np.asarray(v) for v in values], strict=True))


class Scaler(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(SEED)
        self.kernel = tf.Variable(rng.standard_normal((3, 4)).astype(np.float32),
                                  name="dense/kernel")
        self.half = tf.Variable(rng.standard_normal(4).astype(np.float16), name="half")
        self.counts = tf.Variable(np.array([3, -7, 11, 2**31 - 1], np.int32), name="counts")

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def __call__(self, x):
        y = tf.matmul(x, self.kernel) + tf.cast(self.half, tf.float32)
        y = y * tf.cast(self.counts, tf.float32) + tf.constant(0.25, shape=[4])
        return {"y": y, "bf": tf.cast(tf.constant(np.array([1.5, -2.25], tf.bfloat16.
                                                            as_numpy_dtype)), tf.float32)}

    @tf.function(input_signature=[tf.TensorSpec([2], tf.int64, name="ids"),
                                  tf.TensorSpec(None, tf.string, name="label")])
    def lookup(self, ids, label):
        return {"counts": tf.gather(self.counts, ids), "label": label}


def module_saved_model(out: Path, expected: dict) -> Scaler:
    module = Scaler()
    directory = out / "module_sm"
    tf.saved_model.save(module, str(directory), signatures={
        "serving_default": module.__call__.get_concrete_function(),
        "lookup": module.lookup.get_concrete_function()})
    expected["module_sm"] = {"meta": _signature_defs(directory),
                             "loaded": _loaded_signatures(directory),
                             "cli": _saved_model_cli(directory),
                             "variables": _bundle(str(directory / "variables" / "variables"))}
    return module


def keras_saved_model(out: Path, expected: dict) -> None:
    inputs = tf.keras.Input((5,), name="features")
    hidden = tf.keras.layers.Dense(3, activation="relu", name="hidden")(inputs)
    outputs = tf.keras.layers.Dense(2, name="logits")(hidden)
    model = tf.keras.Model(inputs, outputs)
    directory = out / "keras_sm"
    model.save(str(directory), save_format="tf")
    expected["keras_sm"] = {"meta": _signature_defs(directory),
                            "loaded": _loaded_signatures(directory),
                            "cli": _saved_model_cli(directory),
                            "variables": _bundle(str(directory / "variables" / "variables"))}


def tf1_saved_model(out: Path, expected: dict) -> None:
    """A TF1 export: ``saved_model.Builder`` with the signature helpers Estimators used."""
    v1 = tf.compat.v1
    build = v1.saved_model.signature_def_utils
    info = v1.saved_model.build_tensor_info
    rng = np.random.default_rng(SEED + 4)
    directory = out / "tf1_sm"
    with tf.Graph().as_default() as g:
        x = v1.placeholder(tf.float32, [None, 3], name="x")
        examples = v1.placeholder(tf.string, [None], name="examples")
        ids = v1.sparse_placeholder(tf.int64, [None, 5], name="ids")
        kernel = v1.get_variable("dense/kernel", initializer=rng.standard_normal((3, 4))
                                 .astype(np.float32))
        bias = v1.get_variable("dense/bias", initializer=rng.standard_normal(4)
                               .astype(np.float32))
        half = v1.get_variable("half", initializer=rng.standard_normal(4).astype(np.float16))
        v1.train.get_or_create_global_step()
        logits = tf.matmul(x, kernel) + bias + tf.cast(half, tf.float32)
        scores = tf.nn.softmax(logits, name="scores")
        classes = tf.tile(tf.constant([[b"a", b"b", b"c", b"d"]]), [tf.shape(x)[0], 1],
                          name="classes")
        value = tf.reduce_sum(logits, axis=1, keepdims=True, name="value")
        counted = tf.sparse.reduce_sum(ids, axis=1, name="counted")
        serving = build.predict_signature_def({"x": x}, {"scores": scores, "logits": logits})
        signatures = {
            "serving_default": serving,
            "classification": build.classification_signature_def(examples, classes, scores),
            "regression": build.regression_signature_def(examples, value),
            "sparse": build.build_signature_def({"ids": info(ids)}, {"counted": info(counted)},
                                                "tensorflow/serving/predict"),
        }
        with v1.Session(graph=g) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(directory))
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map=signatures)
            builder.add_meta_graph(["eval"], signature_def_map={"predict": serving})
            builder.save()
    expected["tf1_sm"] = {"meta": _signature_defs(directory),
                          "cli": _saved_model_cli(directory),
                          "variables": _bundle(str(directory / "variables" / "variables"))}


def frozen_v2(out: Path, expected: dict, module: Scaler) -> None:
    fn = module.__call__.get_concrete_function()
    frozen = convert_variables_to_constants_v2(fn)
    graph_def = frozen.graph.as_graph_def()
    (out / "frozen_v2.pb").write_bytes(graph_def.SerializeToString())
    by_handle = {id(v.handle): v for v in module.variables}
    variables = {}
    for outer, inner in fn.graph.captures:
        if id(outer) in by_handle:
            variables[inner.op.name] = by_handle[id(outer)].numpy()
    expected["frozen_v2"] = {"variables": variables, "consts": _session_consts(graph_def)}


def frozen_tf1(out: Path, expected: dict) -> None:
    v1 = tf.compat.v1
    rng = np.random.default_rng(SEED + 1)
    with tf.Graph().as_default() as g:
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        with v1.variable_scope("dense"):
            kernel = v1.get_variable("kernel", initializer=rng.standard_normal((4, 5))
                                     .astype(np.float32))
            bias = v1.get_variable("bias", initializer=rng.standard_normal(5).astype(np.float32))
        half = v1.get_variable("half", initializer=rng.standard_normal(5).astype(np.float16))
        steps = v1.get_variable("steps", initializer=np.array([1, -2, 3, 2**40, -(2**62)],
                                                                 np.int64))
        res = v1.get_variable("res/w", initializer=np.arange(5, dtype=np.float32),
                              use_resource=True)
        ref = v1.get_variable("ref/kernel", initializer=rng.standard_normal(5)
                              .astype(np.float32), use_resource=False)  # read by ref/kernel/read
        y = tf.matmul(x, kernel) + bias + tf.cast(half, tf.float32) + res + ref
        y = y + tf.cast(steps, tf.float32) * tf.constant(0.5, shape=[5])  # float_val broadcast
        y = y + tf.cast(tf.constant(np.array(7, np.int32)), tf.float32)
        y = y + tf.cast(tf.constant(np.float16(1.25), shape=[5]), tf.float32)  # half_val
        y = y + tf.cast(tf.constant(np.array([0.5, 1, -3, 2.5, 8], tf.bfloat16.as_numpy_dtype)),
                        tf.float32)
        y = y * tf.cast(tf.constant([True, False, True, True, False]), tf.float32)
        y = tf.identity(y + tf.cast(tf.constant(2.0, tf.float64), tf.float32), name="y")
        tf.identity(tf.constant([b"frozen", b"graph\x00\xff"]), name="label")
        with v1.Session(graph=g) as sess:
            sess.run(v1.global_variables_initializer())
            values = dict(zip(["dense/kernel", "dense/bias", "half", "steps", "res/w",
                               "ref/kernel"],
                              sess.run([kernel, bias, half, steps, res, ref]), strict=True))
            frozen = v1.graph_util.convert_variables_to_constants(
                sess, g.as_graph_def(), ["y", "label"])
    (out / "frozen_tf1.pb").write_bytes(frozen.SerializeToString())
    expected["frozen_tf1"] = {"variables": values, "consts": _session_consts(frozen)}


# --- frozen graphs with library functions --------------------------------------------------


def _proto_consts(graph_def) -> dict:
    """The Const nodes of the graph and of its library functions (``FUNCTION/NODE``), as
    TensorFlow's own protobuf messages and ``tf.make_ndarray`` read them (a session cannot
    run a constant under a loop's control inputs, nor one inside a function)."""
    nodes = [(n.name, n) for n in graph_def.node] + [
        (f"{f.signature.name}/{n.name}", n) for f in graph_def.library.function
        for n in f.node_def]
    return {name: np.asarray(tf.make_ndarray(n.attr["value"].tensor)) for name, n in nodes
            if n.op == "Const"}


def _in_functions(graph_def) -> list[str]:
    return [f"{f.signature.name}/{n.name}" for f in graph_def.library.function
            for n in f.node_def if n.op == "Const"]


class Branches(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(SEED + 3)
        self.w = tf.Variable(rng.standard_normal((2, 3)).astype(np.float32), name="w")
        self.b = tf.Variable(rng.standard_normal(3).astype(np.float32), name="b")
        self.decay = tf.Variable(np.float32(0.75), name="decay")

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def __call__(self, x):
        y = tf.cond(tf.reduce_sum(x) > 0,
                    lambda: tf.matmul(x, self.w) + tf.constant([1.0, 2.0, 3.0]),
                    lambda: tf.matmul(x, self.w) - self.b)

        def body(i, acc):
            return i + 1, acc * self.decay + tf.constant(0.25, shape=[3])

        return tf.while_loop(lambda i, acc: i < 3, body, [tf.constant(0), y])[1]


def library_graphs(out: Path, expected: dict) -> None:
    module = Branches()
    fn = module.__call__.get_concrete_function()
    values = [v.numpy() for v in module.variables]
    for name, lower in (("cond_functions", False), ("cond_lowered", True)):
        graph_def = convert_variables_to_constants_v2(fn, lower_control_flow=lower) \
            .graph.as_graph_def()
        (out / f"{name}.pb").write_bytes(graph_def.SerializeToString())
        consts = _proto_consts(graph_def)
        # The variables' values are drawn apart: each is the one constant holding it.
        variables = {k: c for v in values for k, c in consts.items()
                     if c.shape == v.shape and c.dtype == v.dtype and np.array_equal(c, v)}
        assert len(variables) == len(values), variables
        expected[name] = {"consts": consts, "variables": variables,
                          "in_functions": _in_functions(graph_def)}

    w = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5, name="w")

    @tf.function
    def inner(x):
        return tf.matmul(x, w) + tf.constant([1.0, 2.0, 3.0])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def outer(x):
        return inner(x) * 2.0

    graph_def = convert_variables_to_constants_v2(outer.get_concrete_function()) \
        .graph.as_graph_def()
    (out / "nested.pb").write_bytes(graph_def.SerializeToString())
    consts = _session_consts(graph_def)
    expected["nested"] = {"consts": consts, "variables": {
        k: c for k, c in consts.items() if c.shape == (2, 3) and np.array_equal(c, w.numpy())}}

    from tensorflow.python.framework import function

    v1 = tf.compat.v1
    with tf.Graph().as_default() as g:
        x = v1.placeholder(tf.float32, [None, 2], name="x")

        @function.Defun(tf.float32)
        def scale(a):
            return a * tf.constant([3.0, -4.5])

        tf.identity(scale(x), name="y")
        with v1.Session(graph=g) as sess:
            frozen = v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), ["y"])
    (out / "defun.pb").write_bytes(frozen.SerializeToString())
    expected["defun"] = {"consts": _proto_consts(frozen), "variables": {},
                         "in_functions": _in_functions(frozen)}


# --- Keras models frozen by TensorFlow -------------------------------------------------------


def keras_models(tf_keras, keras3) -> dict:
    """``{case: model}``: the models frozen in ``keras/CASE.pb``, built with explicit names so
    that the tests can build the same architecture again (with other weights).

    ``dense`` pairs by shape, ``dense`` for tf.keras also by layer name (two 3-wide biases);
    ``same`` (Keras 3) has two layers of one shape whose name scopes in the function are
    ``hidden_1`` and ``hidden_1_2``; ``bn`` has four normalization vectors of one shape.
    """
    def dense(k, widths, inputs=4):
        return k.Sequential([k.Input((inputs,))] + [
            k.layers.Dense(w, name=n, bias_initializer="random_normal")
            for n, w in widths], name="net")

    def bn(k):
        return k.Sequential([k.Input((4,)), k.layers.Dense(3, name="hidden"),
                             k.layers.BatchNormalization(name="norm"),
                             k.layers.Dense(2, name="head")], name="net")

    return {"tfk_dense": dense(tf_keras, [("hidden", 3), ("mid", 3), ("head", 2)]),
            "tfk_bn": bn(tf_keras),
            "k3_dense": dense(keras3, [("hidden", 5), ("mid", 3), ("head", 2)]),
            "k3_same": dense(keras3, [("hidden", 3), ("hidden_1", 3)], inputs=3),
            "k3_bn": bn(keras3)}


def _path(v) -> str:
    name = getattr(v, "path", None) or v.name
    return name[:-2] if name.endswith(":0") else name


def _randomize(model, rng) -> None:
    # Batch normalization starts at ones and zeros: give every weight a value of its own.
    for v in model.weights:
        v.assign(rng.standard_normal(tuple(v.shape)).astype(np.float32) + 2)


def keras_frozen(out: Path, expected: dict) -> None:
    (out / "keras").mkdir()
    rng = np.random.default_rng(SEED + 2)
    for case, model in keras_models(tf.keras, keras).items():
        _randomize(model, rng)
        spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
        fn = tf.function(lambda x, m=model: m(x, training=False)).get_concrete_function(spec)
        graph_def = convert_variables_to_constants_v2(fn).graph.as_graph_def()
        (out / "keras" / f"{case}.pb").write_bytes(graph_def.SerializeToString())
        handles = {id((v if isinstance(v, tf.Variable) else v.value).handle): _path(v)
                   for v in model.weights}
        expected[f"keras/{case}"] = {
            "weights": {_path(v): np.asarray(v.numpy()) for v in model.weights},
            "consts": [n.name for n in graph_def.node if n.op == "Const"],
            "truth": {inner.op.name: handles[id(outer)] for outer, inner in fn.graph.captures
                      if id(outer) in handles}}
    v1 = tf.compat.v1
    with tf.Graph().as_default() as g:
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3, name="hidden"),
                                     tf.keras.layers.Dense(2, name="head")], name="net")
        sess = v1.keras.backend.get_session()
        for v in model.weights:
            sess.run(v.assign(rng.standard_normal(tuple(v.shape)).astype(np.float32)))
        weights = {_path(v): sess.run(v) for v in model.weights}
        frozen = v1.graph_util.convert_variables_to_constants(
            sess, g.as_graph_def(), [model.outputs[0].op.name])
    (out / "keras" / "tf1.pb").write_bytes(frozen.SerializeToString())
    expected["keras/tf1"] = {"weights": weights,
                             "consts": [n.name for n in frozen.node if n.op == "Const"],
                             "truth": {n: n for n in weights}}


# --- a GraphDef in the encodings TensorFlow reads but does not write ---------------------------


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while v > 0x7F:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = _varint(number << 3 | wire)
    return key + (_varint(len(payload)) + payload if wire == 2 else payload)


def _shape(dims) -> bytes:
    return b"".join(_field(2, 2, _field(1, 0, _varint(d)) if d else b"") for d in dims)


def _const(name: str, dtype: int, dims, values: bytes) -> bytes:
    tensor = _field(1, 0, _varint(dtype)) + _field(2, 2, _shape(dims)) + values
    attr_value = _field(2, 2, _field(8, 2, tensor))
    attr_dtype = _field(2, 2, _field(6, 0, _varint(dtype)))
    return _field(1, 2, _field(1, 2, name.encode()) + _field(2, 2, b"Const")
                  + _field(5, 2, _field(1, 2, b"dtype") + attr_dtype)
                  + _field(5, 2, _field(1, 2, b"value") + attr_value))


def unpacked(out: Path, expected: dict) -> None:
    f32 = b"".join(_field(5, 5, struct.pack("<f", v)) for v in (1.5, -2.0, 3.25))
    f64 = _field(6, 1, struct.pack("<d", 0.1)) + _field(6, 2, struct.pack("<2d", 0.2, -0.3))
    ints = b"".join(_field(7, 0, _varint(v)) for v in (-1, 5, -(2**31))) + \
        _field(7, 2, _varint(9) + _varint(-4))
    int8 = b"".join(_field(7, 0, _varint(v)) for v in (-128, 127))
    i64 = _field(10, 0, _varint(-(2**63))) + _field(10, 2, _varint(2**63 - 1) + _varint(-5))
    half = b"".join(_field(13, 0, _varint(int(np.float16(v).view(np.uint16))))
                    for v in (0.5, -65504.0))
    bf16 = _field(13, 2, _varint(0x3FC0) + _varint(0xC020))  # 1.5, -2.5
    bools = _field(11, 0, b"\x01") + _field(11, 0, b"\x00") + _field(11, 2, b"\x01\x01")
    strings = _field(8, 2, b"a") + _field(8, 2, b"\x00b")
    u32 = _field(16, 0, _varint(2**32 - 1)) + _field(16, 2, _varint(7))
    u64 = _field(17, 0, _varint(2**64 - 1))
    c64 = _field(9, 2, struct.pack("<4f", 1, 2, 3, -4))
    graph = b"".join([
        _const("f32_unpacked", 1, [3], f32),
        _const("f32_fill_last", 1, [2, 3], f32),  # three values, six elements
        _const("f32_zeros", 1, [2, 2], b""),
        _const("f64_mixed", 2, [3], f64),
        _const("i32_mixed", 3, [5], ints),
        _const("i8_unpacked", 6, [2], int8),
        _const("i64_mixed", 9, [3], i64),
        _const("f16_unpacked", 19, [2], half),
        _const("bf16_packed", 14, [2], bf16),
        _const("bool_mixed", 10, [4], bools),
        _const("str_fill", 7, [3], strings),
        _const("u32_mixed", 22, [2], u32),
        _const("u64_broadcast", 23, [2, 2], u64),
        _const("c64_packed", 8, [2], c64),
        _const("scalar", 1, [], _field(5, 5, struct.pack("<f", 42.0))),
    ])
    (out / "unpacked.pb").write_bytes(graph)
    graph_def = tf.compat.v1.GraphDef.FromString(graph)
    expected["unpacked"] = {"consts": _session_consts(graph_def)}


def make_all(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tf.random.set_seed(SEED)
    expected: dict = {}
    module = module_saved_model(out, expected)
    keras_saved_model(out, expected)
    tf1_saved_model(out, expected)
    frozen_v2(out, expected, module)
    frozen_tf1(out, expected)
    keras_frozen(out, expected)
    library_graphs(out, expected)
    unpacked(out, expected)
    with open(out / "expected.pkl", "wb") as f:
        pickle.dump(expected, f)


def built(tmp_path_factory) -> tuple[Path, dict]:
    """The fixtures, written once per test session (in one subprocess), and what TensorFlow
    reads from them; for session-scoped fixtures in the test modules that use them."""
    from tests.helpers import written_once

    return written_once(__file__, tmp_path_factory)


if __name__ == "__main__":
    make_all(Path(sys.argv[1]))
