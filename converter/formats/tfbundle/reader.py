"""Reading tensor bundles: resolve the prefix, parse the index, hand out lazy tensors."""

from __future__ import annotations

import math
import mmap
import os
import stat
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, cast

from ... import dtypes, proto
from ...crc32c import crc, mask, unmask
from ...errors import CorruptionError, FormatError
from ...tensor import Checkpoint, Kind, Source, Tensor, too_large_for_numpy, unrepresentable
from ...tfnames import GRAPH_KEY
from .._common import frombuffer, gc_paused, map_file, read_regular, release
from . import objgraph
from .entry import BundleEntry, decode_entry
from .layout import resolve, shard_path
from .slices import covers_exactly, slice_key
from .strings import read_scalar_string, read_strings
from .table import read_table

if TYPE_CHECKING:
    import numpy as np

# DataType enum (tensorflow/core/framework/types.proto) -> canonical dtype name.
DT_NAMES = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
    8: "complex64", 9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 18: "complex128",
    19: "float16", 22: "uint32", 23: "uint64", 24: "float8_e5m2", 25: "float8_e4m3fn",
    26: "float8_e4m3fnuz", 27: "float8_e4m3b11fnuz", 28: "float8_e5m2fnuz",
}
# Quantized types hold plain integers; we read them as such and remember the TF type.
QUANTIZED = {11: ("qint8", "int8"), 12: ("quint8", "uint8"), 13: ("qint32", "int32"),
             15: ("qint16", "int16"), 16: ("quint16", "uint16")}


def supported(dtype_enum: int) -> bool:
    return dtype_enum in DT_NAMES or dtype_enum in QUANTIZED


def dtype_name_of(dtype_enum: int) -> tuple[str, dict[str, str]]:
    """:meth:`Bundle.dtype_of` by canonical name."""
    if dtype_enum in QUANTIZED:
        tf_name, base = QUANTIZED[dtype_enum]
        return base, {"tf_dtype": tf_name}
    return DT_NAMES.get(dtype_enum, "string"), {}


def _check_representable(index: Path | str, name: str, shape: tuple[int, ...], dtype: np.dtype
                         ) -> None:
    # TensorFlow saves a (0, 2**62) tensor; numpy cannot make an array of that shape at all.
    if not math.prod(shape) and unrepresentable(shape, dtype.itemsize):
        raise FormatError(too_large_for_numpy(f"{index}: tensor {name!r}", shape))


