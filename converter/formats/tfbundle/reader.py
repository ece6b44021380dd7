"""Reading tensor bundles: resolve the prefix, parse the index, hand out lazy tensors."""

from __future__ import annotations

import math
import os
import re
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ... import dtypes
from ...crc32c import crc, extend, lengths_crc, mask, unmask
from ...errors import ConverterWarning, CorruptionError, FormatError
from ...tensor import Checkpoint, Source, Tensor
from .._common import frombuffer, gc_paused, map_file, release
from . import objgraph, proto
from .slices import slice_key
from .table import has_magic, read_table

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
DATA_RE = re.compile(r"^(?P<prefix>.*)\.data-(?P<i>\d{5})-of-(?P<n>\d{5})$")
STEP_RE = re.compile(r"-(\d+)$")


def shard_path(prefix: Path, i: int, n: int) -> Path:
    return prefix.with_name(f"{prefix.name}.data-{i:05d}-of-{n:05d}")


def _state_file_prefixes(directory: Path) -> tuple[str | None, list[str]]:
    """``model_checkpoint_path`` and ``all_model_checkpoint_paths`` of a ``checkpoint`` file."""
    state = directory / "checkpoint"
    try:
        text = state.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, []
    latest, everything = None, []
    for key, value in re.findall(r'^\s*(\w+)\s*:\s*"((?:[^"\\]|\\.)*)"', text, re.M):
        value = value.encode("latin1", "backslashreplace").decode("unicode_escape")
        if key == "model_checkpoint_path":
            latest = value
        elif key == "all_model_checkpoint_paths":
            everything.append(value)
    return latest, everything


def _locate(directory: Path, recorded: str) -> Path:
    """A prefix named in a state file: relative to the directory, or absolute; an absolute path
    from another machine falls back to the file of that name beside the state file."""
    p = Path(recorded)
    if not p.is_absolute():
        p = directory / p
    if not p.with_name(p.name + ".index").exists():
        beside = directory / Path(recorded).name
        if beside.with_name(beside.name + ".index").exists():
            warnings.warn(f"{directory / 'checkpoint'}: names {recorded}, which does not exist "
                          f"here; using {beside.name} beside it (copied from another machine?)",
                          ConverterWarning, stacklevel=2)
            return beside
    return p


def _step(prefix: Path) -> int:
    m = STEP_RE.search(prefix.name)
    return int(m.group(1)) if m else -1


def list_prefixes(directory: Path) -> list[Path]:
    """Every checkpoint prefix in ``directory``, ordered by step (then name)."""
    prefixes = [p.with_suffix("") for p in directory.glob("*.index") if p.is_file()]
    return sorted(prefixes, key=lambda p: (_step(p), p.name))


