"""A corruption corpus: deterministic mutants of small valid checkpoints of every format, and the
worker that runs every reader path on them.

From files written by ``converter.write`` (and two hand-built TF bundles: a partitioned variable,
an object graph) this builds a few hundred damaged copies: truncations at and around every
structural boundary, bit flips in headers and indices, length and size fields set to huge or
negative values, and index/data mismatches. ``test_corpus.py`` runs them, one worker process per
format, each mutant under an alarm and a memory cap; every mutant must give a clean
``ConverterError`` or the original data.

    python -m tests.corpus run [DIR]        build the corpus (in DIR, kept), run it, print a summary
    python -m tests.corpus worker MANIFEST  (internal) run one format's mutants, JSON lines out

(from the repository root).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import converter
from converter import proto
from converter.crc32c import masked_crc
from converter.formats.tfbundle.entry import decode_entry, encode_entry
from converter.formats.tfbundle.slices import slice_key
from converter.formats.tfbundle.strings import write_strings
from converter.formats.tfbundle.table import MAGIC, BlockBuilder, read_table
from converter.tfnames import GRAPH_KEY
from tests import corpus_graphs
from tests.samples import array_for, sample

# The worker runs as ``python -m tests.corpus`` from here, where ``tests`` is importable.
REPO = Path(__file__).resolve().parent.parent

SEED = 20240607
ALARM = 5.0  # seconds per mutant (inspect + full read + verify)
MEMORY_CAP = 3 << 29  # 1.5 GiB of address space per worker
GRACE = 10.0  # extra seconds the parent waits before it kills a worker stuck in C code
# Graph files that hold no tensors of their own, checked by what every reader makes of them.
GRAPH_FORMATS = ("saved_model", "metagraph")
FACTS = "facts"

# ---------------------------------------------------------------------------------------------
# Originals


@dataclass
class Original:
    """A valid checkpoint the mutants are made from: files in ``dir``, read as ``target``."""

    key: str
    format: str
    dir: Path
    target: str  # relative to dir
    data: dict[str, np.ndarray]

    def files(self) -> dict[str, bytes]:
        return {p.relative_to(self.dir).as_posix(): p.read_bytes()
                for p in sorted(self.dir.rglob("*")) if p.is_file()}


def _other_values(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same names, dtypes and shapes with different values (for swapped data files)."""
    out = {}
    for name, value in data.items():
        if value.dtype.hasobject:
            flat = np.empty(value.size, dtype=object)
            flat[:] = [bytes(x) + b"!" for x in value.reshape(-1)]
            out[name] = flat.reshape(value.shape)
        else:
            raw = np.frombuffer(np.ascontiguousarray(value).tobytes(), np.uint8) ^ 0x5A
            out[name] = raw.view(value.dtype).reshape(value.shape)
    return out


TF_DATA = sample({"float32", "int64", "string", "bfloat16"})
ST_DATA = sample({"float32", "int64", "bfloat16", "float16", "uint8", "bool"})
NPZ_DATA = sample({"float32", "int64", "string", "bfloat16"})
NPYDIR_DATA = sample({"float32", "int64", "bfloat16"})
H5_DATA = sample({"float32", "int64", "string", "bfloat16"})
TF2_DATA = {
    "model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE": array_for("float32", (3, 4), 11),
    "model/dense/bias/.ATTRIBUTES/VARIABLE_VALUE": array_for("float32", (4,), 12),
    "model/dense/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE":
        array_for("float32", (3, 4), 13),
    "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE": np.array(7, np.int64),
    "save_counter/.ATTRIBUTES/VARIABLE_VALUE": np.array(1, np.int64),
}
PART_FULL = (np.arange(24, dtype=np.float32).reshape(6, 4) * 1.5 - 3)
PART_PLAIN = np.arange(5, dtype=np.int32) * 7


def _write_partitioned(prefix: Path) -> None:
    """A TF1 bundle with a variable saved in two partitions (what ``tf.compat.v1`` writes for
    ``partitioner=``), built by hand since converter never writes partitions."""
    parts = [PART_FULL[:3], PART_FULL[3:]]
    data = b"".join(p.tobytes() for p in parts) + PART_PLAIN.tobytes()
    rows = {b"": _HEADER1}
    rows[b"part/w"] = proto.encode(
        [(1, 1), (2, proto.encode_shape((6, 4)))]
        + [(7, _slice_proto([(start, 3), (0, -1)])) for start in (0, 3)])
    offset = 0
    for start, part in zip((0, 3), parts, strict=True):
        raw = part.tobytes()
        rows[slice_key("part/w", [(start, 3), (0, -1)])] = encode_entry(
            1, part.shape, 0, offset, len(raw), masked_crc(raw))
        offset += len(raw)
    rows[b"plain"] = encode_entry(3, (5,), 0, offset, 20, masked_crc(PART_PLAIN.tobytes()))
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(data)
    prefix.with_name(prefix.name + ".index").write_bytes(raw_table(sorted(rows.items())))


def _slice_proto(extents: list[tuple[int, int]]) -> bytes:
    return proto.encode(
        (1, proto.encode([(1, s), (2, n)] if n >= 0 else [(1, s)] if s else []))
        for s, n in extents)


_HEADER1 = proto.encode([(1, 1), (3, proto.encode([(1, 1)]))])


def build_originals(root: Path) -> dict[str, Original]:
    """Write every original under ``root``; return them by key."""
    specs: list[tuple[str, str, str, dict[str, np.ndarray], Callable[[Path], None]]] = [
        ("tf", "tf", "m.ckpt", TF_DATA,
         lambda d: converter.write(TF_DATA, d / "m.ckpt", state_file=False)),
        ("tf2", "tf", "m.ckpt", TF2_DATA,
         lambda d: converter.write(TF2_DATA, d / "m.ckpt", state_file=False)),
        ("tf-partitioned", "tf", "m.ckpt", {"part/w": PART_FULL, "plain": PART_PLAIN},
         lambda d: _write_partitioned(d / "m.ckpt")),
        ("safetensors", "safetensors", "m.safetensors", ST_DATA,
         lambda d: converter.write(_with_metadata(ST_DATA), d / "m.safetensors")),
        ("npz", "npz", "m.npz", NPZ_DATA,
         lambda d: converter.write(_with_metadata(NPZ_DATA), d / "m.npz")),
        ("npz-deflate", "npz", "m.npz", NPZ_DATA,
         lambda d: converter.write(NPZ_DATA, d / "m.npz", compress=True)),
        ("npy", "npy", "w.npy", {"w": array_for("float32", (4, 5), 5)},
         lambda d: converter.write({"w": array_for("float32", (4, 5), 5)}, d / "w.npy")),
        ("npydir", "npy", "m", NPYDIR_DATA,
         lambda d: converter.write(NPYDIR_DATA, d / "m", format="npy")),
        ("hdf5", "hdf5", "m.h5", H5_DATA, lambda d: converter.write(H5_DATA, d / "m.h5")),
    ]
    out = graph_originals(root)
    for key, fmt, target, data, write in specs:
        d = root / key
        d.mkdir(parents=True)
        write(d)
        _fix_timestamps(d / target)
        # What the checkpoint holds, read back: the source values plus whatever the writer
        # added (a TF2 object graph), checked against the source first.
        with converter.read(d / target) as ckpt:
            back = {n: np.array(t.read(), copy=True) for n, t in ckpt.items()}
        for name, value in data.items():
            if not _values_equal(back[name], value):
                raise AssertionError(f"{key}: {name!r} does not round-trip")
        out[key] = Original(key, fmt, d, target, back)
    return out


def graph_originals(root: Path) -> dict[str, Original]:
    """The TensorFlow graph seeds (tests/corpus_graphs.py): a frozen graph's constants are its
    data; for a SavedModel's graph and a ``.meta``, what every reader path makes of them."""
    out = {}
    for seed in corpus_graphs.SEEDS:
        d = root / seed.key
        d.mkdir(parents=True)
        seed.write(d)
        if seed.format in GRAPH_FORMATS:
            data = {FACTS: corpus_graphs.graph_facts(seed.format, d / seed.target)}
        else:
            with converter.read(d / seed.target) as ckpt:
                data = {n: np.array(t.read(), copy=True) for n, t in ckpt.items()}
        out[seed.key] = Original(seed.key, seed.format, d, seed.target, data)
    return out


FIXED_TIME = 1_000_000_000


def _fix_timestamps(path: Path) -> None:
    """Writers stamp the time into zip headers and HDF5 object headers; a fixed stamp makes the
    corpus the same on every run (nothing else in the files changes)."""
    if not path.is_file():
        return
    raw = path.read_bytes()
    if raw[:4] == b"PK\x03\x04":
        z = _Zip(raw)
        for loc in z.local:
            raw = put(raw, loc + 10, b"\x00\x00\x21\x00")  # 1980-01-01 00:00
        for cen in z.central:
            raw = put(raw, cen + 12, b"\x00\x00\x21\x00")
    elif raw[:8] == b"\x89HDF\r\n\x1a\n":
        for m in re.finditer(b"OHDR", raw):
            raw = _fix_ohdr_times(raw, m.start())
    path.write_bytes(raw)