class Bundle:
    """An opened bundle: entries parsed from the index, data shards mapped on first use."""

    def __init__(self, prefix: str, verify: bool) -> None:
        self.prefix = prefix
        self.verify = verify
        self.index_path: Path | str = self._index_name()
        data = self._index_bytes()
        where = str(self.index_path)
        rows = read_table(data, where, verify=verify)
        if not rows or rows[0][0] != b"":
            raise CorruptionError(f"{where}: missing bundle header")
        try:
            header = proto.decode(rows[0][1])
            big_endian = proto.last_int(header, 2) == 1
            self.num_shards = proto.last_int(header, 1, 1)
        except proto.ProtoError as exc:
            raise CorruptionError(f"{where}: malformed bundle header ({exc})") from None
        if big_endian:
            raise FormatError(f"{where}: big-endian checkpoints are not supported")
        if not 1 <= self.num_shards <= 1_000_000:
            raise CorruptionError(f"{where}: bad shard count {self.num_shards}")
        self.entries: dict[str, BundleEntry] = {}
        self.raw: dict[bytes, bytes] = {}
        for key, value in rows[1:]:
            if key[:1] == b"\x00":  # a part of a partitioned variable
                self.raw[key] = value
                continue
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError:
                raise FormatError(f"{where}: tensor name {key[:60]!r} is not UTF-8") from None
            self.entries[name] = self._entry(name, value)
        self._maps: dict[int, mmap.mmap | bytes] = {}
        self._files: dict[int, str] = {}

    def _index_name(self) -> Path | str:
        return Path(self.prefix + ".index")

    def _index_bytes(self) -> bytes:
        return read_regular(self.index_path)

    def _entry(self, name: str, value: bytes) -> BundleEntry:
        try:
            entry = decode_entry(value)
        except proto.ProtoError as exc:
            raise CorruptionError(f"{self.index_path}: tensor {name!r}: malformed entry "
                                  f"({exc})") from None
        if entry.offset < 0 or entry.size < 0 or not 0 <= entry.shard < self.num_shards:
            raise CorruptionError(f"{self.index_path}: tensor {name!r}: bad location (shard "
                                  f"{entry.shard}, offset {entry.offset}, size {entry.size})")
        return entry

    def dtype_of(self, entry: BundleEntry) -> tuple[np.dtype, dict[str, str]]:
        """The numpy dtype entries of this dtype enum read as, and attributes to remember
        (``tf_dtype`` of a quantized type). An unsupported enum gives the string dtype: no
        span is handed out for it, and :meth:`read_entry` refuses it."""
        name, attrs = dtype_name_of(entry.dtype_enum)
        return dtypes.from_name(name), attrs

    def shard_file(self, i: int) -> str:
        """Shard ``i``'s path, refused if it is there but not a regular file: spans handed to
        writers are opened by path, and a FIFO would block them forever."""
        path = self._files.get(i)
        if path is None:
            path = str(shard_path(self.prefix, i, self.num_shards))
            try:
                mode = os.stat(path).st_mode
            except OSError:
                mode = None  # missing: reported when its data is read
            if mode is not None and not stat.S_ISREG(mode):
                read_regular(path)  # raises, naming what it is
            self._files[i] = path
        return path

    def _shard(self, i: int, where: str) -> mmap.mmap | bytes:
        if i not in self._maps:
            path = shard_path(self.prefix, i, self.num_shards)
            try:
                self._maps[i] = map_file(path)
            except FileNotFoundError:
                raise FormatError(f"{where}: data file {path.name} is missing") from None
        return self._maps[i]

    def span(self, name: str, entry: BundleEntry) -> tuple[mmap.mmap | bytes, int, int, str]:
        where = f"{shard_path(self.prefix, entry.shard, self.num_shards)}: tensor {name!r}"
        buf = self._shard(entry.shard, where)
        if entry.offset + entry.size > len(buf):
            raise CorruptionError(f"{where}: data at {entry.offset}+{entry.size} runs past "
                                  f"the end of the file ({len(buf)} bytes); the file is truncated")
        return buf, entry.offset, entry.size, where

    def read_entry(self, name: str, entry: BundleEntry) -> np.ndarray:
        if not supported(entry.dtype_enum):
            raise FormatError(f"{self.index_path}: tensor {name!r}: unsupported TensorFlow "
                              f"dtype enum {entry.dtype_enum}")
        dtype, _ = self.dtype_of(entry)
        shape = entry.shape
        _check_representable(self.index_path, name, shape, dtype)
        buf, offset, size, where = self.span(name, entry)
        if dtype.hasobject:
            return read_strings(buf, offset, size, shape, entry.crc32c, where, self.verify)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != size:
            raise CorruptionError(f"{where}: {size} bytes stored, {nbytes} expected for "
                                  f"shape {list(shape)} {dtypes.name_of(dtype)}")
        array = frombuffer(buf, dtype, shape, offset)
        if self.verify and mask(crc(memoryview(buf)[offset:offset + size])) != entry.crc32c:
            raise CorruptionError(f"{where}: checksum mismatch (data corrupted)")
        return array

    def read_graph(self, entry: BundleEntry) -> bytes:
        """The serialized object graph: a scalar string, read without numpy."""
        buf, offset, size, where = self.span(GRAPH_KEY, entry)
        return read_scalar_string(buf, offset, size, entry.crc32c, where, self.verify)

    def read_partitioned(self, name: str, entry: BundleEntry) -> np.ndarray:
        dtype, _ = self.dtype_of(entry)
        full = entry.shape
        _check_representable(self.index_path, name, full, dtype)
        where = f"{self.index_path}: tensor {name!r}"
        parts = []
        for extents in entry.slices:
            if len(extents) != len(full):
                raise CorruptionError(f"{where}: slice rank mismatch")
            raw = self.raw.get(slice_key(name, extents))
            if raw is None:  # savers also spell whole dimensions out as (0, size)
                explicit = [(0, full[d]) if length < 0 else (start, length)
                            for d, (start, length) in enumerate(extents)]
                raw = self.raw.get(slice_key(name, explicit))
            if raw is None:
                raise CorruptionError(f"{where}: a partition is missing")
            part = self._entry(name, raw)._replace(shape=tuple(
                full[d] if length < 0 else length for d, (_, length) in enumerate(extents)))
            index = tuple(
                slice(0, full[d]) if length < 0 else slice(start, start + length)
                for d, (start, length) in enumerate(extents))
            if any(s.stop > full[d] or s.start < 0 for d, s in enumerate(index)):
                raise CorruptionError(f"{where}: slice out of bounds")
            parts.append((index, part))
        # Before allocating the whole tensor: it must fit in the data its parts point into, and
        # the parts must cover it exactly once (np.empty would hand out uninitialised memory).
        stored = sum(self._shard_size(i) for i in {p.shard for _, p in parts})
        if math.prod(full) * (1 if dtype.hasobject else dtype.itemsize) > stored:
            raise CorruptionError(f"{where}: shape {list(full)} needs more bytes than its "
                                  f"data files hold ({stored})")
        boxes = [[(s.start, s.stop) for s in index] for index, _ in parts]
        if not covers_exactly(boxes, full):
            raise CorruptionError(f"{where}: its partitions do not cover shape {list(full)} "
                                  "exactly once")
        import numpy as np

        out = np.empty(full, dtype=dtype)
        for index, part in parts:
            out[index] = self.read_entry(name, part)
        out.flags.writeable = False
        return out

    def _shard_size(self, i: int) -> int:
        try:
            return os.stat(self.shard_file(i)).st_size
        except OSError:
            return 0

    def close(self) -> None:
        for m in self._maps.values():
            release(m)
        self._maps = {}


