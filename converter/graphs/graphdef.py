"""``GraphDef``, ``NodeDef`` and ``AttrValue`` (``tensorflow/core/framework/graph.proto``,
``node_def.proto``, ``attr_value.proto``), walked in place: nothing is copied but node names,
ops and inputs, so a frozen graph of a model's weights is read without holding it twice.

``GraphDef``: ``node`` 1 (repeated NodeDef), ``library`` 2, ``version`` 3, ``versions`` 4,
``debug_info`` 5. ``NodeDef``: ``name`` 1, ``op`` 2, ``input`` 3, ``device`` 4, ``attr`` 5 (a
``map<string, AttrValue>``: entries of ``key`` 1 and ``value`` 2). ``AttrValue``: ``tensor`` 8
among its one-of values. Functions in ``library`` are not walked: freezing inlines the
functions that read variables (``convert_variables_to_constants_v2`` lowers control flow).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from .. import proto
from ..proto import BYTES, ProtoError

CONST_OPS = frozenset({"Const", "HostConst"})


class Node(NamedTuple):
    name: str
    op: str
    inputs: tuple[str, ...]
    value: tuple[int, int] | None  # the ``value`` attr's TensorProto span, for constants


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


def node(buf, start: int, end: int) -> Node:
    name = op = ""
    inputs: list[str] = []
    attrs: list[tuple[int, int]] = []
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
            attrs.append((a, b))
    if not name or not op:
        raise ProtoError("a node without a name or an op")
    value = None
    if op in CONST_OPS:
        for a, b in attrs:
            value = _attr_tensor(buf, a, b, "value") or value
    return Node(name, op, tuple(inputs), value)


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
