"""``saved_model.pb``: a ``SavedModel`` (``tensorflow/core/protobuf/saved_model.proto``) of
``MetaGraphDef``s (``meta_graph.proto``), read for their tags and signatures.

``SavedModel``: ``saved_model_schema_version`` 1, ``meta_graphs`` 2. ``MetaGraphDef``:
``meta_info_def`` 1 (``meta_graph_version`` 1, ``tags`` 4, ``tensorflow_version`` 5),
``graph_def`` 2 (skipped, never copied), ``signature_def`` 5 (``map<string, SignatureDef>``).
``SignatureDef``: ``inputs`` 1 and ``outputs`` 2 (``map<string, TensorInfo>``), ``method_name``
3. ``TensorInfo``: ``name`` 1, ``coo_sparse`` 4 (``values_tensor_name`` 1, ...),
``composite_tensor`` 5, ``dtype`` 2, ``tensor_shape`` 3 (``dim`` 2 with ``size`` 1, -1 for
unknown; ``unknown_rank`` 3).
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import proto
from ..errors import FormatError, UsageError
from ..proto import BYTES, VARINT, ProtoError
from .tensorproto import dtype_name

FILE = "saved_model.pb"
MAX_MESSAGE = (1 << 31) - 1  # protobuf refuses to parse a message of 2 GiB or more


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature: its key, the graph tensor it names (``x:0``),
    dtype (canonical name, or TF's for ``resource``, ``variant`` ...), shape (-1 for an
    unknown dimension; None for unknown rank) and encoding (``name``, ``coo_sparse``,
    ``composite_tensor``)."""

    key: str
    name: str
    dtype: str
    shape: tuple[int, ...] | None
    encoding: str = "name"

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "dtype": self.dtype,
                "shape": None if self.shape is None else list(self.shape),
                "encoding": self.encoding}


@dataclass(frozen=True)
class Signature:
    """A ``SignatureDef``; inputs and outputs sorted by key, as ``saved_model_cli`` lists them."""

    name: str
    method: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "method": self.method,
                "inputs": [t.as_dict() for t in self.inputs],
                "outputs": [t.as_dict() for t in self.outputs]}


@dataclass(frozen=True)
class MetaGraph:
    """One ``MetaGraphDef``: its tag-set, the TensorFlow version that wrote it and its
    signatures by name (sorted)."""

    tags: tuple[str, ...]
    tensorflow_version: str
    signatures: tuple[Signature, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"tags": list(self.tags), "tensorflow_version": self.tensorflow_version,
                "signatures": [s.as_dict() for s in self.signatures]}


@dataclass(frozen=True)
class SavedModel:
    path: str
    schema_version: int
    meta_graphs: tuple[MetaGraph, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "schema_version": self.schema_version,
                "meta_graphs": [m.as_dict() for m in self.meta_graphs]}

    def meta_graph(self, tags: tuple[str, ...] | list[str] | str | None = None) -> MetaGraph:
        """The MetaGraph with tag-set ``tags`` (in any order); without ``tags``, the only one,
        else the one tagged ``serve`` alone. UsageError listing the tag-sets otherwise."""
        wanted = {tags} if isinstance(tags, str) else set(tags) if tags is not None else None
        if wanted is None and len(self.meta_graphs) == 1:
            return self.meta_graphs[0]
        for graph in self.meta_graphs:
            if set(graph.tags) == (wanted if wanted is not None else {"serve"}):
                return graph
        known = "; ".join(",".join(g.tags) or "(no tags)" for g in self.meta_graphs)
        asked = ",".join(sorted(wanted)) if wanted is not None else "serve"
        raise UsageError(f"{self.path}: no MetaGraph tagged {asked} (tag-sets: {known})")


def _text(buf, a: int, b: int) -> str:
    return bytes(buf[a:b]).decode("utf-8", "surrogateescape")


def _need(wire: int, expected: int, number: int) -> None:
    if wire != expected:
        kind = "bytes" if expected == BYTES else "a number"
        raise ProtoError(f"field {number}: expected {kind}")


def parse(buf, where: str) -> SavedModel:
    """The SavedModel in ``buf``; FormatError naming ``where`` for malformed bytes."""
    try:
        version = 0
        graphs = []
        for number, wire, a, b in proto.fields(buf):
            if number == 1:
                _need(wire, VARINT, number)
                version = a
            elif number == 2:
                _need(wire, BYTES, number)
                graphs.append(_meta_graph(buf, a, b))
    except ProtoError as exc:
        raise FormatError(f"{where}: not a SavedModel ({exc})") from None
    if not graphs:
        raise FormatError(f"{where}: not a SavedModel (no MetaGraph in it)")
    return SavedModel(where, version, tuple(graphs))


