"""TensorFlow graph files in the corruption corpus (tests/corpus.py): a frozen ``GraphDef``
(``.pb``), a SavedModel's ``saved_model.pb`` and a TF1 ``.meta`` (``MetaGraphDef``).

The seeds are encoded here field by field, with the field numbers of TensorFlow's ``.proto``
files (``graph.proto``, ``node_def.proto``, ``attr_value.proto``, ``tensor.proto``,
``meta_graph.proto``, ``saved_model.proto``, ``variable.proto``), so that the corpus needs no
TensorFlow; tests/test_corpus_graphs.py checks that TensorFlow parses them as meant. Mutants:
truncations at every field boundary, length prefixes set past their message or to 2**62,
wire types changed, over-long keys, random bit flips, and messages rebuilt with one bad
field each (shapes, dtypes, value counts, names, maps, collections).

Protobuf has no checksums: a flipped byte or a cut at a field boundary often leaves a valid
message of other contents. Those mutants are ``may_differ``; for the frozen graph an
independent parser (the ``protobuf`` package, messages declared here from descriptors) must
then read the same values; for the other two, such a mutant may read as other contents, but
every reader path must then succeed.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import converter
from converter import proto
from converter.proto import BYTES, VARINT

e = proto.encode
KERNEL = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5) / 3
IDS = np.array([7, -1, 2**31 - 1, -(2**31)], np.int32)


# ---------------------------------------------------------------------------------------------
# Encoding


def shape(dims) -> bytes:
    return e((2, e([(1, d)] if d else [])) for d in dims)


def tensor(dtype: int, dims, *fields: tuple[int, Any]) -> bytes:
    return e([(1, dtype), (2, shape(dims)), *fields])


def attr(key: str, value: bytes) -> tuple[int, bytes]:
    return 5, e([(1, key), (2, value)])


def node(name: str | bytes, op: str, *extra: tuple[int, Any]) -> tuple[int, bytes]:
    return 1, e([(1, name), (2, op), *extra])


def const(name: str | bytes, dtype: int, dims, *fields: tuple[int, Any]) -> tuple[int, bytes]:
    return node(name, "Const", attr("dtype", e([(6, dtype)])),
                attr("value", e([(8, tensor(dtype, dims, *fields))])))


def packed_varints(values) -> bytes:
    return b"".join(proto.varint(int(v)) for v in values)


def frozen_nodes() -> list[tuple[int, bytes]]:
    """The nodes of a small frozen TF1 graph: a variable folded into a Const and read by
    ``NAME/read``, and constants in each encoding TensorFlow writes (the seed adds
    :func:`library_nodes` and a library function, :func:`function_def`)."""
    half = np.array([0.5, -65504.0], np.float16).view(np.uint16)
    return [
        node("x", "Placeholder", attr("dtype", e([(6, 1)]))),
        const("dense/kernel", 1, [3, 4], (4, KERNEL.tobytes())),
        node("dense/kernel/read", "Identity", (3, "dense/kernel"), attr("T", e([(6, 1)]))),
        const("dense/bias", 1, [4], (5, struct.pack("<4f", 0.25, -1.5, 3.0, 1e-3))),
        const("scale", 1, [2, 2], (5, struct.pack("<f", 0.5))),  # one value, broadcast
        const("steps", 9, [3], (10, packed_varints([1, -2, 2**40]))),
        const("half", 19, [2], (13, packed_varints(half))),
        const("flags", 10, [3], (11, b"\x01\x00\x01")),
        const("label", 7, [2], (8, b"frozen"), (8, b"graph\x00\xff")),
        const("ids", 3, [4], (4, IDS.tobytes())),
        node("MatMul", "MatMul", (3, "x"), (3, "dense/kernel/read")),
    ]


def func_attr(key: str, function: str) -> tuple[int, bytes]:
    return attr(key, e([(10, e([(1, function)]))]))


def library_nodes() -> list[tuple[int, bytes]]:
    """An If of TF2 freezing with ``lower_control_flow=False``: a variable's constant passed to
    the branches (``cond/input_1``), which read it and hold a constant of their own."""
    return [
        const("pred", 10, [], (11, b"\x01")),
        const("cond/input_1", 1, [2], (4, np.array([1.5, -2.5], np.float32).tobytes())),
        node("cond", "If", (3, "pred"), (3, "cond/input_1"), func_attr("then_branch", "branch"),
             func_attr("else_branch", "branch")),
    ]


def function_def(name: str = "branch", nodes: list | None = None,
                 args: tuple = ("cond_mul_readvariableop_resource",)) -> tuple[int, bytes]:
    """A FunctionDef (``signature`` 1: an OpDef of ``name`` 1 and ``input_arg`` 2;
    ``node_def`` 3) reading its argument as a variable and scaling it by a constant."""
    if nodes is None:
        nodes = [(3, e([(1, "cond/mul/ReadVariableOp"), (2, "Identity"), (3, args[0])])),
                 (3, const("cond/scale", 1, [2], (5, struct.pack("<2f", 0.5, 4.0)))[1]),
                 (3, e([(1, "cond/mul"), (2, "Mul"), (3, "cond/mul/ReadVariableOp:output:0"),
                        (3, "cond/scale:output:0")]))]
    signature = e([(1, name), *((2, e([(1, a), (3, 1)])) for a in args)])
    return 1, e([(1, signature), *nodes])


def frozen_graph(nodes: list | None = None, tail: list | None = None,
                 functions: list | None = None) -> bytes:
    """A GraphDef (``node`` 1, ``library`` 2, ``versions`` 4: ``producer`` 1)."""
    functions = [function_def()] if functions is None else functions
    return e((nodes if nodes is not None else frozen_nodes() + library_nodes()) + (tail or [])
             + ([(2, e(functions))] if functions else []) + [(4, e([(1, 1882)]))])


def variable_def(name: str, *, resource: bool = False, trainable: bool = True,
                 partition: bytes | None = None) -> bytes:
    items: list[tuple[int, Any]] = [(1, f"{name}:0"), (2, f"{name}/Assign"),
                                    (3, f"{name}/read:0")]
    if partition is not None:
        items.append((4, partition))
    return e(items + [(5, int(resource)), (7, int(trainable))])


def slice_info(full: str, full_shape, offset, length) -> bytes:
    return e([(1, full), (2, packed_varints(full_shape)), (3, packed_varints(offset)),
              (4, packed_varints(length))])


def collection(key: str, values: list[bytes]) -> tuple[int, bytes]:
    return 4, e([(1, key), (2, e([(2, e((1, v) for v in values))]))])


def variable_node(name: str, op: str, dtype: int, dims) -> tuple[int, bytes]:
    return node(name, op, attr("dtype", e([(6, dtype)])), attr("shape", e([(7, shape(dims))])))


def meta_graph(variables: list[bytes] | None = None, nodes: list | None = None,
               extra: list | None = None, tags: tuple = ()) -> bytes:
    """A TF1 ``.meta``: ``meta_info_def`` 1, ``graph_def`` 2, ``collection_def`` 4."""
    if variables is None:
        variables = [variable_def("enc/w"), variable_def("enc/b"),
                     variable_def("emb/part_0", partition=slice_info("emb", [10, 4], [0, 0],
                                                                      [5, 4])),
                     variable_def("emb/part_1", partition=slice_info("emb", [10, 4], [5, 0],
                                                                      [5, 4])),
                     variable_def("r", resource=True),
                     variable_def("global_step", trainable=False)]
    if nodes is None:
        nodes = [variable_node("enc/w", "VariableV2", 1, [3, 4]),
                 variable_node("enc/b", "VariableV2", 1, [4]),
                 variable_node("emb/part_0", "VariableV2", 1, [5, 4]),
                 variable_node("emb/part_1", "VariableV2", 1, [5, 4]),
                 variable_node("r", "VarHandleOp", 2, [2]),
                 variable_node("global_step", "VariableV2", 9, [])]
    info = e([(1, ""), *((4, t) for t in tags), (5, "2.16.1")])
    trainable = [v for v in variables if _trainable(v)]
    return e([(1, info), (2, e(nodes + [(4, e([(1, 1882)]))])),
              collection("trainable_variables", trainable), collection("variables", variables)]
             + (extra or []))


def _trainable(variable: bytes) -> bool:
    try:
        return bool(proto.last_int(proto.decode(variable), 7))
    except proto.ProtoError:  # a damaged VariableDef: in the global collection only
        return False


def tensor_info(name: str, dtype: int, dims) -> bytes:
    return e([(1, name), (2, dtype), (3, shape(dims) if dims is not None else e([(3, 1)]))])


def signature(inputs: dict, outputs: dict, method: str) -> bytes:
    return e([*((1, e([(1, k), (2, v)])) for k, v in inputs.items()),
              *((2, e([(1, k), (2, v)])) for k, v in outputs.items()), (3, method)])


def saved_model(signatures: dict[str, bytes] | None = None, extra_graph: list | None = None,
                version: int = 1) -> bytes:
    """A TF1-style ``saved_model.pb``: ``saved_model_schema_version`` 1, ``meta_graphs`` 2 (one
    tagged ``serve``, its variables collection and ``signature_def`` 5)."""
    if signatures is None:
        signatures = {
            "serving_default": signature(
                {"x": tensor_info("x:0", 1, [-1, 3])},
                {"y": tensor_info("MatMul:0", 1, [-1, 4]),
                 "label": tensor_info("label:0", 7, None)}, "tensorflow/serving/predict"),
            "lookup": signature({"ids": tensor_info("ids:0", 9, [2])},
                                {"counts": tensor_info("Gather:0", 3, [2])},
                                "tensorflow/serving/predict")}
    graph = meta_graph([variable_def("dense/kernel"), variable_def("dense/bias")],
                       [variable_node("dense/kernel", "VariableV2", 1, [3, 4]),
                        variable_node("dense/bias", "VariableV2", 1, [4])],
                       [(5, e([(1, k), (2, v)])) for k, v in signatures.items()]
                       + (extra_graph or []), tags=("serve",))
    return e([(1, version), (2, graph)])


# ---------------------------------------------------------------------------------------------
# Originals


SM_VARIABLES = {"dense/kernel": KERNEL, "dense/bias": np.array([0.5, -1, 2, 8], np.float32)}


@dataclass(frozen=True)
class Seed:
    key: str
    format: str  # a reader format, or "saved_model" / "metagraph" (checked by graph_facts)
    target: str
    write: Callable[[Path], None]


SEEDS = [
    Seed("graphdef", "graphdef", "frozen.pb",
         lambda d: (d / "frozen.pb").write_bytes(frozen_graph())),
    Seed("saved_model", "saved_model", "sm", lambda d: _write_saved_model(d / "sm")),
    Seed("metagraph", "metagraph", "model.ckpt.meta",
         lambda d: (d / "model.ckpt.meta").write_bytes(meta_graph())),
]


def _write_saved_model(directory: Path) -> None:
    (directory / "variables").mkdir(parents=True)
    (directory / "saved_model.pb").write_bytes(saved_model())
    converter.write(SM_VARIABLES, directory / "variables" / "variables", format="tf",
                    state_file=False)


def graph_facts(fmt: str, target: Path) -> str:
    """What every reader path makes of a graph file, as JSON; ConverterError where one
    refuses it."""
    from converter import graphs
    from converter.graphs.metagraph import saved_model_variables
    from converter.loaders.order import given_order
    from converter.loaders.plan import plan

    if fmt == "metagraph":
        graph = graphs.meta_graph(target)
        lines = graphs.describe_variables(graph)
        names = graph.checkpoint_names()
        try:
            order = given_order(target)
        except converter.FormatError as exc:
            order = str(exc)
        report = plan({n: np.zeros(1, np.float32) for n in names}, target, match="name")
        return json.dumps({"graph": graph.as_dict(), "lines": lines, "order": order,
                           "plan": json.loads(report.to_json())})
    model = graphs.saved_model(target)
    lines = graphs.describe(model)
    variables = saved_model_variables(target)
    with converter.read(target) as ckpt:  # the variables, which tell where the graph is
        listing = sorted(ckpt)
    report = plan(SM_VARIABLES, target)
    return json.dumps({"model": lines, "variables": variables.as_dict(), "listing": listing,
                       "plan": json.loads(report.to_json())})


# ---------------------------------------------------------------------------------------------
# Mutants

# Which fields hold messages, by message: {message: {field: message}}.
SCHEMA: dict[str, dict[int, str]] = {
    "GraphDef": {1: "NodeDef", 2: "Library", 4: "-"},
    "Library": {1: "FunctionDef"},
    "FunctionDef": {1: "OpDef", 3: "NodeDef"},
    "OpDef": {2: "-"},
    "NodeDef": {5: "AttrEntry"},
    "AttrEntry": {2: "AttrValue"},
    "AttrValue": {7: "Shape", 8: "Tensor"},
    "Tensor": {2: "Shape"},
    "Shape": {2: "-"},
    "SavedModel": {2: "MetaGraphDef"},
    "MetaGraphDef": {1: "-", 2: "GraphDef", 4: "CollectionEntry", 5: "SignatureEntry"},
    "CollectionEntry": {2: "CollectionDef"},
    "CollectionDef": {2: "BytesList"},
    "BytesList": {1: "VariableDef"},
    "VariableDef": {4: "-"},
    "SignatureEntry": {2: "Signature"},
    "Signature": {1: "InfoEntry", 2: "InfoEntry"},
    "InfoEntry": {2: "TensorInfo"},
    "TensorInfo": {3: "Shape"},
}


@dataclass(frozen=True)
class Field:
    depth: int
    number: int
    wire: int
    key: int  # where the key starts
    length: int  # where the length prefix starts (== value for a number)
    value: int
    end: int


def walk(raw: bytes, message: str, start: int = 0, end: int | None = None,
         depth: int = 0) -> Iterator[Field]:
    pos, end = start, len(raw) if end is None else end
    while pos < end:
        key_at = pos
        key, pos = proto.read_varint(raw, pos, end)
        number, wire = key >> 3, key & 7
        if wire == BYTES:
            n, value = proto.read_varint(raw, pos, end)
            yield Field(depth, number, wire, key_at, pos, value, value + n)
            inner = SCHEMA.get(message, {}).get(number)
            if inner and inner in SCHEMA:
                yield from walk(raw, inner, value, value + n, depth + 1)
            pos = value + n
        else:
            after = proto.skip(raw, pos, end, wire)
            yield Field(depth, number, wire, key_at, pos, pos, after)
            pos = after


def _splice(raw: bytes, a: int, b: int, new: bytes) -> bytes:
    return raw[:a] + new + raw[b:]


def wire_mutants(name: str, raw: bytes, message: str, rng: random.Random) -> Iterator[tuple]:
    """Mutants of the encoding (the bytes of file ``name``), the same for every message."""
    from tests.corpus import cut_points, flip

    found = list(walk(raw, message))
    bounds = sorted({f.key for f in found} | {f.value for f in found} | {f.end for f in found})
    for n in cut_points(len(raw), bounds, around=0):
        yield f"truncate {name} to {n} of {len(raw)} bytes", {name: raw[:n]}, {"may_differ": True}
    delimited = [f for f in found if f.wire == BYTES]
    chosen = sorted(rng.sample(range(len(delimited)), min(24, len(delimited))))
    for i in chosen:
        f = delimited[i]
        n = f.end - f.value
        where = f"field {f.number} at {f.key} (depth {f.depth})"
        yield f"{where}: length 2**62", {name: _splice(raw, f.length, f.value,
                                                       proto.varint(2**62))}
        yield f"{where}: length + 1", {name: _splice(raw, f.length, f.value,
                                                     proto.varint(n + 1))}, {"may_differ": True}
        if n:
            yield f"{where}: length - 1", {name: _splice(raw, f.length, f.value,
                                                         proto.varint(n - 1))}, \
                {"may_differ": True}
        for wire in (VARINT, 1, 3, 5, 7):
            key = proto.varint(f.number << 3 | wire)
            yield f"{where}: wire type {wire}", {name: _splice(raw, f.key, f.length, key)}, \
                {"may_differ": True}
        yield f"{where}: key of 11 bytes", {name: _splice(raw, f.key, f.length,
                                                          b"\xff" * 10 + b"\x01")}
        yield f"{where}: field number 0", {name: _splice(raw, f.key, f.length, b"\x02")}
    for _ in range(16):
        pos = rng.randrange(len(raw))
        yield f"flip {name} byte {pos}", {name: flip(raw, pos, rng.randrange(8))}, \
            {"may_differ": True}
    yield f"{name}: empty", {name: b""}
    yield f"{name}: garbage", {name: bytes(rng.randrange(256) for _ in range(256))}, \
        {"may_differ": True}
    yield f"{name}: a varint that never ends", {name: b"\x08" + b"\xff" * 64}


# Rebuilt messages that are valid protobuf of other contents, which TensorFlow parses too: they
# must read as what they say (the frozen graph's by the independent parser) or fail cleanly.
VALID = {"one float broadcast to 64 MiB", "more values than elements", "a bool of 2**64 - 1",
         "no functions", "10000 functions",
         "a name that is not UTF-8", "dimension -2**62", "dtype 999", "name not UTF-8",
         "no signatures", "10000 signatures", "a variable listed twice", "no variables",
         "a variable not in the graph", "30000 variables", "the same node twice"}


def _valid(label: str) -> dict:
    return {"may_differ": label in VALID}


def _bad_consts() -> list[tuple[str, tuple[int, bytes]]]:
    f32 = struct.pack("<f", 1.0)
    return [
        ("shape 2**40 x 2**40, 4 bytes of content", const("bad", 1, [2**40, 2**40], (4, f32))),
        ("one float broadcast to 2**31 x 2**31", const("bad", 1, [2**31, 2**31], (5, f32))),
        ("one float broadcast to 2**64 elements", const("bad", 1, [2**62, 4], (5, f32))),
        ("no values for 2**40 strings", const("bad", 7, [2**40])),
        ("one float broadcast to 64 MiB", const("bad", 1, [2**24], (5, f32))),
        ("rank 65", const("bad", 1, [1] * 65, (5, f32))),
        ("negative dimension", const("bad", 1, [-3], (5, f32))),
        ("dimension -1", const("bad", 1, [2, -1], (4, f32 * 2))),
        ("unknown rank", const("bad", 1, [], (2, e([(3, 1)])), (5, f32))),
        ("dtype 999", const("bad", 999, [1], (4, f32))),
        ("dtype 0", const("bad", 0, [1], (4, f32))),
        ("dtype resource", const("bad", 20, [1], (4, f32))),
        ("dtype as bytes", node("bad", "Const", attr("value", e([(8, e([(1, b"\x01"),
                                                                         (4, f32)]))])))),
        ("content 5 bytes for 2 floats", const("bad", 1, [2], (4, f32 + b"\x00"))),
        ("content for a string tensor", const("bad", 7, [1], (4, b"abcd"))),
        ("content as a number", const("bad", 1, [1], (4, 5))),
        ("shape as a number", node("bad", "Const", attr("value", e([(8, e([(1, 1), (2, 3)]))])))),
        ("odd count for complex64", const("bad", 8, [1], (9, struct.pack("<3f", 1, 2, 3)))),
        ("truncated packed varint", const("bad", 3, [2], (7, b"\x05\x80"))),
        ("packed varint of 11 bytes", const("bad", 9, [1], (10, b"\xff" * 10 + b"\x01"))),
        ("packed floats of 6 bytes", const("bad", 1, [2], (5, b"\x00" * 6))),
        ("float_val as a varint", const("bad", 1, [2], (5, 7))),
        ("string_val as a varint", const("bad", 7, [1], (8, 7))),
        ("more values than elements", const("bad", 1, [1], (5, struct.pack("<3f", 1, 2, 3)))),
        ("a bool of 2**64 - 1", const("bad", 10, [1], (11, packed_varints([2**64 - 1])))),
        ("a node named twice", const("dense/kernel", 1, [1], (5, f32))),
        ("a node without a name", const("", 1, [1], (5, f32))),
        ("a node without an op", (1, e([(1, "bad")]))),
        ("a name that is not UTF-8", const(b"\xff\xfe", 1, [1], (5, f32))),
        ("value attr as a number", node("bad", "Const", (5, e([(1, "value"), (2, 8)])))),
        ("attr entry as a number", node("bad", "Const", (5, 3))),
        ("tensor as a number", node("bad", "Const", attr("value", e([(8, 1)])))),
        ("a node as a number", (1, 17)),
    ]


def graphdef_mutants(o: Any, rng: random.Random) -> Iterator[tuple]:
    name = o.target
    raw = (o.dir / name).read_bytes()
    yield from wire_mutants(name, raw, "GraphDef", rng)
    for label, bad in _bad_consts():
        yield f"node: {label}", {name: frozen_graph(tail=[bad])}, _valid(label)
    yield "no nodes, only versions", {name: frozen_graph([], functions=[])}
    yield "library as a number", {name: frozen_graph(tail=[(2, 5)])}
    f32 = struct.pack("<f", 1.0)
    for label, functions in [
        ("a function without a name", [function_def(""), function_def()]),
        ("a function listed twice", [function_def(), function_def()]),
        ("a constant named like a graph node", [function_def("cond", [
            (3, const("input_1", 1, [1], (5, f32))[1])])]),
        ("signature as a number", [(1, e([(1, 5)]))]),
        ("function as a number", [(1, 7)]),
        ("node_def as a number", [(1, e([(1, e([(1, "f")])), (3, 9)]))]),
        ("argument name as a number", [(1, e([(1, e([(1, "f"), (2, e([(1, 4)]))]))]))]),
        ("a node without an op", [function_def("f", [(3, e([(1, "c")]))])]),
        ("a constant of 2**40 x 2**40, 4 bytes of content", [function_def("f", [
            (3, const("c", 1, [2**40, 2**40], (4, f32))[1])])]),
        ("more arguments than inputs", [function_def(args=("a", "b", "c"))]),
        ("no functions", []),
        ("10000 functions", [function_def(f"f{i}", []) for i in range(10000)]),
    ]:
        yield f"library: {label}", {name: frozen_graph(functions=functions)}, _valid(label)
    yield "an If naming no function", {name: frozen_graph(tail=[node(
        "if2", "If", (3, "pred"), (3, "cond/input_1"), func_attr("then_branch", "nowhere"))])}
    yield "func attr as a number", {name: frozen_graph(tail=[node(
        "if3", "If", (3, "pred"), attr("then_branch", e([(10, 3)])))])}
    yield "the first byte of a SavedModel", {name: b"\x08\x01" + raw}


def saved_model_mutants(o: Any, rng: random.Random) -> Iterator[tuple]:
    name = f"{o.target}/saved_model.pb"
    raw = (o.dir / name).read_bytes()
    yield from wire_mutants(name, raw, "SavedModel", rng)
    info = tensor_info
    for label, sigs in [
        ("rank 65 input", {"s": signature({"x": info("x:0", 1, [1] * 65)}, {}, "m")}),
        ("dimension -2**62", {"s": signature({"x": info("x:0", 1, [-(2**62)])}, {}, "m")}),
        ("dtype 999", {"s": signature({"x": info("x:0", 999, [1])}, {}, "m")}),
        ("dtype as bytes", {"s": signature({"x": e([(1, "x:0"), (2, b"\x01")])}, {}, "m")}),
        ("tensor info as a number", {"s": e([(1, e([(1, "x"), (2, 4)]))])}),
        ("input entry as a number", {"s": e([(1, 9)])}),
        ("method as a number", {"s": e([(3, 9)])}),
        ("name not UTF-8", {"s": signature({"x": e([(1, b"\xff"), (2, 1)])}, {}, "m")}),
        ("coo_sparse as a number", {"s": signature({"x": e([(4, 1)])}, {}, "m")}),
        ("coo_sparse name as a number", {"s": signature({"x": e([(4, e([(1, 5)]))])}, {}, "m")}),
        ("unknown_rank as bytes", {"s": signature({"x": e([(3, e([(3, b"")]))])}, {}, "m")}),
        ("dim as a number", {"s": signature({"x": e([(3, e([(2, 4)]))])}, {}, "m")}),
        ("dim size as bytes", {"s": signature({"x": e([(3, e([(2, e([(1, b"x")]))]))])},
                                              {}, "m")}),
        ("no signatures", {}),
        ("10000 signatures", {f"s{i}": signature({}, {}, "m") for i in range(10000)}),
    ]:
        yield f"signatures: {label}", {name: saved_model(sigs)}, _valid(label)
    yield "signature entry as a number", {name: saved_model(extra_graph=[(5, 4)])}
    yield "meta_info_def as a number", {name: e([(1, 1), (2, e([(1, 3)]))])}
    yield "tags as numbers", {name: e([(1, 1), (2, e([(1, e([(4, 3)]))]))])}
    yield "no MetaGraph", {name: e([(1, 1)])}
    yield "MetaGraph as a number", {name: e([(1, 1), (2, 2)])}
    yield "schema version as bytes", {name: e([(1, b"1")]) + saved_model()}
    yield "schema version 2**63", {name: saved_model(version=2**63)}
    yield "variables collection as garbage", {name: saved_model(extra_graph=[
        collection("variables", [b"\xff" * 9])])}
    yield "saved_model.pb missing", {name: None}


def metagraph_mutants(o: Any, rng: random.Random) -> Iterator[tuple]:
    name = o.target
    raw = (o.dir / name).read_bytes()
    yield from wire_mutants(name, raw, "MetaGraphDef", rng)
    part = variable_def
    for label, variables in [
        ("a VariableDef without a name", [e([(5, 1)])]),
        ("a VariableDef of garbage", [b"\xff" * 12]),
        ("a VariableDef name as a number", [e([(1, 3)])]),
        ("slice info of rank 65", [part("p", partition=slice_info("w", [1] * 65, [0] * 65,
                                                                  [1] * 65))]),
        ("slice info of mismatched ranks", [part("p", partition=slice_info("w", [4, 4], [0],
                                                                           [2, 4, 1]))]),
        ("slice info offset past the shape", [part("p", partition=slice_info("w", [4], [2**62],
                                                                             [4]))]),
        ("slice info truncated varint", [part("p", partition=e([(1, "w"), (2, b"\x80")]))]),
        ("slice info as a number", [e([(1, "p:0"), (4, 7)])]),
        ("slice full_name as a number", [e([(1, "p:0"), (4, e([(1, 7)]))])]),
        ("a variable listed twice", [part("enc/w"), part("enc/w")]),
        ("a variable not in the graph", [part("nowhere")]),
        ("name not UTF-8", [e([(1, b"\xff\xfe:0")])]),
        ("no variables", []),
        ("30000 variables", [part(f"v{i}") for i in range(30_000)]),
    ]:
        yield f"variables: {label}", {name: meta_graph(variables)}, _valid(label)
    for label, nodes in [
        ("shape attr as a number", [node("enc/w", "VariableV2", attr("shape", e([(7, 3)])))]),
        ("dtype attr as bytes", [node("enc/w", "VariableV2", attr("dtype", e([(6, b"x")])))]),
        ("dtype 999", [variable_node("enc/w", "VariableV2", 999, [3, 4])]),
        ("rank 65", [variable_node("enc/w", "VariableV2", 1, [1] * 65)]),
        ("a node as a number", [(1, 5)]),
        ("node name as a number", [(1, e([(1, 5)]))]),
        ("attr entry as a number", [node("enc/w", "VariableV2", (5, 2))]),
        ("the same node twice", [variable_node("enc/w", "VariableV2", 1, [3, 4])] * 2),
    ]:
        yield f"graph: {label}", {name: meta_graph(nodes=nodes)}, _valid(label)
    yield "collection value as a number", {name: meta_graph(extra=[
        (4, e([(1, "variables"), (2, e([(2, e([(1, 5)]))]))]))])}
    yield "collection as a number", {name: meta_graph(extra=[(4, 6)])}
    yield "collection key as a number", {name: meta_graph(extra=[(4, e([(1, 6)]))])}
    yield "graph_def as a number", {name: e([(2, 4)])}
    yield "a SavedModel instead", {name: saved_model()}


GENERATORS = {"graphdef": graphdef_mutants, "saved_model": saved_model_mutants,
              "metagraph": metagraph_mutants}


# ---------------------------------------------------------------------------------------------
# An independent parser of frozen graphs: the protobuf package, messages declared at run time
# from the field numbers of tensor.proto, attr_value.proto, node_def.proto and graph.proto.
# Names are declared as bytes: TensorFlow's C++ parser does not refuse a name that is not UTF-8.


def _message_classes() -> dict[str, Any]:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    fd = descriptor_pb2.FileDescriptorProto(name="corpus_graph.proto", package="corpus",
                                            syntax="proto3")

    def message(name: str, fields: list[tuple[str, int, int, int, str]]) -> Any:
        m = fd.message_type.add(name=name)
        for fname, number, label, ftype, type_name in fields:
            f = m.field.add(name=fname, number=number, label=label, type=ftype)
            if type_name:
                f.type_name = type_name
        return m

    message("Dim", [("size", 1, opt, F.TYPE_INT64, ""), ("name", 2, opt, F.TYPE_BYTES, "")])
    message("Shape", [("dim", 2, rep, F.TYPE_MESSAGE, ".corpus.Dim"),
                      ("unknown_rank", 3, opt, F.TYPE_BOOL, "")])
    message("Tensor", [
        ("dtype", 1, opt, F.TYPE_INT32, ""), ("tensor_shape", 2, opt, F.TYPE_MESSAGE,
                                              ".corpus.Shape"),
        ("version_number", 3, opt, F.TYPE_INT32, ""), ("tensor_content", 4, opt, F.TYPE_BYTES, ""),
        ("float_val", 5, rep, F.TYPE_FLOAT, ""), ("double_val", 6, rep, F.TYPE_DOUBLE, ""),
        ("int_val", 7, rep, F.TYPE_INT32, ""), ("string_val", 8, rep, F.TYPE_BYTES, ""),
        ("scomplex_val", 9, rep, F.TYPE_FLOAT, ""), ("int64_val", 10, rep, F.TYPE_INT64, ""),
        ("bool_val", 11, rep, F.TYPE_BOOL, ""), ("dcomplex_val", 12, rep, F.TYPE_DOUBLE, ""),
        ("half_val", 13, rep, F.TYPE_INT32, ""), ("uint32_val", 16, rep, F.TYPE_UINT32, ""),
        ("uint64_val", 17, rep, F.TYPE_UINT64, ""), ("float8_val", 18, opt, F.TYPE_BYTES, "")])
    message("AttrValue", [("s", 2, opt, F.TYPE_BYTES, ""), ("i", 3, opt, F.TYPE_INT64, ""),
                          ("f", 4, opt, F.TYPE_FLOAT, ""), ("b", 5, opt, F.TYPE_BOOL, ""),
                          ("type", 6, opt, F.TYPE_INT32, ""),
                          ("shape", 7, opt, F.TYPE_MESSAGE, ".corpus.Shape"),
                          ("tensor", 8, opt, F.TYPE_MESSAGE, ".corpus.Tensor"),
                          ("placeholder", 9, opt, F.TYPE_BYTES, "")])
    message("AttrEntry", [("key", 1, opt, F.TYPE_BYTES, ""),
                          ("value", 2, opt, F.TYPE_MESSAGE, ".corpus.AttrValue")])
    message("Node", [("name", 1, opt, F.TYPE_BYTES, ""), ("op", 2, opt, F.TYPE_BYTES, ""),
                     ("input", 3, rep, F.TYPE_BYTES, ""), ("device", 4, opt, F.TYPE_BYTES, ""),
                     ("attr", 5, rep, F.TYPE_MESSAGE, ".corpus.AttrEntry")])
    message("Arg", [("name", 1, opt, F.TYPE_BYTES, "")])
    message("OpDef", [("name", 1, opt, F.TYPE_BYTES, ""),
                      ("input_arg", 2, rep, F.TYPE_MESSAGE, ".corpus.Arg")])
    message("Function", [("signature", 1, opt, F.TYPE_MESSAGE, ".corpus.OpDef"),
                         ("node_def", 3, rep, F.TYPE_MESSAGE, ".corpus.Node")])
    message("Library", [("function", 1, rep, F.TYPE_MESSAGE, ".corpus.Function")])
    message("Graph", [("node", 1, rep, F.TYPE_MESSAGE, ".corpus.Node"),
                      ("library", 2, opt, F.TYPE_MESSAGE, ".corpus.Library")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"corpus.{name}"))
            for name in ("Graph", "Tensor")}


# DataType enum -> (typed field, numpy type of its values); enums ours leaves out are absent.
_INTS = {3: "i4", 4: "u1", 5: "i2", 6: "i1", 11: "i1", 12: "u1", 13: "i4", 15: "i2", 16: "u2",
         17: "u2"}
_TYPED: dict[int, tuple[str, str]] = {
    1: ("float_val", "f4"), 2: ("double_val", "f8"), 9: ("int64_val", "i8"),
    10: ("bool_val", "?"), 22: ("uint32_val", "u4"), 23: ("uint64_val", "u8"),
    8: ("scomplex_val", "f4"), 18: ("dcomplex_val", "f8"), 14: ("half_val", "u2"),
    19: ("half_val", "u2"), **{k: ("int_val", v) for k, v in _INTS.items()},
    **{k: ("float8_val", "u1") for k in (24, 25, 26, 27, 28)}}
_ITEMSIZE = {1: 4, 2: 8, 8: 8, 9: 8, 10: 1, 14: 2, 18: 16, 19: 2, 22: 4, 23: 8,
             **{k: np.dtype(v).itemsize for k, v in _INTS.items()},
             **dict.fromkeys((24, 25, 26, 27, 28), 1)}
_BITS = {1: "u1", 2: "u2", 4: "u4", 8: "u8", 16: "c16"}


def _oracle_values(t: Any) -> np.ndarray | None:
    """A TensorProto's values as stored (bits of the dtype's width), before filling."""
    if t.dtype == 7:
        raw = np.empty(len(t.string_val), object)
        raw[:] = list(t.string_val)
        return raw
    if t.dtype not in _TYPED:
        return None
    if t.tensor_content:
        return np.frombuffer(t.tensor_content, _BITS[_ITEMSIZE[t.dtype]])
    field, kind = _TYPED[t.dtype]
    if field == "float8_val":
        return np.frombuffer(t.float8_val, np.uint8)
    values = np.array(list(getattr(t, field)))
    if t.dtype in (8, 18):
        return values.astype(kind).view("c8" if t.dtype == 8 else "c16")
    if kind == "?":
        return values.astype(bool)
    if values.dtype.kind == "f":
        return values.astype(kind)
    return values.astype(np.int64 if kind != "u8" else np.uint64).astype(kind)


def graphdef_oracle(path: Path) -> dict[str, np.ndarray]:
    """Every Const node's value, from the independent parser, filled to its shape as
    TensorFlow's ``Tensor::FromProto`` fills it (the first values; fewer repeat the last);
    those of library functions named ``FUNCTION/NODE``."""
    classes = _message_classes()
    graph = classes["Graph"].FromString(path.read_bytes())
    out = {}
    nodes = [(n.name, n) for n in graph.node] + [
        (f.signature.name + b"/" + n.name, n) for f in graph.library.function
        for n in f.node_def]
    for name, n in nodes:
        if n.op != b"Const":
            continue
        values = {a.key: a.value for a in n.attr}
        if b"value" not in values:
            continue
        t = values[b"value"].tensor
        raw = _oracle_values(t)
        if raw is None:
            continue
        dims = [d.size for d in t.tensor_shape.dim]
        count = int(np.prod(dims)) if dims else 1
        if len(raw) < count:
            fill = raw[-1] if len(raw) else (b"" if t.dtype == 7 else 0)
            raw = np.concatenate([raw, np.full(count - len(raw), fill, raw.dtype)])
        out[name.decode("utf-8", "surrogateescape")] = raw[:count].reshape(dims)
    return out