def _storage_order(bundle: Bundle) -> list[tuple[str, BundleEntry]]:
    """Entries in the order their data was written (the order the writer was given), which
    the index, sorted by name, does not keep. A partitioned variable sits at its first part."""
    def position(item: tuple[str, BundleEntry]) -> tuple[int, int, int]:
        name, entry = item
        if entry.slices:
            raw = bundle.raw.get(slice_key(name, entry.slices[0]))
            if raw is not None:
                try:
                    part = decode_entry(raw)
                    return part.shard, part.offset, 1
                except proto.ProtoError:
                    pass
        return entry.shard, entry.offset, 1 if entry.size else 0

    return sorted(bundle.entries.items(), key=position)


def read_bundle(path: Path, verify: bool = True) -> Checkpoint:
    with gc_paused():
        return _read_bundle(path, verify)


def _read_bundle(path: Path, verify: bool) -> Checkpoint:
    prefix, meta = resolve(path)
    return checkpoint_of(Bundle(prefix, verify), meta)


def checkpoint_of(bundle: Bundle, meta: dict) -> Checkpoint:
    """The lazy checkpoint of an opened bundle (local or remote); ``meta`` holds the
    ``Source`` fields of how its prefix was found."""
    prefix = bundle.prefix
    graph_attrs: dict[str, dict[str, str]] = {}
    graph_entry = bundle.entries.get(GRAPH_KEY)
    if graph_entry is not None and (graph_entry.dtype_enum != 7 or graph_entry.shape != ()):
        graph_entry = None  # not a serialized graph: an ordinary tensor of that name
    if graph_entry is not None:
        try:
            serialized = bundle.read_graph(graph_entry)
            # Paths spelled out from a TF-written graph take less than the graph itself (each
            # variable's key holds its path); the margin is for graphs of another writer.
            budget = 16 * len(serialized) + (1 << 20)
            graph_attrs = objgraph.classify(objgraph.parse(serialized), budget)
        except (proto.ProtoError, IndexError) as exc:
            raise CorruptionError(f"{bundle.index_path}: malformed object graph ({exc})") from None
        layout = "tf2"
    else:
        layout = "tf1"
    tensors: dict[str, Tensor] = {}
    # Per dtype enum: its dtype's name, its attributes, and its item size where a span may be
    # handed out for it (0 for strings and unsupported enums).
    types: dict[int, tuple[str, dict[str, str], int]] = {}
    files: dict[int, str] = {}
    tf2 = graph_entry is not None
    read_entry, make, verify = bundle.read_entry, Tensor._trusted, bundle.verify
    for name, entry in _storage_order(bundle):
        dt, shape, shard, offset, stored, crc, slices = entry
        found = types.get(dt)
        if found is None:
            dtype, attrs = dtype_name_of(dt)
            found = types[dt] = (dtype, attrs, dtypes.ITEMSIZE[dtype] if supported(dt) else 0)
        dtype, attrs, itemsize = found
        attrs = dict(attrs) if attrs else {}
        kind: Kind | None
        if not tf2:
            kind = None  # judged from the TF1 name when asked (Tensor.kind)
        elif name == GRAPH_KEY:
            kind = "object_graph"
        elif name in graph_attrs:
            attrs.update(graph_attrs[name])
            # objgraph.classify sets "kind" to a Kind only; its attrs are typed as plain str.
            kind = cast(Kind, attrs.pop("kind"))
        else:
            kind = "other"
        size = math.prod(shape)
        span = checksum = None
        if slices:
            load = partial(bundle.read_partitioned, name, entry)
            attrs["partitions"] = str(len(slices))
        else:
            load = partial(read_entry, name, entry)
            # A span lets writers and verify stream the bytes without read(), so only an entry
            # whose size matches its shape and dtype gets one; read() reports the others.
            if itemsize and size * itemsize == stored:
                path = files.get(shard)
                if path is None:
                    path = files[shard] = bundle.shard_file(shard)
                span = (path, offset, stored)
                checksum = unmask(crc) if verify else None
        tensors[name] = make(name, dtype, shape, size, load, kind, span, checksum, attrs)
    source = Source("tf", str(prefix), layout, shards=bundle.num_shards, **meta)
    return Checkpoint(tensors, source=source, closers=[bundle.close])
