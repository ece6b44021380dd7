"""Frozen TensorFlow graphs: a serialized ``GraphDef`` (``.pb``) whose weights were folded into
``Const`` nodes (``convert_variables_to_constants``, ``freeze_graph``), read without TensorFlow.

Every ``Const`` whose value is a tensor of numbers, booleans or strings becomes a tensor named
like its node; constants of other dtypes (resource, variant) are left out. Freezing a TF1
graph (``graph_util.convert_variables_to_constants``) names a variable's constant after the
variable (``dense/kernel``, read by the Identity ``dense/kernel/read`` or a
``.../ReadVariableOp``), so the tensor keeps the variable's name. A TF2 function's variables
are captured handles, and ``convert_variables_to_constants_v2`` names each constant after the
placeholder that captured it, in the name scope of the op that first read the variable:
``sequential/dense/MatMul/ReadVariableOp/resource`` (tf.keras),
``sequential_1/dense_1/Cast/ReadVariableOp/resource`` (Keras 3, whose name scopes in a
function are numbered apart from its layers' names: that one is layer ``dense``),
``cond/input_0``, or a number (``15``, a handle passed into an inlined function). The
variable's name is nowhere in the graph, nor is the order the variables were created in, and
the reader does not guess it: those tensors keep their node's name and carry
``attrs["named_after"] == "reader"``; loaders pair them by shape where the shapes decide it
(:mod:`converter.loaders.match`). Constants read as variables (by an Identity named
``NAME/read`` or ``.../ReadVariableOp``, what freezing makes of a variable read, possibly
through the Identities of an inlined function's inputs or the Switch of a lowered ``tf.cond``,
or passed to a library function that reads it so) have kind ``variable``, other
constants ``other`` and ``attrs["constant"] == "graph"`` (an epsilon, a shape: loaders
ignore them when no variable takes them). The constants of the graph's library functions
(the branches of an ``If`` and the body of a ``While`` frozen with
``lower_control_flow=False``, a TF1 ``Defun``) are tensors too, named ``FUNCTION/NODE``
(``cond_true_frozen_315/cond/Const``) with ``attrs["function"]``; a name that two constants
would share is refused. ``min_size`` leaves out constants of fewer elements (scalars, shape
vectors).

Decoding is ``converter.graphs`` (a bounded wire reader, no protobuf runtime): the file is
memory-mapped, values stored as ``tensor_content`` are handed out as file spans, and typed
fields (``float_val`` ...) are decoded on read. A file of 2 GiB or more is refused: protobuf
cannot parse one message that big, so TensorFlow cannot have written it as a GraphDef.
"""

from __future__ import annotations

import math
import os
import re
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import FormatError, UsageError
from ..graphs import graphdef, tensorproto
from ..graphs.savedmodel import FILE as SAVED_MODEL_FILE
from ..graphs.savedmodel import MAX_MESSAGE
from ..proto import ProtoError
from ..tensor import Checkpoint, Source, Tensor, too_large_for_numpy, unrepresentable
from ._common import map_file, open_regular, release

SUFFIXES = (".pb", ".graphdef")
# First bytes of a GraphDef as TensorFlow writes it (node 1, library 2, version 3, versions 4),
# and of a SavedModel (schema version 1), which read() points to its directory.
_FIRST = frozenset(b"\x0a\x12\x18\x22\x08")
_READ = re.compile(r"(?:^|/)ReadVariableOp(?:_\d+)?$")
# The last part of a captured handle's placeholder: the reading op's input name (``resource``),
# an input of a control-flow op (``input_0``) or a unique number (``179``).
_CAPTURED = re.compile(r"(?:^|/)(?:resource|input_\d+|\d+)$")
MAX_IDENTITIES = 64  # Identities followed from a constant to the op that reads it
_PASS_ON = frozenset({"Identity", "Switch", "Enter"})


def sniff(path: Path) -> bool:
    if not path.name.lower().endswith(SUFFIXES) or not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(1)
    return not head or head[0] in _FIRST


def read(path: Path, *, min_size: int = 0) -> Checkpoint:
    """The constants of the frozen graph ``path`` as lazy tensors (see the module docstring).

    Args:
        path: a serialized ``GraphDef``.
        min_size: leave out constants of fewer elements than this (0 keeps them all).
    """
    if not isinstance(min_size, int) or isinstance(min_size, bool) or min_size < 0:
        raise UsageError(f"{path}: min_size must be a whole number of elements, not "
                         f"{min_size!r}")
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
    if size == 0:
        raise FormatError(f"{path}: empty file, not a GraphDef")
    if size > MAX_MESSAGE:
        raise FormatError(f"{path}: {size} bytes, over protobuf's 2 GiB limit for one message "
                          "(not a GraphDef TensorFlow could have written)")
    buf = map_file(path)
    try:
        return _read(path, buf, min_size)
    except BaseException:
        release(buf)
        raise