def _fix_ohdr_times(raw: bytes, at: int) -> bytes:
    """Set the times of a version-2 object header to FIXED_TIME and recompute its checksum."""
    version, flags = raw[at + 4], raw[at + 5]
    if version != 2 or not flags & 0x20:
        return raw
    pos = at + 6 + 16 + (4 if flags & 0x10 else 0)
    width = 1 << (flags & 0x03)
    size = int.from_bytes(raw[pos:pos + width], "little")
    end = pos + width + size
    if end + 4 > len(raw) or _lookup3(raw[at:end]) != int.from_bytes(raw[end:end + 4], "little"):
        return raw  # not a real header (the signature bytes occur in data)
    raw = put(raw, at + 6, struct.pack("<4I", *[FIXED_TIME] * 4))
    return put(raw, end, struct.pack("<I", _lookup3(raw[at:end])))


_MIX = ((0, 2, 1, 4), (1, 0, 2, 6), (2, 1, 0, 8), (0, 2, 1, 16), (1, 0, 2, 19), (2, 1, 0, 4))
_FINAL = ((2, 1, 14), (0, 2, 11), (1, 0, 25), (2, 1, 16), (0, 2, 4), (1, 0, 14), (2, 1, 24))


def _lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, the checksum of HDF5 metadata."""
    m = 0xFFFFFFFF

    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & m

    n = len(data)
    v = [(0xDEADBEEF + n + initval) & m] * 3
    i = 0
    while n - i > 12:
        for j in range(3):
            v[j] = (v[j] + int.from_bytes(data[i + 4 * j:i + 4 * j + 4], "little")) & m
        for x, y, z, k in _MIX:
            v[x] = ((v[x] - v[y]) & m) ^ rot(v[y], k)
            v[y] = (v[y] + v[z]) & m
        i += 12
    if n == i:
        return v[2]
    tail = data[i:] + bytes(12 - (n - i))
    for j in range(3):
        v[j] = (v[j] + int.from_bytes(tail[4 * j:4 * j + 4], "little")) & m
    for x, y, k in _FINAL:
        v[x] = ((v[x] ^ v[y]) - rot(v[y], k)) & m
    return v[2]


def _with_metadata(data: dict[str, np.ndarray]) -> converter.Checkpoint:
    ckpt = converter.as_checkpoint(dict(data))
    ckpt.metadata.update({"format": "pt", "note": "corpus"})
    return ckpt


# ---------------------------------------------------------------------------------------------
# Byte-level helpers


def flip(raw: bytes, pos: int, bit: int = 0) -> bytes:
    out = bytearray(raw)
    out[pos] ^= 1 << bit
    return bytes(out)


def put(raw: bytes, pos: int, value: bytes) -> bytes:
    return raw[:pos] + value + raw[pos + len(value):]


def put_int(raw: bytes, pos: int, fmt: str, value: int) -> bytes:
    return put(raw, pos, struct.pack(fmt, value))


def cut_points(size: int, boundaries: list[int], around: int = 1) -> list[int]:
    """Truncation lengths at and around each boundary, inside ``[0, size)``."""
    out = set()
    for b in boundaries:
        for n in range(b - around, b + around + 1):
            if 0 <= n < size:
                out.add(n)
    return sorted(out)


def raw_table(rows: list[tuple[bytes, bytes]], *, restart: int = 16,
              mutate_block: Callable[[bytes], bytes] | None = None) -> bytes:
    """A LevelDB table of ``rows`` in the given order (no ordering checks, unlike TableWriter):
    one data block, an empty meta-index block, the index block and the footer, each block
    with its trailer and a valid checksum (after ``mutate_block`` changed the data block)."""
    out = bytearray()

    def block(body: bytes) -> bytes:
        handle = proto.varint(len(out)) + proto.varint(len(body))
        out.extend(body + b"\x00" + struct.pack("<I", masked_crc(body + b"\x00")))
        return handle

    data = BlockBuilder(restart)
    for key, value in rows:
        data.add(key, value)
    body = data.finish()
    data_handle = block(mutate_block(body) if mutate_block else body)
    index = BlockBuilder(1)
    index.add(rows[-1][0] if rows else b"", data_handle)
    meta = block(BlockBuilder(restart).finish())
    idx = block(index.finish())
    footer = meta + idx
    out.extend(footer + b"\x00" * (40 - len(footer)) + struct.pack("<Q", MAGIC))
    return bytes(out)


def _table_layout(index: bytes) -> tuple[list[tuple[int, int]], int]:
    """``([(offset, size)] of every block, footer offset)`` of a valid table."""
    foot = len(index) - 48
    meta_off, pos = proto.read_varint(index, foot, len(index))
    meta_size, pos = proto.read_varint(index, pos, len(index))
    idx_off, pos = proto.read_varint(index, pos, len(index))
    idx_size, _ = proto.read_varint(index, pos, len(index))
    blocks = [(meta_off, meta_size), (idx_off, idx_size)]
    body = index[idx_off:idx_off + idx_size]
    (n,) = struct.unpack_from("<I", body, len(body) - 4)
    limit, p = len(body) - 4 - 4 * n, 0
    while p < limit:
        _, p = proto.read_varint(body, p, limit)
        unshared, p = proto.read_varint(body, p, limit)
        vlen, p = proto.read_varint(body, p, limit)
        p += unshared
        off, q = proto.read_varint(body, p, p + vlen)
        size, _ = proto.read_varint(body, q, p + vlen)
        blocks.append((off, size))
        p += vlen
    return sorted(blocks), foot


# ---------------------------------------------------------------------------------------------
# Mutants


@dataclass
class Mutant:
    """One damaged copy of an original: ``changes`` maps a file (relative path) to new bytes,
    or to None to delete it. ``may_differ`` marks damage no reader can notice (a flipped
    byte-order mark in a format without checksums): the result must then match an independent
    reader. ``ignore`` names tensors whose values the mutation changed on purpose. ``built``
    marks a file built from scratch (``grammar.py``), which has no original to compare with:
    it must fail cleanly or read consistently."""

    id: str
    original: str
    format: str
    label: str
    changes: dict[str, bytes | None]
    may_differ: bool = False
    ignore: list[str] = field(default_factory=list)
    dir: str = ""
    target: str = ""
    built: bool = False


Gen = Iterator[tuple[str, dict[str, bytes | None]] | tuple[str, dict[str, bytes | None], dict]]


def _truncations(name: str, raw: bytes, boundaries: list[int], around: int = 1) -> Gen:
    for n in cut_points(len(raw), boundaries, around):
        yield f"truncate {name} to {n} of {len(raw)} bytes", {name: raw[:n]}


def _tf_mutants(o: Original, rng: random.Random, alt: dict[str, bytes], other: dict[str, bytes]
                ) -> Gen:
    files = o.files()
    index_name, data_name = "m.ckpt.index", "m.ckpt.data-00000-of-00001"
    index, data = files[index_name], files[data_name]
    rows = read_table(index, "original")
    entries = {k: decode_entry(v) for k, v in rows if k}
    blocks, foot = _table_layout(index)

    # Truncations: footer, every block and its trailer, every tensor's end in the data file.
    bounds = [0, foot, foot + 8, len(index) - 8, len(index) - 1]
    for off, size in blocks:
        bounds += [off, off + size, off + size + 5]
    yield from _truncations(index_name, index, bounds)
    ends = sorted({e.offset + e.size for e in entries.values() if e.size})
    yield from _truncations(data_name, data, [0] + ends[:-1], around=0)
    yield from _truncations(data_name, data, ends[-1:])
    yield "data file missing", {data_name: None}
    yield "index file empty", {index_name: b""}

    # Bit flips in the index: the magic, the footer's block handles, the block trailers
    # (compression type, checksum), and inside the blocks (caught by their checksums).
    yield "flip table magic", {index_name: flip(index, len(index) - 1, 3)}
    for pos in range(foot, foot + 8):
        yield f"flip footer byte {pos - foot}", {index_name: flip(index, pos, rng.randrange(7))}
    for off, size in blocks:
        yield f"block at {off}: compressed type", {index_name: put(index, off + size, b"\x01")}
        yield f"block at {off}: checksum", {index_name: flip(index, off + size + 2, 5)}
    for _ in range(8):
        pos = rng.randrange(0, foot)
        yield f"flip index byte {pos}", {index_name: flip(index, pos, rng.randrange(8))}
    huge = proto.varint(2**63) + proto.varint(2**62)
    yield "footer index handle huge", {index_name: put(index, foot + 3, huge)}
    yield "footer handles garbage", {index_name: put(index, foot, b"\xff" * 40)}

    # A valid table (checksums right) with broken block structure.
    def block_mutant(label: str, fn: Callable[[bytes], bytes]) -> tuple[str, dict]:
        return f"block {label} (checksum fixed)", {index_name: raw_table(rows, mutate_block=fn)}

    yield block_mutant("restart count huge", lambda b: put_int(b, len(b) - 4, "<I", 2**31))
    yield block_mutant("restart count 0", lambda b: put_int(b, len(b) - 4, "<I", 0))
    yield block_mutant("first entry shared=5", lambda b: put(b, 0, b"\x05"))
    yield block_mutant("first key length huge", lambda b: put(b, 1, b"\xff\xff\xff\x7f"))
    yield block_mutant("first value length huge", lambda b: put(b, 2, b"\xff\xff\x03"))
    yield block_mutant("varint never ends", lambda b: put(b, 0, b"\xff" * 12))
    yield block_mutant("entries cut short", lambda b: b[:len(b) // 2] + b[-8:])

    # Valid tables holding bad entries: sizes, offsets, shapes, dtypes, shards.
    def with_rows(label: str, new_rows: list[tuple[bytes, bytes]]) -> tuple[str, dict]:
        return label, {index_name: raw_table(new_rows)}

    def with_entry(label: str, name: str, **change: Any) -> tuple[str, dict]:
        e = entries[name.encode()]._replace(**change)
        value = encode_entry(e.dtype_enum, e.shape, e.shard, e.offset, e.size, e.crc32c)
        return with_rows(f"{name}: {label}", [(k, value if k == name.encode() else v)
                                              for k, v in rows])

    kernel = entries[b"dense/kernel"]
    string = entries[b"dtypes/string"]
    for name, e in (("dense/kernel", kernel), ("dtypes/string", string)):
        yield with_entry("size 2**62", name, size=2**62)
        yield with_entry("size -1", name, size=-1)
        yield with_entry("size +4", name, size=e.size + 4)
        yield with_entry("size -4", name, size=e.size - 4)
        yield with_entry("offset 2**62", name, offset=2**62)
        yield with_entry("offset -8", name, offset=-8)
        yield with_entry("offset +4", name, offset=e.offset + 4)
        yield with_entry("offset at end of data", name, offset=len(data) - 2)
        yield with_entry("shard 1 of 1", name, shard=1)
        yield with_entry("shard 2**40", name, shard=2**40)
        yield with_entry("crc flipped", name, crc32c=e.crc32c ^ 0x100)
        yield with_entry("shape x2", name, shape=(e.shape[0] * 2, *e.shape[1:]))
        yield with_entry("shape huge", name, shape=(2**62, 2**62))
        yield with_entry("shape 2**63-1", name, shape=(2**63 - 1,))
        yield with_entry("negative dimension", name, shape=(-1, *e.shape[1:]))
        yield with_entry("rank 70", name, shape=(1,) * 68 + e.shape)
    yield with_entry("dtype 99", "dense/kernel", dtype_enum=99)
    yield with_entry("dtype float64", "dense/kernel", dtype_enum=2)
    yield with_entry("dtype string", "dense/kernel", dtype_enum=7)
    yield with_entry("dtype float32", "dtypes/string", dtype_enum=1)
    yield with_entry("dtype int4 enum", "scalar", dtype_enum=29)

    name = b"dense/kernel"
    value = dict(rows)[name]
    for n in (1, len(value) // 2, len(value) - 1):
        yield with_rows(f"entry cut to {n} bytes", [(k, value[:n] if k == name else v)
                                                    for k, v in rows])
    for label, bad in [
        ("shape length huge", b"\x08\x01\x12\xff\xff\xff\xff\x0f\x12\x02\x08\x04"),
        ("wire type 7", b"\x0f\x01"),
        ("field number 0", b"\x00\x01"),
        ("varint 11 bytes", b"\x20" + b"\xff" * 10 + b"\x01"),
        ("shape dim as fixed64", b"\x08\x01\x12\x0b\x12\x09\x09" + b"\xff" * 8),
        ("shape dim as varint", b"\x08\x01\x12\x02\x10\x05"),
        ("shape dim name only", b"\x08\x01\x12\x05\x12\x03\x12\x01x"),
        ("unknown rank", b"\x08\x01\x12\x02\x18\x01"),
        ("slices not a message", b"\x08\x01\x12\x00\x38\x05"),
        ("slice extent as varint", b"\x08\x01\x12\x00\x3a\x02\x08\x05"),
    ]:
        yield with_rows(f"entry {label}", [(k, bad if k == name else v) for k, v in rows])

    header = dict(rows)[b""]
    for label, bad in [
        ("num_shards 0", proto.encode([(1, 0)])),
        ("num_shards 2", proto.encode([(1, 2)])),
        ("num_shards 2**40", proto.encode([(1, 2**40)])),
        ("num_shards negative", proto.encode([(1, -1)])),
        ("big-endian", header + proto.encode([(2, 1)])),
        ("garbage", b"\xff\xff\xff"),
        ("version as varint", proto.encode([(1, 1), (3, 5)])),
    ]:
        yield with_rows(f"bundle header {label}", [(k, bad if k == b"" else v) for k, v in rows])
    yield with_rows("bundle header missing", rows[1:])
    yield with_rows("keys out of order", [rows[0], rows[2], rows[1], *rows[3:]])
    yield with_rows("key stored twice", [*rows[:2], rows[1], *rows[2:]])
    yield with_rows("key not UTF-8", [*rows, (b"\xff\xfe", rows[1][1])])
    yield with_rows("empty table", [])

    # Index and data that do not belong together.
    yield "data from a bundle with other values", {data_name: alt[data_name]}
    yield "index from a bundle with other values", {index_name: alt[index_name]}
    yield "data from a smaller bundle", {data_name: other[data_name]}
    yield "index from a smaller bundle", {index_name: other[index_name]}
    yield "data with trailing garbage", {data_name: data + b"\x00garbage"}
    for _ in range(4):
        pos = rng.randrange(len(data))
        yield f"flip data byte {pos}", {data_name: flip(data, pos, rng.randrange(8))}


def _rewrite_tensor(files: dict[str, bytes], name: str, raw: bytes, crc_masked: int
                    ) -> dict[str, bytes]:
    """Append new bytes for tensor ``name`` to the data file and point its entry at them."""
    index_name, data_name = "m.ckpt.index", "m.ckpt.data-00000-of-00001"
    data = files[data_name]
    rows = read_table(files[index_name], "original")
    out_rows = []
    for k, v in rows:
        if k == name.encode():
            e = decode_entry(v)
            v = encode_entry(e.dtype_enum, e.shape, e.shard, len(data), len(raw), crc_masked)
        out_rows.append((k, v))
    return {data_name: data + raw, index_name: raw_table(out_rows)}


def _tf2_mutants(o: Original, rng: random.Random) -> Gen:
    files = o.files()
    ckpt = converter.read(o.dir / o.target)
    graph = bytes(ckpt[GRAPH_KEY].read().reshape(-1)[0])
    ckpt.close()

    def with_graph(label: str, g: bytes) -> tuple[str, dict, dict]:
        buf = io.BytesIO()
        _, value = write_strings(buf, np.array([g], dtype=object).reshape(()), "g")
        changes = _rewrite_tensor(files, GRAPH_KEY, buf.getvalue(), value)
        return f"object graph: {label}", changes, {"ignore": [GRAPH_KEY]}

    for n in sorted({1, 2, len(graph) // 3, len(graph) // 2, len(graph) - 1}):
        yield with_graph(f"cut to {n} bytes", graph[:n])
    for _ in range(10):
        pos = rng.randrange(len(graph))
        yield with_graph(f"flip byte {pos}", flip(graph, pos, rng.randrange(8)))
    e = proto.encode
    for label, g in [
        ("empty", b""),
        ("node as varint", e([(1, 3)])),
        ("children as varint", e([(1, e([(1, 7)]))])),
        ("child name as varint", e([(1, e([(1, e([(1, 1), (2, 5)]))]))])),
        ("attribute as varint", e([(1, e([(2, 9)]))])),
        ("attribute key as varint", e([(1, e([(2, e([(1, "VARIABLE_VALUE"), (3, 4)]))]))])),
        ("slot as varint", e([(1, e([(3, 2)]))])),
        ("slot name as varint", e([(1, e([(3, e([(1, 0), (2, 3), (3, 0)]))]))])),
        ("child node id huge", e([(1, e([(1, e([(1, 2**62), (2, "x")]))]))])),
        ("child points to itself", e([(1, e([(1, e([(1, 0), (2, "x")]))]))])),
        ("name not UTF-8", e([(1, e([(1, e([(1, 0), (2, b"\xff\xfe")]))]))])),
        ("length huge", b"\x0a\xff\xff\xff\xff\x0f"),
        ("garbage", bytes(rng.randrange(256) for _ in range(64))),
    ]:
        yield with_graph(label, g)
    yield "object graph stored as float", _rewrite_tensor(
        {**files, "m.ckpt.index": raw_table([
            (k, encode_entry(1, (2,), 0, 0, 8, 0) if k == GRAPH_KEY.encode() else v)
            for k, v in read_table(files["m.ckpt.index"], "o")])},
        GRAPH_KEY, b"\x00" * 8, masked_crc(b"\x00" * 8)), \
        {"ignore": [GRAPH_KEY]}


def _partitioned_mutants(o: Original) -> Gen:
    files = o.files()
    index_name = "m.ckpt.index"
    rows = read_table(files[index_name], "original")
    keys = [k for k, _ in rows if k[:1] == b"\x00"]

    def with_full(label: str, shape: tuple[int, ...], extents: list[list[tuple[int, int]]],
                  drop: bytes | None = None) -> tuple[str, dict]:
        value = proto.encode([(1, 1), (2, proto.encode_shape(shape))]
                             + [(7, _slice_proto(x)) for x in extents])
        new = [(k, value if k == b"part/w" else v) for k, v in rows if k != drop]
        return f"partitioned: {label}", {index_name: raw_table(new)}

    both = [[(0, 3), (0, -1)], [(3, 3), (0, -1)]]
    yield with_full("full shape huge", (2**40, 4), both)
    yield with_full("full shape 2**62 x 2**62", (2**62, 2**62), both)
    yield with_full("full shape larger", (7, 4), both)
    yield with_full("full shape smaller", (5, 4), both)
    yield with_full("one partition only", (6, 4), both[:1])
    yield with_full("same partition twice", (6, 4), [both[0], both[0]])
    yield with_full("rank mismatch", (6, 4), [[(0, 3)], [(3, 3)]])
    yield with_full("partition missing", (6, 4), both, drop=keys[0])
    yield with_full("negative start", (6, 4), [[(-3, 3), (0, -1)], [(3, 3), (0, -1)]])
    yield with_full("negative length", (6, 4), [[(0, -3), (0, -1)], [(3, 3), (0, -1)]])
    yield with_full("rank 70", (1,) * 68 + (6, 4), both)
    part = decode_entry(dict(rows)[keys[0]])
    for label, change in [("size 2**62", {"size": 2**62}), ("offset -4", {"offset": -4}),
                          ("size +4", {"size": part.size + 4}), ("dtype 99", {"dtype_enum": 99}),
                          ("dtype float64", {"dtype_enum": 2}), ("crc flipped", {"crc32c": 1})]:
        e = part._replace(**change)
        value = encode_entry(e.dtype_enum, e.shape, e.shard, e.offset, e.size, e.crc32c)
        yield f"partition {label}", {index_name: raw_table(
            [(k, value if k == keys[0] else v) for k, v in rows])}
    yield from _truncations("m.ckpt.data-00000-of-00001", files["m.ckpt.data-00000-of-00001"],
                            [48, 96], around=0)


def _st_header(header: dict | str | bytes, data: bytes, pad: bool = True) -> bytes:
    raw = header if isinstance(header, bytes) else (
        header if isinstance(header, str) else json.dumps(header)).encode("utf-8", "surrogatepass")
    if pad:
        raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def _safetensors_mutants(o: Original, rng: random.Random) -> Gen:
    name = o.target
    raw = o.files()[name]
    (n,) = struct.unpack_from("<Q", raw)
    text = raw[8:8 + n].decode()
    header = json.loads(text)
    data = raw[8 + n:]
    start = 8 + n
    ends = sorted({start + v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"})
    yield from _truncations(name, raw, [0, 1, 4, 8, start // 2, start] + ends)

    for label, value in [("2**63", 2**63), ("2**64-1", 2**64 - 1), ("2**32+N", 2**32 + n),
                         ("N+1", n + 1), ("N-1", n - 1), ("N+8", n + 8), ("N-8", n - 8),
                         ("0", 0), ("rest of file", len(raw) - 8), ("file size", len(raw))]:
        yield f"header length {label}", {name: put_int(raw, 0, "<Q", value)}

    structural = _json_structure(raw, 8, start)
    for pos in sorted(rng.sample(structural, 16)):
        yield f"flip header byte {pos} ({chr(raw[pos])!r})", {
            name: flip(raw, pos, rng.randrange(8))}

    first = next(k for k in header if k != "__metadata__")
    kernel = header["dense/kernel"]

    def edited(label: str, **entry: Any) -> tuple[str, dict]:
        h = json.loads(text)
        for key, value in entry.items():
            if value is _DELETE:
                del h["dense/kernel"][key]
            else:
                h["dense/kernel"][key] = value
        return f"dense/kernel: {label}", {name: _st_header(h, data)}

    b, e = kernel["data_offsets"]
    yield edited("offsets reversed", data_offsets=[e, b])
    yield edited("offsets negative", data_offsets=[-80, 0])
    yield edited("offsets past the data", data_offsets=[len(data), len(data) + 80])
    yield edited("offsets beyond 2**64", data_offsets=[2**64, 2**64 + 80])
    yield edited("offsets of the first tensor", data_offsets=header[first]["data_offsets"])
    yield edited("offsets overlap the next", data_offsets=[b + 4, e + 4])
    yield edited("offsets as floats", data_offsets=[float(b), float(e)])
    yield edited("offsets as strings", data_offsets=[str(b), str(e)])
    yield edited("offsets as bools", data_offsets=[False, True])
    yield edited("three offsets", data_offsets=[b, e, e])
    h = json.loads(text)
    h["dense/kernel"]["data_offsets"] = [b, 987654321987654321]
    yield "dense/kernel: offsets 5000 digits", {name: _st_header(
        json.dumps(h).replace("987654321987654321", "9" * 5000), data)}
    yield edited("offsets missing", data_offsets=_DELETE)
    yield edited("shape negative", shape=[-4, -5])
    yield edited("shape huge", shape=[2**62, 2**62])
    yield edited("shape 2**64", shape=[2**64])
    yield edited("shape floats", shape=[4.0, 5.0])
    yield edited("shape bools", shape=[True, 20])
    yield edited("shape nested", shape=[[4], [5]])
    yield edited("shape a string", shape="45")
    yield edited("shape rank 70", shape=[1] * 68 + [4, 5])
    yield edited("shape missing", shape=_DELETE)
    yield edited("dtype unknown", dtype="F99")
    yield edited("dtype F64", dtype="F64")
    yield edited("dtype a number", dtype=5)
    yield edited("dtype missing", dtype=_DELETE)

    entry = json.dumps(kernel)
    dup = text.rstrip().rstrip("}") + f', "dense/kernel": {entry}}}'
    yield "duplicate tensor name", {name: _st_header(dup, data)}
    dup2 = text.rstrip().rstrip("}") + ', "__metadata__": {"a": "b"}}'
    yield "duplicate __metadata__", {name: _st_header(dup2, data)}
    others = [
        ("header a list", "[]"), ("header a string", '"x"'), ("header null", "null"),
        ("header a number", "1e999"), ("header empty object", "{}"),
        ("header nested 100000 deep", "[" * 100_000 + "]" * 100_000),
        ("header object nested deep", '{"a":' * 50_000 + "1" + "}" * 50_000),
        ("header not UTF-8", b'{"\xff\xfe": 1}'), ("header NUL bytes", b"\x00" * 16),
        ("header BOM", "\ufeff" + text), ("metadata not strings", text.replace(
            '"__metadata__": {', '"__metadata__": {"n": 1, ', 1)),
        ("metadata a list", text.replace('"__metadata__": {', '"__metadata__": [{', 1)
         .replace("}, ", "}], ", 1)),
        ("tensor name lone surrogate", text.replace('"dense/kernel"', '"dense/\\ud800"', 1)),
        ("entry not an object", text.replace(json.dumps({"dense/kernel": kernel})[1:-1],
                                             '"dense/kernel": [1, 2]', 1)),
    ]
    for label, h in others:
        yield label, {name: _st_header(h, data)}
    yield "header without padding", {name: _st_header(text.rstrip(), data, pad=False)}


_DELETE = object()


def _json_structure(raw: bytes, start: int, end: int) -> list[int]:
    """Positions of JSON punctuation and padding outside string literals (a flipped bit there
    breaks the syntax; inside a name it would only rename a tensor)."""
    out, in_string, escaped = [], False, False
    for pos in range(start, end):
        c = raw[pos]
        if in_string:
            if escaped:
                escaped = False
            elif c == 0x5C:
                escaped = True
            elif c == 0x22:
                in_string = False
                out.append(pos)
        elif c == 0x22:
            in_string = True
            out.append(pos)
        elif chr(c) in "{}[]:, ":
            out.append(pos)
    return out


class _Zip:
    """Offsets of a zip file's structures (local headers, central directory, end record)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.eocd = raw.rfind(b"PK\x05\x06")
        self.cd_size, self.cd_offset = struct.unpack_from("<II", raw, self.eocd + 12)
        self.central: list[int] = []
        self.local: list[int] = []
        self.data: list[tuple[int, int]] = []
        pos = self.cd_offset
        while raw[pos:pos + 4] == b"PK\x01\x02":
            self.central.append(pos)
            csize, _, nlen, xlen, clen = struct.unpack_from("<IIHHH", raw, pos + 20)
            (loc,) = struct.unpack_from("<I", raw, pos + 42)
            self.local.append(loc)
            lnlen, lxlen = struct.unpack_from("<HH", raw, loc + 26)
            start = loc + 30 + lnlen + lxlen
            self.data.append((start, start + csize))
            pos += 46 + nlen + xlen + clen