def resolve(path: Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint prefix that ``path`` names, and how it was found (``Source`` fields)."""
    meta: dict[str, Any] = {}
    if path.is_dir():
        directory = path
        if not (directory / "checkpoint").exists() and (directory / "variables").is_dir():
            directory = directory / "variables"  # a SavedModel
            meta["saved_model"] = str(path)
        everything = list_prefixes(directory)
        latest, _ = _state_file_prefixes(directory)
        if latest is not None:
            prefix = _locate(directory, latest)
        elif everything:
            prefix = everything[-1]
        else:
            raise FormatError(f"{path}: no TensorFlow checkpoint here (no 'checkpoint' state "
                              "file and no .index file)")
        meta["checkpoints"] = [(str(p), _step(p) if _step(p) >= 0 else None)
                               for p in everything]
    elif path.name.endswith(".index"):
        prefix = path.with_name(path.name[: -len(".index")])
    elif m := DATA_RE.match(path.name):
        prefix = path.with_name(m.group("prefix"))
    else:
        prefix = path
    if not prefix.with_name(prefix.name + ".index").is_file():
        if path.is_file() and _looks_like_v1(path):
            raise _V1(path)
        raise FormatError(f"{prefix}: no such checkpoint ({prefix.name}.index not found)")
    step = _step(prefix)
    if step >= 0:
        meta["step"] = step
    return prefix, meta


class _V1(Exception):
    def __init__(self, path: Path) -> None:
        self.path = path


def _looks_like_v1(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size < 48:
            return False
        f.seek(size - 48)
        return has_magic(f.read(48))


class Bundle:
    """An opened bundle: entries parsed from the index, data shards mapped on first use."""

    def __init__(self, prefix: Path, verify: bool) -> None:
        self.prefix = prefix
        self.verify = verify
        self.index_path = prefix.with_name(prefix.name + ".index")
        data = self.index_path.read_bytes()
        where = str(self.index_path)
        rows = read_table(data, where, verify=verify)
        if not rows or rows[0][0] != b"":
            raise CorruptionError(f"{where}: missing bundle header")
        try:
            header = proto.decode(rows[0][1])
            big_endian = proto.first_int(header, 2) == 1
            self.num_shards = proto.first_int(header, 1, 1)
        except proto.ProtoError as exc:
            raise CorruptionError(f"{where}: malformed bundle header ({exc})") from None
        if big_endian:
            raise FormatError(f"{where}: big-endian checkpoints are not supported")
        if not 1 <= self.num_shards <= 1_000_000:
            raise CorruptionError(f"{where}: bad shard count {self.num_shards}")
        self.entries: dict[str, dict] = {}
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
        self._maps: dict[int, object] = {}
        self._files: dict[int, str] = {}

    def _entry(self, name: str, value: bytes) -> dict:
        try:
            entry = proto.decode_entry(value)
        except proto.ProtoError as exc:
            raise CorruptionError(f"{self.index_path}: tensor {name!r}: malformed entry "
                                  f"({exc})") from None
        dt = entry["dt"]
        if dt not in DT_NAMES and dt not in QUANTIZED:
            entry["unsupported"] = f"unsupported TensorFlow dtype enum {dt}"
        if entry["offset"] < 0 or entry["size"] < 0 or not 0 <= entry["shard"] < self.num_shards:
            raise CorruptionError(f"{self.index_path}: tensor {name!r}: bad location (shard "
                                  f"{entry['shard']}, offset {entry['offset']}, size "
                                  f"{entry['size']})")
        return entry

    def dtype_of(self, entry: dict) -> tuple[np.dtype, dict[str, str]]:
        dt = entry["dt"]
        if dt in QUANTIZED:
            tf_name, base = QUANTIZED[dt]
            return np.dtype(base), {"tf_dtype": tf_name}
        if dt in DT_NAMES:
            return dtypes.from_name(DT_NAMES[dt]), {}
        return dtypes.STRING, {}

    def shard_file(self, i: int) -> str:
        path = self._files.get(i)
        if path is None:
            path = self._files[i] = str(shard_path(self.prefix, i, self.num_shards))
        return path

    def _shard(self, i: int, where: str):
        if i not in self._maps:
            path = shard_path(self.prefix, i, self.num_shards)
            try:
                self._maps[i] = map_file(path)
            except FileNotFoundError:
                raise FormatError(f"{where}: data file {path.name} is missing") from None
        return self._maps[i]

    def span(self, name: str, entry: dict) -> tuple[object, int, int, str]:
        where = f"{shard_path(self.prefix, entry['shard'], self.num_shards)}: tensor {name!r}"
        buf = self._shard(entry["shard"], where)
        if entry["offset"] + entry["size"] > len(buf):
            raise CorruptionError(f"{where}: data at {entry['offset']}+{entry['size']} runs past "
                                  f"the end of the file ({len(buf)} bytes); the file is truncated")
        return buf, entry["offset"], entry["size"], where

    def read_entry(self, name: str, entry: dict) -> np.ndarray:
        if "unsupported" in entry:
            raise FormatError(f"{self.index_path}: tensor {name!r}: {entry['unsupported']}")
        dtype, _ = self.dtype_of(entry)
        shape = entry["shape"]
        buf, offset, size, where = self.span(name, entry)
        if dtype.hasobject:
            return self._read_strings(buf, offset, size, shape, entry["crc"], where)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != size:
            raise CorruptionError(f"{where}: {size} bytes stored, {nbytes} expected for "
                                  f"shape {list(shape)} {dtypes.name_of(dtype)}")
        array = frombuffer(buf, dtype, shape, offset)
        if self.verify and mask(crc(memoryview(buf)[offset:offset + size])) != entry["crc"]:
            raise CorruptionError(f"{where}: checksum mismatch (data corrupted)")
        return array

    def _read_strings(self, buf, offset: int, size: int, shape, expected: int, where: str):
        count = math.prod(shape)
        end = offset + size
        pos = offset
        lengths = []
        for _ in range(count):
            n, pos = proto.read_varint(buf, pos, end) if pos < end else (None, pos)
            if n is None:
                raise CorruptionError(f"{where}: string lengths run past the stored data")
            lengths.append(n)
        if pos + 4 + sum(lengths) != end:
            raise CorruptionError(f"{where}: string lengths do not match the stored size")
        if self.verify:
            value = lengths_crc(lengths)
            stored = int.from_bytes(buf[pos:pos + 4], "little")
            if mask(value) != stored:
                raise CorruptionError(f"{where}: checksum mismatch in string lengths")
            value = extend(value, buf[pos:pos + 4])
            value = extend(value, memoryview(buf)[pos + 4:end])
            if mask(value) != expected:
                raise CorruptionError(f"{where}: checksum mismatch (data corrupted)")
        pos += 4
        out = np.empty(count, dtype=object)
        for i, n in enumerate(lengths):
            out[i] = bytes(buf[pos:pos + n])
            pos += n
        return out.reshape(shape)

    def read_partitioned(self, name: str, entry: dict) -> np.ndarray:
        dtype, _ = self.dtype_of(entry)
        full = entry["shape"]
        where = f"{self.index_path}: tensor {name!r}"
        parts = []
        for extents in entry["slices"]:
            if len(extents) != len(full):
                raise CorruptionError(f"{where}: slice rank mismatch")
            raw = self.raw.get(slice_key(name, extents))
            if raw is None:  # savers also spell whole dimensions out as (0, size)
                explicit = [(0, full[d]) if length < 0 else (start, length)
                            for d, (start, length) in enumerate(extents)]
                raw = self.raw.get(slice_key(name, explicit))
            if raw is None:
                raise CorruptionError(f"{where}: a partition is missing")
            part = self._entry(name, raw)
            part["shape"] = tuple(
                full[d] if length < 0 else length for d, (_, length) in enumerate(extents))
            index = tuple(
                slice(0, full[d]) if length < 0 else slice(start, start + length)
                for d, (start, length) in enumerate(extents))
            if any(s.stop > full[d] or s.start < 0 for d, s in enumerate(index)):
                raise CorruptionError(f"{where}: slice out of bounds")
            parts.append((index, part))
        # Before allocating the whole tensor: it must fit in the data its parts point into, and
        # the parts must cover it exactly once (np.empty would hand out uninitialised memory).
        stored = sum(self._shard_size(i) for i in {p["shard"] for _, p in parts})
        if math.prod(full) * (1 if dtype.hasobject else dtype.itemsize) > stored:
            raise CorruptionError(f"{where}: shape {list(full)} needs more bytes than its "
                                  f"data files hold ({stored})")
        boxes = [[(s.start, s.stop) for s in index] for index, _ in parts]
        if sum(math.prod(b - a for a, b in box) for box in boxes) != math.prod(full) or any(
                _overlap(x, y) for i, x in enumerate(boxes) for y in boxes[i + 1:]):
            raise CorruptionError(f"{where}: its partitions do not cover shape {list(full)} "
                                  "exactly once")
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


def _overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> bool:
    return all(max(a0, b0) < min(a1, b1) for (a0, a1), (b0, b1) in zip(a, b, strict=True))


def _storage_order(bundle: Bundle) -> list[tuple[str, dict]]:
    """Entries in the order their data was written (the order the writer was given), which
    the index, sorted by name, does not keep. A partitioned variable sits at its first part."""
    def position(item: tuple[str, dict]) -> tuple[int, int, int]:
        name, entry = item
        if entry["slices"]:
            parts = [bundle.raw.get(slice_key(name, e)) for e in entry["slices"][:1]]
            if parts and parts[0] is not None:
                try:
                    part = proto.decode_entry(parts[0])
                    return part["shard"], part["offset"], 1
                except proto.ProtoError:
                    pass
        return entry["shard"], entry["offset"], 1 if entry["size"] else 0

    return sorted(bundle.entries.items(), key=position)


def read_bundle(path: Path, verify: bool = True) -> Checkpoint:
    with gc_paused():
        return _read_bundle(path, verify)


def _read_bundle(path: Path, verify: bool) -> Checkpoint:
    prefix, meta = resolve(path)
    bundle = Bundle(prefix, verify)
    graph_attrs: dict[str, dict[str, str]] = {}
    graph_entry = bundle.entries.get(objgraph.GRAPH_KEY)
    if graph_entry is not None and (graph_entry["dt"] != 7 or graph_entry["shape"] != ()):
        graph_entry = None  # not a serialized graph: an ordinary tensor of that name
    if graph_entry is not None:
        try:
            raw = bundle.read_entry(objgraph.GRAPH_KEY, graph_entry)
            graph_attrs = objgraph.classify(objgraph.parse(raw.reshape(-1)[0]))
        except (proto.ProtoError, IndexError) as exc:
            raise CorruptionError(f"{bundle.index_path}: malformed object graph ({exc})") from None
        layout = "tf2"
    else:
        layout = "tf1"
    tensors: dict[str, Tensor] = {}
    types: dict[int, tuple[np.dtype, dict[str, str]]] = {}
    tf2 = graph_entry is not None
    read_entry, make = bundle.read_entry, Tensor._trusted
    for name, entry in _storage_order(bundle):
        dt = entry["dt"]
        if dt not in types:
            types[dt] = bundle.dtype_of(entry)
        dtype, attrs = types[dt]
        attrs = dict(attrs) if attrs else {}
        if not tf2:
            kind = None  # judged from the TF1 name when asked (Tensor.kind)
        elif name == objgraph.GRAPH_KEY:
            kind = "object_graph"
        elif name in graph_attrs:
            attrs.update(graph_attrs[name])
            kind = attrs.pop("kind")
        else:
            kind = "other"
        shape = entry["shape"]
        size = math.prod(shape)
        span = checksum = None
        if entry["slices"]:
            load = partial(bundle.read_partitioned, name, entry)
            attrs["partitions"] = str(len(entry["slices"]))
        else:
            load = partial(read_entry, name, entry)
            # A span lets writers and verify stream the bytes without read(), so only an entry
            # whose size matches its shape and dtype gets one; read() reports the others.
            if size * dtype.itemsize == entry["size"] and not dtype.hasobject \
                    and "unsupported" not in entry:
                span = (bundle.shard_file(entry["shard"]), entry["offset"], entry["size"])
                checksum = unmask(entry["crc"]) if verify else None
        tensors[name] = make(name, dtype, shape, size, load, kind, span, checksum, attrs)
    source = Source("tf", str(prefix), layout, shards=bundle.num_shards, **meta)
    return Checkpoint(tensors, source=source, closers=[bundle.close])