def _read(path: Path, buf, min_size: int) -> Checkpoint:
    if path.name == SAVED_MODEL_FILE or buf[0] == 0x08:
        where = path.parent if path.name == SAVED_MODEL_FILE else path
        raise FormatError(f"{path}: a SavedModel's graph, not a frozen GraphDef; read the "
                          f"SavedModel directory ({where}) for its variables")
    try:
        graph = graphdef.graph(buf)
    except ProtoError as exc:
        raise FormatError(f"{path}: not a GraphDef ({exc})") from None
    if not graph.nodes:
        raise FormatError(f"{path}: not a GraphDef (no nodes)")
    readers = _readers(graph.nodes)
    called = _passed_as_variables(graph)
    tensors: dict[str, Tensor] = {}
    small = unsupported = 0
    consts = [(n.name, n, n.name in called, readers) for n in graph.nodes]
    for f in graph.functions:
        inner = _readers(f.nodes)
        consts += [(f"{f.name}/{n.name}", n, False, inner) for n in f.nodes]
    for name, node, passed, read_by in consts:
        if node.value is None:
            continue
        try:
            spec = tensorproto.scan(buf, *node.value)
        except ProtoError as exc:
            raise FormatError(f"{path}: node {name!r}: {exc}") from None
        if spec is None:
            unsupported += 1
            continue
        if math.prod(spec.shape) < min_size:
            small += 1
            continue
        if name in tensors:
            raise FormatError(f"{path}: two nodes named {name!r}")
        if not math.prod(spec.shape) and unrepresentable(spec.shape, spec.dtype.itemsize):
            raise FormatError(too_large_for_numpy(f"{path}: node {name!r}", spec.shape))
        span = None
        if spec.content is not None and not spec.dtype.hasobject:
            span = (str(path), spec.content[0], spec.content[1] - spec.content[0])
        attrs = dict(spec.attrs)
        if name != node.name:
            attrs["function"] = name[: -len(node.name) - 1]
        variable = passed or _frozen_variable(node.name, read_by)
        if variable and _CAPTURED.search(name):
            attrs["named_after"] = "reader"
        elif not variable:
            attrs["constant"] = "graph"
        tensors[name] = Tensor(name, spec.dtype, spec.shape, partial(_load, buf, spec, path, name),
                               kind="variable" if variable else "other", span=span, attrs=attrs)
    facts = {"nodes": str(len(graph.nodes))}
    if graph.functions:
        facts["functions"] = str(len(graph.functions))
    if small:
        facts["left out"] = f"{small} constants of fewer than {min_size} elements"
    if unsupported:
        facts["not tensors"] = f"{unsupported} constants (resource or variant values)"
    return Checkpoint(tensors, source=Source("graphdef", str(path), "frozen", facts=facts),
                      closers=[partial(release, buf)])


def _base(name: str) -> str:
    """The node an input names: ``x`` of ``x:1`` (a graph's) or ``x:output:0`` (a function's)."""
    return name.split(":", 1)[0]


def _readers(nodes) -> dict[str, list[str]]:
    """``{node: [the nodes passing its value on]}``: Identities, and the Switch and Enter
    nodes of lowered control flow (``cond/input_0`` reaches its reader through a Switch)."""
    readers: dict[str, list[str]] = {}
    for n in nodes:
        if n.op in _PASS_ON and n.inputs:
            readers.setdefault(_base(n.inputs[0]), []).append(n.name)
    return readers


def _passed_as_variables(graph: graphdef.Graph) -> set[str]:
    """The nodes passed to a library function (an If's branches, a While's body, a call) as
    an argument the function reads as a variable (freezing with ``lower_control_flow=False``
    leaves ``cond/input_0`` so)."""
    functions = {f.name: f for f in graph.functions}
    read_in = {name: _readers(f.nodes) for name, f in functions.items()}
    out: set[str] = set()
    for n in graph.nodes:
        data = [i for i in n.inputs if not i.startswith("^")]
        for called, first in n.calls:
            f = functions.get(called)
            if f is None:
                continue
            for arg, given in zip(f.args, data[first:], strict=False):
                if _frozen_variable(arg, read_in[called]):
                    out.add(_base(given))
    return out


def _frozen_variable(name: str, readers: dict[str, list[str]]) -> bool:
    """Whether constant ``name`` is a frozen variable: read by an Identity named
    ``NAME/read`` (TF1 variables) or ``.../ReadVariableOp`` (what freezing makes of a resource
    variable's reads, in TF1 graphs and TF2 functions alike), directly or through the
    Identities that pass an inlined function its inputs (``Func/.../input/_1``) and the Switch
    and Enter nodes of lowered control flow."""
    seen, todo = {name}, [name]
    while todo and len(seen) <= MAX_IDENTITIES:
        for r in readers.get(todo.pop(), ()):
            if r == name + "/read" or _READ.search(r):
                return True
            if r not in seen:
                seen.add(r)
                todo.append(r)
    return False


def _load(buf, spec: tensorproto.Spec, path: Path, name: str) -> np.ndarray:
    try:
        return tensorproto.values(buf, spec)
    except ProtoError as exc:
        raise FormatError(f"{path}: node {name!r}: {exc}") from None
