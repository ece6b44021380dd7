"""``GraphDef``, ``NodeDef`` and ``AttrValue`` (``tensorflow/core/framework/graph.proto``,
``node_def.proto``, ``attr_value.proto``), walked in place: nothing is copied but node names,
ops and inputs, so a frozen graph of a model's weights is read without holding it twice.

``GraphDef``: ``node`` 1 (repeated NodeDef), ``library`` 2, ``version`` 3, ``versions`` 4,
``debug_info`` 5. ``NodeDef``: ``name`` 1, ``op`` 2, ``input`` 3, ``device`` 4, ``attr`` 5 (a
``map<string, AttrValue>``: entries of ``key`` 1 and ``value`` 2). ``AttrValue``: ``tensor`` 8
and ``func`` 10 (a ``NameAttrList``: ``name`` 1) among its one-of values.

``library`` (``function.proto``) is a ``FunctionDefLibrary``: ``function`` 1 (repeated
``FunctionDef``: ``signature`` 1, an ``OpDef`` with ``name`` 1 and ``input_arg`` 2, each an
``ArgDef`` with ``name`` 1; ``node_def`` 3, NodeDefs whose inputs name an argument or
``NODE:OUTPUT:INDEX``). Freezing with ``lower_control_flow=False`` keeps ``If``/``While``
bodies there, with their constants; a TF1 ``Defun`` lives there too. The variables such a body
reads arrive as the calling node's inputs (``cond/input_0``), which :data:`CALLS` maps to the
body's arguments.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from .. import proto
from ..proto import BYTES, ProtoError

CONST_OPS = frozenset({"Const", "HostConst"})
# Ops that run library functions: the attrs naming them, and how many leading inputs are not
# the functions' arguments (an If's condition).
CALLS: dict[str, tuple[tuple[str, ...], int]] = {
    "If": (("then_branch", "else_branch"), 1), "StatelessIf": (("then_branch", "else_branch"), 1),
    "While": (("body", "cond"), 0), "StatelessWhile": (("body", "cond"), 0),
    "PartitionedCall": (("f",), 0), "StatefulPartitionedCall": (("f",), 0),
}


class Node(NamedTuple):
    name: str
    op: str
    inputs: tuple[str, ...]
    value: tuple[int, int] | None  # the ``value`` attr's TensorProto span, for constants
    calls: tuple[tuple[str, int], ...] = ()  # (function, first argument input) for CALLS ops


class Function(NamedTuple):
    """A ``FunctionDef`` of the graph's library: its name, argument names and nodes."""

    name: str
    args: tuple[str, ...]
    nodes: tuple[Node, ...]


class Graph(NamedTuple):
    nodes: list[Node]
    functions: list[Function]


def _text(buf, a: int, b: int) -> str:
    return bytes(buf[a:b]).decode("utf-8", "surrogateescape")


def _span(number: int, wire: int, a: int, b: int) -> tuple[int, int]:
    if wire != BYTES:
        raise ProtoError(f"field {number}: expected bytes, found a number")
    return a, b


def nodes(buf, start: int = 0, end: int | None = None) -> Iterator[Node]:
    """The nodes of the GraphDef at ``buf[start:end]``, in file order."""
    for number, wire, a, b in proto.fields(buf, start, end):
        if number == 1:
            yield node(buf, *_span(number, wire, a, b))
        elif number in (2, 4, 5):
            _span(number, wire, a, b)


def graph(buf, start: int = 0, end: int | None = None) -> Graph:
    """The nodes and the library functions of the GraphDef at ``buf[start:end]``."""
    found, functions = [], []
    for number, wire, a, b in proto.fields(buf, start, end):
        if number == 1:
            found.append(node(buf, *_span(number, wire, a, b)))
        elif number == 2:
            functions += library(buf, *_span(number, wire, a, b))
        elif number in (4, 5):
            _span(number, wire, a, b)
    return Graph(found, functions)