def _rezip(raw: bytes, change: Callable[[str, bytes], bytes | None]) -> bytes:
    """The archive rebuilt with valid sizes and CRCs after ``change(name, content)`` (None
    keeps the member as it is)."""
    src = zipfile.ZipFile(io.BytesIO(raw))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            content = src.read(info)
            new = change(info.filename, content)
            dst.writestr(info, content if new is None else new, compress_type=info.compress_type)
    return out.getvalue()


def _npy_header_edit(content: bytes, fn: Callable[[str], str]) -> bytes:
    """An .npy with its header text changed by ``fn`` (header length updated)."""
    n = struct.unpack_from("<H", content, 8)[0]
    text = fn(content[10:10 + n].decode("latin1"))
    return content[:8] + struct.pack("<H", len(text)) + text.encode("latin1") + content[10 + n:]


NPY_HEADER_EDITS: list[tuple[str, Callable[[str], str], bool]] = [
    ("descr <f8", lambda t: t.replace("'<f4'", "'<f8'"), False),
    ("descr <f2", lambda t: t.replace("'<f4'", "'<f2'"), False),
    ("descr pickled objects", lambda t: t.replace("'<f4'", "'|O'"), False),
    ("descr garbage", lambda t: t.replace("'<f4'", "'<q9'"), False),
    ("descr big-endian", lambda t: t.replace("'<f4'", "'>f4'"), True),
    ("fortran order", lambda t: t.replace("False", "True"), True),
    ("shape huge", lambda t: re.sub(r"'shape': \([^)]*\)", f"'shape': ({2**62}, {2**62})", t),
     False),
    ("shape overflows int64", lambda t: re.sub(r"'shape': \([^)]*\)",
                                               f"'shape': ({2**61}, {2**61}, 16)", t), False),
    ("shape negative", lambda t: re.sub(r"'shape': \(", "'shape': (-1, ", t), False),
    ("shape rank 70", lambda t: re.sub(r"'shape': \(", "'shape': (" + "1, " * 68, t), False),
    ("shape a string", lambda t: re.sub(r"'shape': \([^)]*\)", "'shape': 'x'", t), False),
    ("shape nested", lambda t: re.sub(r"'shape': \(([^)]*)\)", r"'shape': ((\1),)", t), False),
    ("not a dict", lambda t: "[1, 2, 3]\n", False),
    ("a call", lambda t: "__import__('os').system('true')\n", False),
    ("deeply nested", lambda t: "(" * 5000 + ")" * 5000 + "\n", False),
    ("key missing", lambda t: t.replace("'fortran_order'", "'fortran'"), False),
]