def _meta_graph(buf, start: int, end: int) -> MetaGraph:
    tags: list[str] = []
    version = ""
    signatures = []
    for number, wire, a, b in proto.fields(buf, start, end):
        if number == 1:
            _need(wire, BYTES, number)
            for n, w, x, y in proto.fields(buf, a, b):
                if n in (4, 5):
                    _need(w, BYTES, n)
                    if n == 4:
                        tags.append(_text(buf, x, y))
                    else:
                        version = _text(buf, x, y)
        elif number == 5:
            _need(wire, BYTES, number)
            key, value = _entry(buf, a, b)
            signatures.append(_signature(buf, key, value))
    signatures.sort(key=lambda s: s.name)
    return MetaGraph(tuple(tags), version, tuple(signatures))


def _entry(buf, start: int, end: int) -> tuple[str, tuple[int, int]]:
    key, value = "", (0, 0)
    for number, wire, a, b in proto.fields(buf, start, end):
        if number in (1, 2):
            _need(wire, BYTES, number)
            if number == 1:
                key = _text(buf, a, b)
            else:
                value = (a, b)
    return key, value


def _signature(buf, name: str, span: tuple[int, int]) -> Signature:
    inputs: list[TensorInfo] = []
    outputs: list[TensorInfo] = []
    method = ""
    for number, wire, a, b in proto.fields(buf, *span):
        if number in (1, 2, 3):
            _need(wire, BYTES, number)
        if number in (1, 2):
            key, value = _entry(buf, a, b)
            (inputs if number == 1 else outputs).append(_tensor_info(buf, key, value))
        elif number == 3:
            method = _text(buf, a, b)
    return Signature(name, method, tuple(sorted(inputs, key=lambda t: t.key)),
                     tuple(sorted(outputs, key=lambda t: t.key)))


def _tensor_info(buf, key: str, span: tuple[int, int]) -> TensorInfo:
    name, dtype, encoding = "", 0, "name"
    shape: tuple[int, ...] | None = ()  # no tensor_shape at all: the default message, a scalar
    for number, wire, a, b in proto.fields(buf, *span):
        if number == 2:
            _need(wire, VARINT, number)
            dtype = a
            continue
        if number not in (1, 3, 4, 5):
            continue
        _need(wire, BYTES, number)
        if number == 1:
            name, encoding = _text(buf, a, b), "name"
        elif number == 3:
            shape = tensor_shape(buf, a, b)
        elif number == 4:
            encoding = "coo_sparse"
            for n, w, x, y in proto.fields(buf, a, b):
                if n == 1:
                    _need(w, BYTES, n)
                    name = _text(buf, x, y)
        else:
            encoding = "composite_tensor"
    return TensorInfo(key, name, dtype_name(dtype), shape, encoding)


def tensor_shape(buf, start: int, end: int) -> tuple[int, ...] | None:
    """The ``TensorShapeProto`` at ``buf[start:end]``: -1 for an unknown dimension, None for
    an unknown rank."""
    dims: list[int] = []
    for number, wire, a, b in proto.fields(buf, start, end):
        if number == 3:
            _need(wire, VARINT, number)
            if a:
                return None
        elif number == 2:
            _need(wire, BYTES, number)
            size = 0
            for n, w, x, _ in proto.fields(buf, a, b):
                if n == 1:
                    _need(w, VARINT, n)
                    size = proto.signed(x)
            dims.append(size)
    if len(dims) > proto.MAX_RANK:
        raise ProtoError(f"rank {len(dims)} exceeds {proto.MAX_RANK}")
    return tuple(dims)


@contextmanager
def mapped_message(file: Path, what: str) -> Iterator[memoryview]:
    """A file holding one protobuf message, mapped; FormatError (naming the file) for what
    cannot be a ``what``: missing, not a regular file, empty, or over protobuf's 2 GiB."""
    if not file.is_file():  # opening a FIFO would block
        why = "no such file" if not os.path.lexists(file) else "not a regular file"
        raise FormatError(f"{file}: {why}")
    try:
        f = open(file, "rb")
    except OSError as exc:
        raise FormatError(f"{file}: cannot read ({exc.strerror or exc})") from None
    with f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise FormatError(f"{file}: not a regular file")
        if st.st_size > MAX_MESSAGE:
            raise FormatError(f"{file}: {st.st_size} bytes, over protobuf's 2 GiB limit for "
                              "one message")
        if not st.st_size:
            raise FormatError(f"{file}: not a {what} (empty file)")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf, memoryview(buf) as view:
            yield view


def graph_file(path: Path) -> Path:
    """``saved_model.pb`` of a SavedModel directory (or the file itself)."""
    return path / FILE if path.is_dir() else path


def read_saved_model(path: str | os.PathLike[str]) -> SavedModel:
    """The tags and signatures of the SavedModel at ``path`` (its directory or its
    ``saved_model.pb``), read without TensorFlow and without copying its graphs."""
    file = graph_file(Path(path))
    if not file.exists():
        text = file.with_suffix(".pbtxt")
        why = f" ({text.name} is in protobuf text format, not read)" if text.exists() else ""
        raise FormatError(f"{file}: no such file{why}")
    with mapped_message(file, "SavedModel") as view:
        return parse(view, str(file))
