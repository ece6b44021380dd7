"""The variables of a ``MetaGraphDef`` (``tensorflow/core/protobuf/meta_graph.proto``): a TF1
``PREFIX.meta`` (``tf.compat.v1.train.Saver``, ``export_meta_graph``) or a MetaGraph inside a
SavedModel's ``saved_model.pb``.

``MetaGraphDef``: ``meta_info_def`` 1 (``MetaInfoDef``: ``meta_graph_version`` 1, ``tags`` 4,
``tensorflow_version`` 5), ``graph_def`` 2 (``graph.proto``, walked for the variables' nodes),
``collection_def`` 4 (``map<string, CollectionDef>``). ``CollectionDef``: ``bytes_list`` 2
(``value`` 1, repeated bytes). The ``variables`` and ``trainable_variables`` collections hold
serialized ``VariableDef`` s (``variable.proto``): ``variable_name`` 1 (``w:0``),
``save_slice_info_def`` 4 (``SaveSliceInfoDef``: ``full_name`` 1, ``full_shape`` 2,
``var_offset`` 3, ``var_shape`` 4, each repeated int64), ``is_resource`` 5, ``trainable`` 7.
A variable's dtype and shape are its node's ``dtype`` and ``shape`` attrs (``VariableV2``,
``VarHandleOp``, ...: ``AttrValue`` ``type`` 6, ``shape`` 7).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import proto
from ..errors import FormatError
from ..proto import BYTES, VARINT, ProtoError
from .graphdef import attrs
from .savedmodel import graph_file, mapped_message, parse, tensor_shape
from .tensorproto import dtype_name

GLOBAL = "variables"  # tf.compat.v1.GraphKeys.GLOBAL_VARIABLES
TRAINABLE = "trainable_variables"


@dataclass(frozen=True)
class Partition:
    """Where a part of a partitioned variable sits in the whole (``SaveSliceInfoDef``): the
    whole's checkpoint name and shape, the part's offset and length in each dimension."""

    full_name: str
    full_shape: tuple[int, ...]
    offset: tuple[int, ...]
    length: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"full_name": self.full_name, "full_shape": list(self.full_shape),
                "offset": list(self.offset), "length": list(self.length)}


@dataclass(frozen=True)
class Variable:
    """A graph variable, as ``tf.compat.v1.global_variables()`` lists it after
    ``import_meta_graph``: its op's name, dtype (base type, ``float32``), shape (None when its
    node is not in the graph or has no ``shape`` attr; -1 for an unknown dimension), whether
    it is in ``trainable_variables``, its op, and for a part of a partitioned variable where the
    part sits."""

    name: str
    dtype: str
    shape: tuple[int, ...] | None
    trainable: bool
    op: str
    resource: bool
    partition: Partition | None = None

    @property
    def checkpoint_name(self) -> str:
        """The name ``Saver`` saves it under: the whole's for a part of a partitioned one."""
        return self.partition.full_name if self.partition else self.name

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype,
                "shape": None if self.shape is None else list(self.shape),
                "trainable": self.trainable, "op": self.op, "resource": self.resource,
                "partition": self.partition.as_dict() if self.partition else None}


@dataclass(frozen=True)
class MetaGraphVariables:
    """A MetaGraph's tags, the TensorFlow version that wrote it and its global variables in
    creation order (the ``variables`` collection's order)."""

    path: str
    tags: tuple[str, ...]
    tensorflow_version: str
    variables: tuple[Variable, ...]
    has_collection: bool = True  # False: the MetaGraph lists no variables collection

    def checkpoint_names(self) -> list[str]:
        """What ``Saver`` saves, in creation order: each partitioned variable once."""
        return list(dict.fromkeys(v.checkpoint_name for v in self.variables))

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "tags": list(self.tags),
                "tensorflow_version": self.tensorflow_version,
                "variables": [v.as_dict() for v in self.variables]}


def _text(buf, a: int, b: int) -> str:
    return bytes(buf[a:b]).decode("utf-8", "surrogateescape")


def _bytes_field(number: int, wire: int) -> None:
    if wire != BYTES:
        raise ProtoError(f"field {number}: expected bytes, found a number")


def _ints(raw: list) -> tuple[int, ...]:
    """A repeated int64, packed or not."""
    out: list[int] = []
    for value in raw:
        if isinstance(value, int):
            out.append(proto.signed(value))
            continue
        pos = 0
        while pos < len(value):
            v, pos = proto.read_varint(value, pos, len(value))
            out.append(proto.signed(v))
    if len(out) > proto.MAX_RANK:
        raise ProtoError(f"rank {len(out)} exceeds {proto.MAX_RANK}")
    return tuple(out)


def _variable_def(raw: bytes) -> tuple[str, bool, bool, Partition | None]:
    """``(op name, is_resource, trainable, partition)`` of a serialized VariableDef."""
    f = proto.decode(raw)
    name = proto.last_bytes(f, 1).decode("utf-8", "surrogateescape")
    if not name:
        raise ProtoError("a VariableDef without a variable_name")
    op_name = name.rsplit(":", 1)[0] if name.rpartition(":")[2].isdigit() else name
    partition = None
    sliced = proto.last_bytes(f, 4)
    if sliced:
        s = proto.decode(sliced)
        full_name = proto.last_bytes(s, 1).decode("utf-8", "surrogateescape")
        if full_name:
            partition = Partition(full_name, _ints(s.get(2, [])), _ints(s.get(3, [])),
                                  _ints(s.get(4, [])))
    return op_name, bool(proto.last_int(f, 5)), bool(proto.last_int(f, 7)), partition