def _npy_mutants(o: Original, rng: random.Random) -> Gen:
    name = o.target
    raw = o.files()[name]
    (n,) = struct.unpack_from("<H", raw, 8)
    end = 10 + n
    yield from _truncations(name, raw, [0, 6, 8, 10, 10 + n // 2, end, end + 40, len(raw)])
    for pos, label in [(0, "magic"), (3, "magic"), (6, "major version"), (7, "minor version")]:
        yield f"flip {label}", {name: flip(raw, pos, 1)}
    yield "version 2 (4-byte length)", {name: put(raw, 6, b"\x02")}
    yield "version 9", {name: put(raw, 6, b"\x09")}
    for value in (0, 1, n - 1, n + 1, n + 16, 0xFFFF):
        yield f"header length {value}", {name: put_int(raw, 8, "<H", value)}
    for _ in range(6):
        pos = rng.randrange(10, end)
        yield f"flip header byte {pos}", {name: flip(raw, pos, rng.randrange(8))}
    for label, fn, may in NPY_HEADER_EDITS:
        extra = {"may_differ": True} if may else {}
        yield f"header {label}", {name: _npy_header_edit(raw, fn)}, extra
    yield "trailing bytes", {name: raw + b"\x00" * 8}


def _npz_mutants(o: Original, rng: random.Random) -> Gen:
    name = o.target
    raw = o.files()[name]
    z = _Zip(raw)
    stored = o.key == "npz"
    bounds = [0, 4, 30, z.cd_offset, z.eocd, z.eocd + 20, len(raw) - 1]
    for loc, (start, stop) in zip(z.local[:3], z.data[:3], strict=False):
        bounds += [loc, start, start + 10, start + 64, stop]
    bounds += z.central[1:3]
    yield from _truncations(name, raw, bounds)

    members = list(zip(z.local, z.central, strict=True))
    for i in (0, 3):  # a bfloat16 member (side entry) and the byte strings
        loc, cen = members[i]
        for label, pos, fmt, value in [
            ("local signature", loc, "<I", 0x04034B51),
            ("local flags: encrypted", loc + 6, "<H", 1),
            ("local method 8" if stored else "local method 0", loc + 8, "<H", 8 if stored else 0),
            ("local method 99", loc + 8, "<H", 99),
            ("local crc", loc + 14, "<I", 0x12345678),
            ("local sizes 0xFFFFFFFF", loc + 18, "<II", None),
            ("local name length 0xFFFF", loc + 26, "<H", 0xFFFF),
            ("local name length +1", loc + 26, "<H", None),
            ("local extra length 0xFFFF", loc + 28, "<H", 0xFFFF),
            ("local extra length 4", loc + 28, "<H", 4),
            ("central signature", cen, "<I", 0x02014B51),
            ("central flags: encrypted", cen + 8, "<H", 1),
            ("central flags: UTF-8 names", cen + 8, "<H", 0x800),
            ("central method 99", cen + 10, "<H", 99),
            ("central method 8" if stored else "central method 0", cen + 10, "<H",
             8 if stored else 0),
            ("central crc", cen + 16, "<I", 0x12345678),
            ("central compressed size 0xFFFFFFFF", cen + 20, "<I", 0xFFFFFFFF),
            ("central compressed size +1", cen + 20, "<I", None),
            ("central size 0xFFFFFFFF", cen + 24, "<I", 0xFFFFFFFF),
            ("central size +7", cen + 24, "<I", None),
            ("central name length 0xFFFF", cen + 28, "<H", 0xFFFF),
            ("central extra length 0xFFFF", cen + 30, "<H", 0xFFFF),
            ("central comment length 0xFFFF", cen + 32, "<H", 0xFFFF),
            ("central local offset huge", cen + 42, "<I", 0xFFFFFFF0),
            ("central local offset +1", cen + 42, "<I", None),
            ("central local offset of the next", cen + 42, "<I", None),
        ]:
            if value is None:
                if fmt == "<II":
                    new = put(raw, pos, struct.pack("<II", 0xFFFFFFFF, 0xFFFFFFFF))
                elif "next" in label:
                    new = put_int(raw, pos, fmt, members[i + 1][0])
                else:
                    (old,) = struct.unpack_from(fmt, raw, pos)
                    bump = 7 if "+7" in label else 1
                    new = put_int(raw, pos, fmt, old + bump)
            else:
                new = put_int(raw, pos, fmt, value)
            yield f"member {i}: {label}", {name: new}
        yield f"member {i}: name ends .npz", {
            name: put(raw, cen + 46 + struct.unpack_from("<H", raw, cen + 28)[0] - 1, b"z")}
    e = z.eocd
    for label, pos, fmt, value in [
        ("end signature", e, "<I", 0x06054B51), ("entries 0", e + 8, "<H", 0),
        ("entries +1", e + 8, "<HH", None), ("entries 0xFFFF", e + 10, "<H", 0xFFFF),
        ("directory size 0xFFFFFFFF", e + 12, "<I", 0xFFFFFFFF),
        ("directory size +1", e + 12, "<I", z.cd_size + 1),
        ("directory offset 0xFFFFFFFF", e + 16, "<I", 0xFFFFFFFF),
        ("directory offset +1", e + 16, "<I", z.cd_offset + 1),
        ("directory offset -1", e + 16, "<I", z.cd_offset - 1),
        ("comment length 0xFFFF", e + 20, "<H", 0xFFFF),
    ]:
        if value is None:
            (a, b) = struct.unpack_from("<HH", raw, pos)
            new = put(raw, pos, struct.pack("<HH", a + 1, b + 1))
        else:
            new = put_int(raw, pos, fmt, value)
        yield f"end record: {label}", {name: new}
    if not stored:
        for _ in range(6):
            i = rng.randrange(len(z.data))
            start, stop = z.data[i]
            pos = rng.randrange(start, stop)
            yield f"flip deflated byte {pos}", {name: flip(raw, pos, rng.randrange(8))}
        return
    # The .npy inside a stored member: header flips the zip CRC catches, and header edits with
    # the CRC recomputed, which the .npy checks must catch.
    member = "dense/kernel.npy"
    i = [zi.filename for zi in zipfile.ZipFile(io.BytesIO(raw)).infolist()].index(member)
    start = z.data[i][0]
    yield "member npy: flip byte order (CRC not updated)", {
        name: put(raw, start + raw[start:start + 128].index(b"'<f4'") + 1, b">")}
    yield "member npy: header length 0xFFFF", {name: put_int(raw, start + 8, "<H", 0xFFFF)}
    yield "member npy: flip magic", {name: flip(raw, start + 1, 0)}
    for label, fn, may in NPY_HEADER_EDITS[:12]:
        yield f"member npy (CRC valid): {label}", {name: _rezip(
            raw, lambda n, c, fn=fn: _npy_header_edit(c, fn) if n == member else None)}, \
            ({"may_differ": True} if may else {})
    side = "__converter__.json"
    for label, doc in [
        ("not JSON", b"{nope"), ("a list", b"[]"), ("tensors a list", b'{"tensors": [1]}'),
        ("entry a string", b'{"tensors": {"dtypes/bfloat16": "x"}}'),
        ("dtype unknown", b'{"tensors": {"dtypes/bfloat16": {"dtype": "bfloat17"}}}'),
        ("dtype float64", b'{"tensors": {"dtypes/bfloat16": {"dtype": "float64"}}}'),
        ("dtype a number", b'{"tensors": {"dtypes/bfloat16": {"dtype": 5}}}'),
        ("string shape huge", b'{"tensors": {"dtypes/string": {"dtype": "string", '
                              b'"shape": [4611686018427387904, 4]}}}'),
        ("string shape negative", b'{"tensors": {"dtypes/string": {"dtype": "string", '
                                  b'"shape": [-3, 4]}}}'),
        ("string shape missing", b'{"tensors": {"dtypes/string": {"dtype": "string"}}}'),
        ("metadata a list", b'{"metadata": [1], "tensors": {}}'),
        ("nested 100000 deep", b"[" * 100_000 + b"]" * 100_000),
    ]:
        yield f"side member {label}", {name: _rezip(
            raw, lambda n, c, doc=doc: doc if n == side else None)}


def _npydir_mutants(o: Original, rng: random.Random) -> Gen:
    files = o.files()
    index_name = "m/converter-index.json"
    index = json.loads(files[index_name])
    entries = index["tensors"]

    def with_index(label: str, doc: Any) -> tuple[str, dict]:
        raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return f"index {label}", {index_name: raw}

    def with_entry(label: str, i: int, **change: Any) -> tuple[str, dict]:
        new = [dict(e) for e in entries]
        new[i].update(change)
        return with_index(label, {**index, "tensors": new})

    bf = next(i for i, e in enumerate(entries) if e.get("dtype") == "bfloat16")
    yield from _truncations(index_name, files[index_name], [0, 1, len(files[index_name]) // 2],
                            around=0)
    yield with_index("a list", [])
    yield with_index("tensors a dict", {**index, "tensors": {"a": 1}})
    yield with_index("tensors a string", {**index, "tensors": "abc"})
    yield with_index("metadata a list", {**index, "metadata": [1]})
    yield with_index("entry a number", {**index, "tensors": [5]})
    yield with_index("nested 100000 deep", b"[" * 100_000 + b"]" * 100_000)
    yield with_index("not UTF-8", b'{"tensors": [], "\xff": 1}')
    yield with_entry("file outside the directory", 0, file="../outside.npy")
    yield with_entry("file absolute", 0, file="/etc/hostname")
    yield with_entry("file missing", 0, file="nope.npy")
    yield with_entry("file a directory", 0, file="dense")
    yield with_entry("file a number", 0, file=5)
    yield with_entry("name a number", 0, name=5)
    yield with_entry("name twice", 1, name=entries[0]["name"])
    yield with_entry("dtype unknown", bf, dtype="bfloat17")
    yield with_entry("dtype float64", bf, dtype="float64")
    yield with_entry("dtype string, no shape", bf, dtype="string")
    yield with_entry("dtype string, shape huge", bf, dtype="string", shape=[2**62, 2**62])
    yield with_entry("dtype string, shape negative", bf, dtype="string", shape=[-1])
    kernel = "m/" + next(e["file"] for e in entries if e["name"] == "dense/kernel")
    raw = files[kernel]
    (n,) = struct.unpack_from("<H", raw, 8)
    yield from _truncations(kernel, raw, [0, 10, 10 + n, len(raw)], around=0)
    yield "dense/kernel: file missing", {kernel: None}
    for label, fn, _ in NPY_HEADER_EDITS[:4] + NPY_HEADER_EDITS[6:10]:
        yield f"dense/kernel: header {label}", {kernel: _npy_header_edit(raw, fn)}
    yield "dense/kernel: header length 0xFFFF", {kernel: put_int(raw, 8, "<H", 0xFFFF)}


def _hdf5_mutants(o: Original, rng: random.Random) -> Gen:
    import h5py

    name = o.target
    raw = o.files()[name]
    data_spans: list[tuple[int, int]] = []
    headers: list[int] = []
    with h5py.File(o.dir / name, "r") as f:
        headers.append(h5py.h5o.get_info(f.id).addr)

        def visit(_: str, obj: Any) -> None:
            headers.append(h5py.h5o.get_info(obj.id).addr)
            if isinstance(obj, h5py.Dataset):
                offset = obj.id.get_offset()
                if offset is not None and obj.id.get_storage_size():
                    data_spans.append((offset, offset + obj.id.get_storage_size()))

        f.visititems(visit)
    sigs = sorted(m.start() for m in re.finditer(rb"TREE|HEAP|SNOD|GCOL|OHDR", raw))
    bounds = [0, 8, 24, 56, 96, len(raw) // 2, len(raw) - 1]
    bounds += [s for s, _ in data_spans[:3]] + [e for _, e in data_spans[:3]]
    bounds += sigs[:6] + headers[:4]
    yield from _truncations(name, raw, bounds, around=0)
    for pos, label in [(0, "signature"), (7, "signature"), (8, "superblock version"),
                       (13, "size of offsets"), (14, "size of lengths"), (16, "leaf K"),
                       (18, "internal K")]:
        yield f"flip {label}", {name: flip(raw, pos, 2)}
    for label, pos in [("base address", 24), ("end-of-file address", 40),
                       ("root object header address", 64)]:
        yield f"superblock {label} huge", {name: put_int(raw, pos, "<Q", 2**62)}
        yield f"superblock {label} small", {name: put_int(raw, pos, "<Q", 16)}
    yield "superblock end-of-file address truncated", {name: put_int(raw, 40, "<Q", len(raw) // 2)}
    for pos in sigs[:12]:
        kind = raw[pos:pos + 4].decode()
        yield f"flip {kind} signature at {pos}", {name: flip(raw, pos + 1, 1)}
        yield f"{kind} at {pos}: next field huge", {name: put(raw, pos + 8, b"\xff" * 8)}
    for pos in [m.start() for m in re.finditer(b"GCOL", raw)][:2]:
        # libhdf5 loops forever on a zero-length object here (the reader checks heaps first).
        yield f"global heap at {pos}: object of length 0", {
            name: put(put(raw, pos + 16, b"\x00\x00"), pos + 24, bytes(8))}
        yield f"global heap at {pos}: object length huge", {
            name: put(raw, pos + 24, struct.pack("<Q", 2**62))}
        yield f"global heap at {pos}: collection size 16", {
            name: put(raw, pos + 8, struct.pack("<Q", 16))}
    for addr in headers[:10]:
        for _ in range(2):
            pos = addr + rng.randrange(0, 48)
            yield f"flip object header byte {pos}", {name: flip(raw, pos, rng.randrange(8))}


GENERATORS: dict[str, Callable[..., Gen]] = {
    "tf": _tf_mutants, "tf2": _tf2_mutants, "tf-partitioned": _partitioned_mutants,
    "safetensors": _safetensors_mutants, "npz": _npz_mutants, "npz-deflate": _npz_mutants,
    "npy": _npy_mutants, "npydir": _npydir_mutants, "hdf5": _hdf5_mutants,
    **corpus_graphs.GENERATORS,
}


def generate(root: Path) -> tuple[dict[str, Original], list[Mutant]]:
    """Write the originals and every mutant (each a full copy of its original's directory with
    the change applied) under ``root``."""
    originals = build_originals(root / "originals")
    helpers = root / "helpers"
    alt_dir, small_dir = helpers / "alt", helpers / "small"
    alt_dir.mkdir(parents=True)
    small_dir.mkdir(parents=True)
    converter.write(_other_values(TF_DATA), alt_dir / "m.ckpt", state_file=False)
    converter.write({"dense/kernel": TF_DATA["dense/kernel"]}, small_dir / "m.ckpt",
                    state_file=False)
    alt = {p.name: p.read_bytes() for p in alt_dir.iterdir()}
    small = {p.name: p.read_bytes() for p in small_dir.iterdir()}
    mutants: list[Mutant] = []
    for key, o in originals.items():
        rng = random.Random(f"{SEED}/{key}")
        gen = GENERATORS[key]
        items = gen(o, rng, alt, small) if key == "tf" else (
            gen(o) if key == "tf-partitioned" else gen(o, rng))
        for i, item in enumerate(items):
            label, changes = item[0], item[1]
            extra = item[2] if len(item) > 2 else {}
            m = Mutant(f"{key}/{i:03d}", key, o.format, label, changes,
                       may_differ=extra.get("may_differ", False),
                       ignore=list(extra.get("ignore", [])))
            d = root / "mutants" / key / f"{i:03d}"
            shutil.copytree(o.dir, d)
            for rel, content in changes.items():
                if content is None:
                    (d / rel).unlink()
                else:
                    (d / rel).write_bytes(content)
            m.dir, m.target = str(d), str(d / o.target)
            mutants.append(m)
    return originals, mutants


def digest(mutants: list[Mutant]) -> str:
    """A fingerprint of the corpus (labels and bytes), to show it is deterministic."""
    import hashlib

    h = hashlib.sha256()
    for m in mutants:
        h.update(m.id.encode() + m.label.encode())
        for rel, content in sorted(m.changes.items()):
            h.update(rel.encode() + (hashlib.sha256(content).digest() if content is not None
                                     else b"<deleted>"))
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# The worker: every reader path on every mutant of one format


class MutantTimeout(BaseException):
    """Raised by the alarm; a BaseException so that no reader's ``except Exception`` eats it."""


def _values_equal(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if b.dtype.hasobject:
        return [bytes(x) for x in a.reshape(-1)] == [bytes(x) for x in b.reshape(-1)]
    return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def _oracle(m: Mutant) -> dict[str, np.ndarray]:
    """What an independent reader finds in the file (its raw stored arrays by name)."""
    path = Path(m.target)
    if m.format == "npy":
        return {path.stem: np.load(path, allow_pickle=False)}
    if m.format == "npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if m.format == "safetensors":
        import safetensors.numpy

        return safetensors.numpy.load_file(path)
    if m.format == "hdf5":
        import h5py

        out = {}
        with h5py.File(path, "r") as f:
            def visit(hpath: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset):
                    name = obj.attrs.get("name", hpath)
                    out[name.decode() if isinstance(name, bytes) else str(name)] = obj[()]
            f.visititems(visit)
        return out
    if m.format == "graphdef":
        return corpus_graphs.graphdef_oracle(path)
    raise AssertionError(f"no independent reader for {m.format}")


def _same_raw(ours: np.ndarray, theirs: np.ndarray) -> bool:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    if ours.shape != theirs.shape or ours.dtype.itemsize != theirs.dtype.itemsize:
        return False
    if ours.dtype.hasobject or theirs.dtype.hasobject:
        return ours.dtype.hasobject and theirs.dtype.hasobject and \
            [bytes(x) for x in ours.reshape(-1)] == [bytes(x) for x in theirs.reshape(-1)]
    return np.array_equal(ours, theirs.astype(ours.dtype)) or \
        np.ascontiguousarray(ours).tobytes() == np.ascontiguousarray(theirs).tobytes()


def check_mutant(m: Mutant, expected: dict[str, np.ndarray]) -> dict[str, Any]:
    """Inspect, read every tensor and verify; classify the outcome.

    ``error``: a ConverterError (at open or for some tensor) and every tensor that did read is
    the original; ``equal``: everything read back as the original; ``changed``: a well-formed
    file with other contents (allowed only for ``may_differ`` mutants, confirmed by an
    independent reader); ``other``: anything else, with the problems listed.
    """
    problems: list[str] = []
    messages: list[str] = []
    values: dict[str, np.ndarray] = {}
    tensor_errors: dict[str, str] = {}
    open_error = None

    def unexpected(step: str, exc: BaseException) -> None:
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
        problems.append(f"{step}: {type(exc).__name__}: {str(exc)[:200]}{where}")

    try:
        ckpt = converter.read(m.target, format=m.format)
    except converter.ConverterError as exc:
        open_error = str(exc)
        messages.append(open_error)
        ckpt = None
    except Exception as exc:
        unexpected("read", exc)
        ckpt = None
    if ckpt is not None:
        try:
            listing = [(n, t.dtype, t.shape, t.kind, t.nbytes) for n, t in ckpt.items()]
            for name, *_ in listing:
                try:
                    value = ckpt[name].read()
                    values[name] = np.array(value, copy=True)
                except converter.ConverterError as exc:
                    tensor_errors[name] = str(exc)
                    messages.append(str(exc))
                except Exception as exc:
                    unexpected(f"read {name!r}", exc)
        except Exception as exc:
            unexpected("inspect", exc)
        finally:
            ckpt.close()
    try:  # the format found by sniffing must give the same answer (or a clean error)
        detected = converter.read(m.target)
        names = set(detected)
        detected.close()
        if ckpt is not None and not problems and names != set(values) | set(tensor_errors):
            problems.append("auto-detected read lists other tensors")
    except converter.ConverterError as exc:
        messages.append(str(exc))
    except Exception as exc:
        unexpected("read (format detected)", exc)
    report = None
    try:
        report = converter.verify(m.target, format=m.format)
        if report.error:
            messages.append(report.error)
        messages.extend(t.error for t in report.bad if t.error)
    except Exception as exc:
        unexpected("verify", exc)

    for msg in messages:
        if "\n" in msg:
            problems.append(f"message spans lines: {msg[:200]!r}")
        if m.dir not in msg:
            problems.append(f"message does not name the file: {msg[:200]!r}")

    compare = {k: v for k, v in expected.items() if k not in m.ignore}
    differ = [] if m.built else sorted(
        k for k in set(compare) | set(values) - set(m.ignore)
        if k not in tensor_errors and (k not in values or k not in compare
                                       or not _values_equal(values[k], compare[k])))
    failed = open_error is not None or bool(tensor_errors)
    if failed:
        outcome = "error"
        wrong = [k for k in differ if k in values]
        if wrong and not m.may_differ:
            problems.append(f"read without error but differ from the original: {wrong[:5]}")
    elif not differ:
        outcome = "equal"
    else:
        outcome = "changed"
        if not m.may_differ:
            problems.append(f"read without error but differ from the original: {differ[:5]}")
    if outcome != "equal" and m.may_differ and not problems and values:
        try:
            theirs = _oracle(m)
            for k in differ:
                if k in values and not _same_raw(values[k], theirs.get(k)):
                    problems.append(f"{k!r}: an independent reader reads other values")
        except Exception as exc:
            if outcome == "changed":
                problems.append(f"accepted, but an independent reader refuses it: "
                                f"{type(exc).__name__}: {str(exc)[:120]}")
    if report is not None:
        if failed and report.ok:
            problems.append("verify reports ok, but reading failed")
        if not failed and not report.ok:
            problems.append(f"verify reports bad, but every tensor read: "
                            f"{(report.error or report.bad[0].error or '')[:160]}")
        if outcome == "changed" and report.ok and not m.may_differ:
            problems.append("verify reports ok for changed data")
    if problems:
        outcome = "other"
    return {"id": m.id, "outcome": outcome, "problems": problems,
            "error": open_error or next(iter(tensor_errors.values()), None)}


def check_graph_mutant(m: Mutant, expected: dict[str, str]) -> dict[str, Any]:
    """A SavedModel's graph or a ``.meta``: every reader path gives the original's answer or a
    clean one-line ConverterError naming the file; other answers only where the damage can
    make a valid message (``may_differ``)."""
    problems: list[str] = []
    error = None
    try:
        facts = corpus_graphs.graph_facts(m.format, Path(m.target))
    except converter.ConverterError as exc:
        error, facts = str(exc), None
        if "\n" in error:
            problems.append(f"message spans lines: {error[:200]!r}")
        if m.dir not in error:
            problems.append(f"message does not name the file: {error[:200]!r}")
    except Exception as exc:
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
        problems.append(f"{type(exc).__name__}: {str(exc)[:200]}{where}")
        facts = None
    if error is not None:
        outcome = "error"
    elif facts == expected[FACTS].replace(expected_dir(m), m.dir):
        outcome = "equal"
    else:
        outcome = "changed"
        if facts is not None and not m.may_differ:
            problems.append("read without error but differs from the original")
    if problems:
        outcome = "other"
    return {"id": m.id, "outcome": outcome, "problems": problems, "error": error}


def expected_dir(m: Mutant) -> str:
    """Where the original of ``m`` was (its facts name its files)."""
    return str(Path(m.dir).parent.parent.parent / "originals" / m.original)


def _cap_memory() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = MEMORY_CAP if hard == resource.RLIM_INFINITY else min(MEMORY_CAP, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _selftest(m: Mutant) -> dict[str, Any]:
    """Misbehave on purpose, so that a test can show the harness notices and names the mutant."""
    action = m.label.split(":", 1)[1]
    if action == "crash":
        os.abort()
    elif action == "hang":
        while True:
            pass
    elif action == "hang-in-c":  # the alarm cannot interrupt it: the parent must kill us
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(3600)
    elif action == "memory":
        bytearray(MEMORY_CAP)
    return {"id": m.id, "outcome": "equal", "problems": [], "error": None}


def _peak_mib() -> int:
    """This process's own peak RSS: VmHWM, since ru_maxrss starts at the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) >> 10
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10


def worker(manifest: Path) -> None:
    """Run the mutants listed in ``manifest``; print ``{"start": id}`` before each and its result
    after, one JSON object a line, so that the parent can tell which mutant a crash belongs to."""
    spec = json.loads(manifest.read_text())
    import h5py  # noqa: F401  (imported before the cap, as every format module)

    import converter.formats.graphdef  # noqa: F401
    import converter.formats.hdf5  # noqa: F401
    import converter.formats.npy  # noqa: F401
    import converter.formats.npz  # noqa: F401
    import converter.formats.safetensors  # noqa: F401
    import converter.formats.tfbundle  # noqa: F401
    import converter.graphs  # noqa: F401
    import converter.loaders.plan  # noqa: F401
    corpus_graphs._message_classes()  # the protobuf runtime, loaded before the cap too

    expected: dict[str, dict[str, np.ndarray]] = {}
    for key, path in spec["expected"].items():
        with open(path, "rb") as f:
            expected[key] = pickle.load(f)
    _cap_memory()

    def alarm(signum: int, frame: Any) -> None:
        raise MutantTimeout()

    signal.signal(signal.SIGALRM, alarm)
    out = sys.stdout
    for item in spec["mutants"]:
        m = Mutant(**item, changes={})
        out.write(json.dumps({"start": m.id}) + "\n")
        out.flush()
        start = time.perf_counter()
        try:
            signal.setitimer(signal.ITIMER_REAL, spec.get("alarm", ALARM))
            if m.label.startswith("selftest:"):
                result = _selftest(m)
            elif m.format in GRAPH_FORMATS:
                result = check_graph_mutant(m, expected[m.original])
            else:
                result = check_mutant(m, expected[m.original])
            signal.setitimer(signal.ITIMER_REAL, 0)
        except MutantTimeout:
            result = {"id": m.id, "outcome": "other", "error": None,
                      "problems": [f"hang: no answer within {spec.get('alarm', ALARM)} s"]}
        except MemoryError:
            signal.setitimer(signal.ITIMER_REAL, 0)
            result = {"id": m.id, "outcome": "other", "error": None,
                      "problems": ["MemoryError escaped (memory cap hit)"]}
        result["seconds"] = round(time.perf_counter() - start, 3)
        result["maxrss_mib"] = _peak_mib()
        out.write(json.dumps({"result": result}) + "\n")
        out.flush()


# ---------------------------------------------------------------------------------------------
# The parent: one worker per format, restarted after a crash


def _spec(m: Mutant) -> dict[str, Any]:
    spec = asdict(m)
    del spec["changes"]  # already on disk
    return spec


def _run_format(fmt: str, mutants: list[Mutant], expected: dict[str, str], workdir: Path,
                alarm: float = ALARM, grace: float = GRACE) -> dict[str, dict]:
    results: dict[str, dict] = {}
    remaining = list(mutants)
    attempt = 0
    while remaining:
        attempt += 1
        manifest = workdir / f"manifest-{fmt}-{attempt}.json"
        manifest.write_text(json.dumps({"expected": expected, "alarm": alarm,
                                        "mutants": [_spec(m) for m in remaining]}))
        errlog = workdir / f"stderr-{fmt}-{attempt}.txt"
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        with open(errlog, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "tests.corpus", "worker",
                                     str(manifest.resolve())], stdout=subprocess.PIPE,
                                    stderr=err, env=env, cwd=REPO)
            current, deadline, buf, hung = None, 0.0, b"", False
            fd = proc.stdout.fileno()  # type: ignore[union-attr]
            while True:
                wait = max(0.0, deadline - time.monotonic()) if current else 120.0
                ready, _, _ = select.select([fd], [], [], wait)
                if not ready:
                    proc.kill()
                    hung = True
                    break
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = json.loads(line)
                    if "start" in msg:
                        current = msg["start"]
                        deadline = time.monotonic() + alarm + grace
                    else:
                        results[msg["result"]["id"]] = msg["result"]
                        current = None
            proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
        if current is not None:
            tail = errlog.read_text(errors="replace").strip().splitlines()[-3:]
            rc = proc.returncode
            why = (f"hang: killed after {alarm + grace:.0f} s" if hung else
                   f"worker died ({signal.Signals(-rc).name})" if rc < 0 else
                   f"worker died (exit {rc})")
            results[current] = {"id": current, "outcome": "other", "error": None,
                                "problems": [f"{why}; stderr: {' | '.join(tail)}"]}
        elif proc.returncode != 0 or hung:
            raise RuntimeError(f"corpus worker for {fmt} failed (exit {proc.returncode}): "
                               f"{errlog.read_text(errors='replace')[-2000:]}")
        remaining = [m for m in remaining if m.id not in results]
    return results


def run(root: Path, originals: dict[str, Original], mutants: list[Mutant],
        jobs: int | None = None) -> dict[str, dict]:
    """Run every mutant, one worker per reader format (in parallel); results by mutant id."""
    expected_files = {}
    for key, o in originals.items():
        path = root / f"expected-{key}.pkl"
        with open(path, "wb") as f:
            pickle.dump(o.data, f)
        expected_files[key] = str(path)
    by_format: dict[str, list[Mutant]] = {}
    for m in mutants:
        by_format.setdefault(m.format, []).append(m)
    results: dict[str, dict] = {}
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
        futures = [pool.submit(_run_format, fmt, ms, expected_files, root)
                   for fmt, ms in by_format.items()]
        for fut in futures:
            results.update(fut.result())
    return results


def summary(mutants: list[Mutant], results: dict[str, dict]) -> str:
    rows: dict[str, dict[str, int]] = {}
    for m in mutants:
        row = rows.setdefault(m.original, {"mutants": 0, "error": 0, "equal": 0, "changed": 0,
                                           "other": 0})
        row["mutants"] += 1
        row[results.get(m.id, {"outcome": "other"})["outcome"]] += 1
    lines = [f"{'original':<16}{'mutants':>8}{'clean error':>12}{'equal':>7}"
             f"{'changed*':>9}{'other':>7}"]
    total = dict.fromkeys(("mutants", "error", "equal", "changed", "other"), 0)
    for key, row in rows.items():
        lines.append(f"{key:<16}{row['mutants']:>8}{row['error']:>12}{row['equal']:>7}"
                     f"{row['changed']:>9}{row['other']:>7}")
        for k in total:
            total[k] += row[k]
    lines.append(f"{'total':<16}{total['mutants']:>8}{total['error']:>12}{total['equal']:>7}"
                 f"{total['changed']:>9}{total['other']:>7}")
    lines.append("* changed: damage no reader can see (no checksum covers it), read the same "
                 "by an independent reader")
    return "\n".join(lines)


def failures(mutants: list[Mutant], results: dict[str, dict]) -> list[str]:
    out = []
    for m in mutants:
        r = results.get(m.id)
        if r is None or r["outcome"] == "other":
            problems = r["problems"] if r else ["no result"]
            out.append(f"{m.id} [{m.label}]: " + "; ".join(problems))
    return out


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "worker":
        worker(Path(argv[1]))
        return 0
    if argv and argv[0] == "run":
        keep = Path(argv[1]) if len(argv) > 1 else None
        root = keep or Path(tempfile.mkdtemp(prefix="corpus-"))
        if keep:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
        start = time.perf_counter()
        originals, mutants = generate(root)
        built = time.perf_counter()
        results = run(root, originals, mutants)
        print(summary(mutants, results))
        print(f"built in {built - start:.1f} s, ran in {time.perf_counter() - built:.1f} s; "
              f"corpus digest {digest(mutants)[:16]}")
        for line in failures(mutants, results):
            print(line)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
        return 1 if failures(mutants, results) else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