def library(buf, start: int, end: int) -> list[Function]:
    """The functions of the ``FunctionDefLibrary`` at ``buf[start:end]`` (gradients skipped)."""
    out = []
    for number, wire, a, b in proto.fields(buf, start, end):
        if number == 1:
            out.append(function(buf, *_span(number, wire, a, b)))
    return out


def function(buf, start: int, end: int) -> Function:
    name, args, body = "", [], []
    for number, wire, a, b in proto.fields(buf, start, end):
        if number == 1:
            for n2, w2, a2, b2 in proto.fields(buf, *_span(number, wire, a, b)):
                if n2 == 1:
                    name = _text(buf, *_span(n2, w2, a2, b2))
                elif n2 == 2:
                    args.append(_arg_name(buf, *_span(n2, w2, a2, b2)))
        elif number == 3:
            body.append(node(buf, *_span(number, wire, a, b)))
    if not name:
        raise ProtoError("a library function without a name")
    return Function(name, tuple(args), tuple(body))


def _arg_name(buf, start: int, end: int) -> str:
    name = ""
    for number, wire, a, b in proto.fields(buf, start, end):
        if number == 1:
            name = _text(buf, *_span(number, wire, a, b))
    return name


def node(buf, start: int, end: int) -> Node:
    name = op = ""
    inputs: list[str] = []
    entries: list[tuple[int, int]] = []
    for number, wire, a, b in proto.fields(buf, start, end):
        if number in (1, 2, 3, 4, 5):
            a, b = _span(number, wire, a, b)
        if number == 1:
            name = _text(buf, a, b)
        elif number == 2:
            op = _text(buf, a, b)
        elif number == 3:
            inputs.append(_text(buf, a, b))
        elif number == 5:
            entries.append((a, b))
    if not name or not op:
        raise ProtoError("a node without a name or an op")
    value = None
    if op in CONST_OPS:
        for a, b in entries:
            value = _attr_tensor(buf, a, b, "value") or value
    calls: tuple[tuple[str, int], ...] = ()
    if op in CALLS:
        keys, first = CALLS[op]
        values = {k: v for k, v in attrs(buf, entries).items() if k in keys}
        calls = tuple((f, first) for k in keys if k in values
                      and (f := _func_name(buf, *values[k])))
    return Node(name, op, tuple(inputs), value, calls)


def attrs(buf, entries: list[tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """``{key: AttrValue span}`` of a node's ``attr`` map entries (spans of ``buf``)."""
    out: dict[str, tuple[int, int]] = {}
    for start, end in entries:
        key, value = "", None
        for number, wire, a, b in proto.fields(buf, start, end):
            if number == 1:
                key = _text(buf, *_span(number, wire, a, b))
            elif number == 2:
                value = _span(number, wire, a, b)
        if value is not None:
            out[key] = value
    return out


def _func_name(buf, start: int, end: int) -> str:
    """The function an ``AttrValue`` names (``func`` 10, a NameAttrList's ``name`` 1), or ""."""
    name = ""
    for number, wire, a, b in proto.fields(buf, start, end):
        if number == 10:
            for n2, w2, a2, b2 in proto.fields(buf, *_span(number, wire, a, b)):
                if n2 == 1:
                    name = _text(buf, *_span(n2, w2, a2, b2))
    return name


def _attr_tensor(buf, start: int, end: int, key: str) -> tuple[int, int] | None:
    """The TensorProto span of map entry ``buf[start:end]`` if its key is ``key``."""
    found_key, value = "", None
    for number, wire, a, b in proto.fields(buf, start, end):
        if number == 1:
            found_key = _text(buf, *_span(number, wire, a, b))
        elif number == 2:
            value = _span(number, wire, a, b)
    if found_key != key or value is None:
        return None
    tensor = None
    for number, wire, a, b in proto.fields(buf, *value):
        if number == 8:
            tensor = _span(number, wire, a, b)
    return tensor