def _collection(buf, start: int, end: int) -> tuple[str, list[bytes]]:
    """A ``collection_def`` map entry: its key and its ``bytes_list`` values."""
    key: str = ""
    values: list = []
    for number, wire, a, b in proto.fields(buf, start, end):
        if number in (1, 2):
            _bytes_field(number, wire)
        if number == 1:
            key = _text(buf, a, b)
        elif number == 2:
            values = []
            for n, w, x, y in proto.fields(buf, a, b):
                if n == 2:
                    _bytes_field(n, w)
                    values = proto.decode(buf, x, y).get(1, [])
    if not all(isinstance(v, bytes) for v in values):
        raise ProtoError(f"collection {key!r}: a value that is a number, not bytes")
    return key, values


def _nodes(buf, start: int, end: int, wanted: set[str]
           ) -> dict[str, tuple[str, str, tuple[int, ...] | None]]:
    """``{node name: (op, dtype, shape)}`` for the GraphDef's nodes named in ``wanted``."""
    found: dict[str, tuple[str, str, tuple[int, ...] | None]] = {}
    for number, wire, a, b in proto.fields(buf, start, end):
        if number != 1:
            continue
        _bytes_field(number, wire)
        name = op = ""
        spans = []
        for n, w, x, y in proto.fields(buf, a, b):
            if n in (1, 2, 5):
                _bytes_field(n, w)
            if n == 1:
                name = _text(buf, x, y)
            elif n == 2:
                op = _text(buf, x, y)
            elif n == 5:
                spans.append((x, y))
        if name not in wanted:
            continue
        values = attrs(buf, spans)
        dtype, shape = "", None
        if "dtype" in values:
            for n, w, x, _ in proto.fields(buf, *values["dtype"]):
                if n == 6 and w == VARINT:
                    dtype = dtype_name(x).removesuffix("_ref")
        if "shape" in values:
            for n, w, x, y in proto.fields(buf, *values["shape"]):
                if n == 7:
                    _bytes_field(n, w)
                    shape = tensor_shape(buf, x, y)
        found[name] = (op, dtype, shape)
    return found


def meta_graph_variables(buf, start: int = 0, end: int | None = None, where: str = ""
                         ) -> MetaGraphVariables:
    """The variables of the MetaGraphDef at ``buf[start:end]``; FormatError naming ``where``
    for malformed bytes."""
    try:
        return _meta_graph_variables(buf, start, len(buf) if end is None else end, where)
    except ProtoError as exc:
        raise FormatError(f"{where}: not a MetaGraphDef ({exc})") from None


def _meta_graph_variables(buf, start: int, end: int, where: str) -> MetaGraphVariables:
    tags: list[str] = []
    version = ""
    graph_def: tuple[int, int] | None = None
    collections: dict[str, list[bytes]] = {}
    for number, wire, a, b in proto.fields(buf, start, end):
        if number in (1, 2, 4):
            _bytes_field(number, wire)
        if number == 1:
            for n, w, x, y in proto.fields(buf, a, b):
                if n in (4, 5):
                    _bytes_field(n, w)
                    if n == 4:
                        tags.append(_text(buf, x, y))
                    else:
                        version = _text(buf, x, y)
        elif number == 2:
            graph_def = (a, b)  # a graph sent in parts is not something TF writes
        elif number == 4:
            key, values = _collection(buf, a, b)
            if key in (GLOBAL, TRAINABLE):
                collections[key] = values
    defs = [_variable_def(raw) for raw in collections.get(GLOBAL, [])]
    trainable = {_variable_def(raw)[0] for raw in collections.get(TRAINABLE, [])}
    wanted = {d[0] for d in defs}
    nodes = _nodes(buf, *graph_def, wanted) if graph_def and wanted else {}
    variables = []
    seen: set[str] = set()
    for name, resource, _, partition in defs:
        if name in seen:
            continue  # TF lists a variable once, however often the collection holds it
        seen.add(name)
        op, dtype, shape = nodes.get(name, ("", "", None))
        variables.append(Variable(name, dtype, shape, name in trainable, op, resource,
                                  partition))
    return MetaGraphVariables(where, tuple(tags), version, tuple(variables),
                              GLOBAL in collections)


def looks_like(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a file that opens as a serialized MetaGraphDef does (field 1 or 2,
    length-delimited: ``meta_info_def`` or ``graph_def``)."""
    if not Path(path).is_file():  # opening a FIFO would block
        return False
    try:
        with open(path, "rb") as f:
            return f.read(1) in (b"\x0a", b"\x12")
    except OSError:
        return False


def read_meta_graph(path: str | os.PathLike[str]) -> MetaGraphVariables:
    """The variables of the MetaGraphDef in ``path`` (a ``.meta`` file), read without
    TensorFlow and without copying its graph."""
    file = Path(path)
    with mapped_message(file, "MetaGraphDef") as view:
        return meta_graph_variables(view, 0, len(view), str(file))


def saved_model_variables(path: str | os.PathLike[str],
                          tags: str | list[str] | tuple[str, ...] | None = None
                          ) -> MetaGraphVariables:
    """The variables of a SavedModel's MetaGraph (chosen by ``tags`` as
    :meth:`SavedModel.meta_graph` chooses). TF2 SavedModels keep no ``variables`` collection:
    ``has_collection`` is then False and the variables are the ``variables/`` bundle's."""
    file = graph_file(Path(path))
    with mapped_message(file, "SavedModel") as view:
        model = parse(view, str(file))
        index = model.meta_graphs.index(model.meta_graph(tags))
        spans = [(a, b) for number, wire, a, b in proto.fields(view)
                 if number == 2 and wire == BYTES]
        return meta_graph_variables(view, *spans[index], where=str(file))
