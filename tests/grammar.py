"""A second corpus strategy: files built from each format's grammar with hostile values.

``corpus.py`` damages valid files (truncations, bit flips, fields rewritten in place). This module
builds files from scratch, structure by structure, where every part is well formed except the
values chosen for it from a table of hostile values: sizes, counts, offsets, ranks, dims and
dtype codes of 0, -1, 2**31, 2**32, 2**63, 2**64-1 or the file size ± 1; names that are empty,
hold NUL, ``..`` or ``/``, or run to a megabyte; structures nested thousands deep, shared or
cyclic; members or entries by the ten thousand. Most cases change one field of an otherwise
valid file; the ``pairs`` cases combine two hostile fields chosen by a seeded generator.

There is no original to compare with, so a case passes when every reader path (open, list, read
every tensor, verify, and the auto-detected open) ends in a clean one-line ConverterError naming
the file, or reads consistently (verify agrees with reading), within the worker's alarm and
memory cap. The cases run in ``corpus.py``'s workers (one per format, a 5 s alarm per case, a
1.5 GiB address-space cap), which also record each case's time and the worker's peak memory.

    python -m tests.grammar run [DIR]   build and run every case; print per-category outcomes,
                                        the slowest and the largest case of each reader
"""

from __future__ import annotations

import io
import json
import random
import shutil
import struct
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from converter import proto
from converter.crc32c import masked_crc
from converter.formats.tfbundle.slices import slice_key
from converter.formats.tfbundle.strings import write_strings
from tests import corpus
from tests.corpus import Mutant, raw_table

SEED = 20261202

# Hostile integers: boundaries of the integer widths readers use, and values near sizes.
HOSTILE_INTS = [0, 1, -1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1, 2**62, 2**63 - 1,
                2**63, 2**64 - 1]
HOSTILE_DIMS = [0, -1, -2, 2**31, 2**32, 2**61, 2**62, 2**63 - 1]
HOSTILE_SHAPES: list[list[int]] = [
    [2**61, 8], [2**32, 2**32], [0, 2**62], [0, 2**61, 2**61], [-1], [-1, -1], [2**63 - 1],
    [1] * 33, [1] * 65, [1] * 1000, [3, 0, 2**40],
]
HOSTILE_NAMES = ["", "\x00", "a\x00b", "..", "../up", "/abs", "a//b", "a/./b", "a/", "/",
                 "\\..\\up", "é/ß/名", "\ud800" * 0 + "x" * 100_000, "./x", "a\nb"]

# What one case is: (category, label, files) with files mapping a relative path to bytes, and
# the file the readers are pointed at.
Case = tuple[str, str, dict[str, bytes], str]


# ---------------------------------------------------------------------------------------------
# safetensors: u64 header length, a JSON header, the data


def _st(header: dict | str, data: bytes, n: int | None = None) -> bytes:
    text = (header if isinstance(header, str) else json.dumps(header)).encode(
        "utf-8", "surrogatepass")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text) if n is None else n % 2**64) + text + data


def _st_entry(dtype: object = "F32", shape: object = (2, 2), offsets: object = (0, 16)) -> dict:
    return {"dtype": dtype, "shape": list(shape) if isinstance(shape, tuple) else shape,
            "data_offsets": list(offsets) if isinstance(offsets, tuple) else offsets}


def safetensors_cases(rng: random.Random) -> Iterator[Case]:
    data = np.arange(4, dtype=np.float32).tobytes()
    target = "m.safetensors"

    def case(cat: str, label: str, raw: bytes) -> Case:
        return cat, label, {target: raw}, target

    good = {"w": _st_entry()}
    text = json.dumps(good)
    size = len(text) + (-len(text) % 8)
    for n in HOSTILE_INTS + [size - 1, size + 1, size + 8, size + len(data) + 1]:
        yield case("length", f"header length {n}", _st(good, data, n))
    for dtype in ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "U16", "U32",
                  "U64", "BOOL", "F8_E4M3", "F8_E5M2", "C64", "F4", "STR", "", "f32", "F32\x00",
                  1, None, ["F32"], {"F32": 1}, "F" * 10_000]:
        yield case("dtype", f"dtype {str(dtype)[:20]!r}", _st({"w": _st_entry(dtype)}, data))
    for shape in HOSTILE_SHAPES + [[], [0], [16], [4, 4], ["2", "2"], [2.0, 2.0], [True, 4],
                                   "x", None, {}, [[2], [2]]]:
        yield case("shape", f"shape {str(shape)[:40]}", _st({"w": _st_entry("F32", shape)},
                                                            data))
    for offsets in [(16, 0), (0, 2**64), (0, 2**63), (-1, 15), (0,), (0, 8, 16), "x",
                    (0.0, 16.0), (0, 17), (2**64 - 16, 2**64), (8, 24), None, []]:
        yield case("offsets", f"data_offsets {offsets}", _st({"w": _st_entry(offsets=offsets)},
                                                             data))
    # Several tensors: overlapping, shared, out of order, gaps.
    for label, spans in [("two share one span", [(0, 8), (0, 8)]),
                         ("overlapping", [(0, 12), (4, 16)]),
                         ("gap between", [(0, 4), (8, 16)]),
                         ("reversed order", [(8, 16), (0, 8)])]:
        header = {f"t{i}": _st_entry("F32", ((b - a) // 4,), (a, b)) for i, (a, b) in
                  enumerate(spans)}
        yield case("layout", label, _st(header, data))
    for name in HOSTILE_NAMES:
        yield case("names", f"name {name[:12]!r} ({len(name)} chars)",
                   _st({name: _st_entry()}, data))
    yield case("names", "duplicate key", _st(
        '{"w": ' + json.dumps(_st_entry()) + ', "w": ' + json.dumps(_st_entry()) + "}", data))
    for meta in [{"k": 1}, [], "x", {"k": {"n": 1}}, {"\x00": "v"}, {"k": "v" * 1_000_000},
                 None, {"": ""}, {"k": ["a"]}]:
        yield case("metadata", f"__metadata__ {str(meta)[:30]}",
                   _st({"__metadata__": meta, **good}, data))
    yield case("nesting", "value nested 100000 deep",
               _st('{"w": ' + "[" * 100_000 + "]" * 100_000 + "}", data))
    yield case("nesting", "header nested 5000 deep in metadata",
               _st('{"__metadata__": {"k": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}}", data))
    yield case("count", "20000 zero-size tensors",
               _st({f"t{i}": _st_entry("F32", (0,), (0, 0)) for i in range(20_000)}, b""))
    yield case("count", "20000 tensors sharing one span",
               _st({f"t{i}": _st_entry("F32", (4,), (0, 16)) for i in range(20_000)}, data))
    yield case("text", "header not UTF-8", struct.pack("<Q", 8) + b"{\xff\xfe}    " + data)
    yield case("text", "header a JSON list", _st("[1, 2, 3]", data))
    yield case("text", "lone surrogate in a name", _st(
        '{"\\ud800": ' + json.dumps(_st_entry()) + "}", data))
    for i in range(20):
        a, b = rng.choice(HOSTILE_SHAPES), rng.choice(HOSTILE_INTS)
        yield case("pairs", f"pair {i}: shape {a[:3]} offsets (0, {b})",
                   _st({"w": _st_entry(rng.choice(["F32", "BF16", "BOOL", "U8"]), a, (0, b))},
                       data))


# ---------------------------------------------------------------------------------------------
# npy: magic, version, header length, the header dict, the data


def _npy(header: str | bytes, data: bytes, version: tuple[int, int] = (1, 0),
         length: int | None = None) -> bytes:
    raw = header.encode("latin1") if isinstance(header, str) else header
    if version[0] == 1:
        head = struct.pack("<H", (len(raw) if length is None else length) % 2**16)
    else:
        head = struct.pack("<I", (len(raw) if length is None else length) % 2**32)
    return b"\x93NUMPY" + bytes(version) + head + raw + data


def _npy_dict(descr: object = "'<f4'", fortran: object = "False", shape: object = "(2, 2)"
              ) -> str:
    return f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}\n"


def npy_cases(rng: random.Random) -> Iterator[Case]:
    data = np.arange(4, dtype=np.float32).tobytes()
    target = "w.npy"

    def case(cat: str, label: str, raw: bytes) -> Case:
        return cat, label, {target: raw}, target

    for version in [(1, 0), (2, 0), (3, 0), (0, 0), (9, 9), (255, 255)]:
        yield case("version", f"version {version}", _npy(_npy_dict(), data, version))
    for n in [0, 1, 10, 2**16 - 1]:
        yield case("length", f"header length {n}", _npy(_npy_dict(), data, length=n))
    for n in [0, 2**31, 2**32 - 1]:
        yield case("length", f"v2 header length {n}", _npy(_npy_dict(), data, (2, 0), n))
    for descr in ["'<f4'", "'|O'", "'<U5'", "'|S3'", "'|V16'", "'<f16'", "'<c32'", "'<M8[s]'",
                  "'<m8[ns]'", "[('a', '<f4'), ('b', '<i4')]", "[('a', '<f4', (2**31,))]",
                  "'<f4' * 1", "'x'", "1", "None", "'>f4'", "'<i8'", "'|b1'", "'<U' + '9' * 30",
                  "'|V' + '9' * 20", "[]", "[('', '<f4')]"]:
        yield case("descr", f"descr {descr[:30]}", _npy(_npy_dict(descr), data))
    for shape in HOSTILE_SHAPES + [[], [0], [2, 2], [4, 1]]:
        text = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
        yield case("shape", f"shape {text[:40]}", _npy(_npy_dict(shape=text), data))
    for fortran in ["True", "1", "'x'", "None"]:
        yield case("fortran", f"fortran_order {fortran}", _npy(_npy_dict(fortran=fortran), data))
    for label, text in [("extra key", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2),"
                                      " 'x': 1}\n"),
                        ("key missing", "{'descr': '<f4', 'shape': (2, 2)}\n"),
                        ("a set", "{1, 2}\n"), ("a call", "exec('1')\n"),
                        ("nested 20000 deep", "(" * 20_000 + ")" * 20_000 + "\n"),
                        ("a huge int", "{'descr': '<f4', 'fortran_order': False, 'shape': ("
                                       + "9" * 5000 + ",)}\n"),
                        ("not latin-1 text", b"{'descr': '<f4'\xff}\n")]:
        yield case("header", label, _npy(text, data))
    for label, payload in [("short by one", data[:-1]), ("empty", b""), ("one extra", data + b"x"),
                           ("twice", data * 2)]:
        yield case("data", label, _npy(_npy_dict(), payload))
    for i in range(12):
        shape = rng.choice(HOSTILE_SHAPES)
        descr = rng.choice(["'<f4'", "'|b1'", "'<U5'", "'|V3'", "'<c16'"])
        text = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
        yield case("pairs", f"pair {i}: {descr} {text[:30]}",
                   _npy(_npy_dict(descr, shape=text), data))


# ---------------------------------------------------------------------------------------------
# npz: a zip archive of npy members (and our JSON side member)


def _npy_member(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _zip(members: list[tuple[str, bytes]], compress: int = zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w", compression=compress) as zf:
        warnings.simplefilter("ignore")  # duplicate member names are one of the cases
        for name, content in members:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = compress
            zf.writestr(info, content)
    return out.getvalue()


def _patch_central(raw: bytes, field: str, value: int) -> bytes:
    """Every central directory record's ``field`` (``csize``/``usize``/``offset``/``method``)
    set to ``value``, and the local headers' copies as well for the sizes and method."""
    z = corpus._Zip(raw)
    out = bytearray(raw)
    where = {"method": (10, "<H"), "csize": (20, "<I"), "usize": (24, "<I"),
             "offset": (42, "<I")}[field]
    for pos in z.central:
        struct.pack_into(where[1], out, pos + where[0], value % (2 ** (8 * struct.calcsize(
            where[1]))))
    if field != "offset":
        local = {"method": 8, "csize": 18, "usize": 22}[field]
        for pos in z.local:
            struct.pack_into(where[1], out, pos + local, value % (2 ** (8 * struct.calcsize(
                where[1]))))
    return bytes(out)


def npz_cases(rng: random.Random) -> Iterator[Case]:
    target = "m.npz"
    member = _npy_member(np.arange(4, dtype=np.float32))

    def case(cat: str, label: str, raw: bytes) -> Case:
        return cat, label, {target: raw}, target

    for name in HOSTILE_NAMES[:12] + ["a" * 300 + "/" + "b.npy", "a/" * 2000 + "x.npy",
                                      ".npy", "x", "x.NPY", "__converter__.json"]:
        member_name = name if name.endswith(".npy") or name in ("x", "__converter__.json") \
            else name + ".npy"
        yield case("names", f"member {member_name[:16]!r} ({len(member_name)} chars)",
                   _zip([(member_name, member)]))
    yield case("names", "duplicate member", _zip([("w.npy", member), ("w.npy", member)]))
    yield case("names", "member and directory of one name",
               _zip([("w.npy", member), ("w.npy/x.npy", member)]))
    yield case("count", "5000 tiny members",
               _zip([(f"t{i}.npy", _npy_member(np.zeros(0, np.int8))) for i in range(5000)]))
    plain = _zip([("w.npy", member)])
    for field, values in [("usize", [0, 1, 2**32 - 1, len(member) + 1]),
                          ("csize", [0, 1, 2**32 - 1, len(member) - 1]),
                          ("offset", [1, 2**31, 2**32 - 1]),
                          ("method", [1, 6, 12, 14, 93, 98, 99, 2**16 - 1])]:
        for v in values:
            yield case("directory", f"{field} {v}", _patch_central(plain, field, v))
    deflated = _zip([("w.npy", _npy(_npy_dict(shape="(1024, 1024)"),
                                     b"\x00" * 4 * 1024 * 1024))], zipfile.ZIP_DEFLATED)
    for v in [2**32 - 1, 1]:
        yield case("directory", f"deflated member declares {v} bytes",
                   _patch_central(deflated, "usize", v))
    big = _npy(_npy_dict(shape=f"({2**38},)"), b"")
    yield case("bomb", "deflated member declaring 1 TiB of data",
               _zip([("w.npy", big + b"\x00" * 100_000)], zipfile.ZIP_DEFLATED))
    for side in [b"{}", b"[]", b"null", b'{"dtypes": 1}', b'{"dtypes": {"w": "bfloat16"}}',
                 b'{"dtypes": {"w": {"x": 1}}}', b'{"dtypes": {"nope": "float32"}}',
                 b"[" * 100_000 + b"]" * 100_000, b'{"k": "' + b"v" * 2_000_000 + b'"}',
                 b"\xff\xfe", b'{"strings": {"w": [1]}}']:
        yield case("side", f"side member {side[:24]!r}",
                   _zip([("w.npy", member), ("__converter__.json", side)]))
    for label, content in [("not npy", b"hello"), ("empty member", b""),
                           ("npy with pickles", _npy(_npy_dict("'|O'"), b"\x80\x04N.")),
                           ("npy huge shape", _npy(_npy_dict(shape=f"({2**62},)"), b""))]:
        yield case("members", label, _zip([("w.npy", content)]))
    yield case("archive", "not a zip, npz suffix", b"PK\x03\x04" + b"\x00" * 100)
    yield case("archive", "empty archive", _zip([]))
    yield case("archive", "comment 65535 bytes", plain[:-2] + struct.pack("<H", 65535))
    for i in range(10):
        field = rng.choice(["usize", "csize"])
        v = rng.choice(HOSTILE_INTS)
        name = rng.choice(HOSTILE_NAMES[:8]) + ".npy"
        yield case("pairs", f"pair {i}: member {name[:10]!r} {field} {v}",
                   _patch_central(_zip([(name, member)]), field, v))


# ---------------------------------------------------------------------------------------------
# TF bundles: the index table (header entry, BundleEntryProtos, slices) and data shards


def _header(num_shards: int = 1, endianness: int = 0, producer: int = 1,
            min_consumer: int | None = None) -> bytes:
    version = [(1, producer)] + ([(2, min_consumer)] if min_consumer is not None else [])
    fields: list = [(1, num_shards)]
    if endianness:
        fields.append((2, endianness))
    fields.append((3, proto.encode(version)))
    return proto.encode(fields)


def _shape_proto(dims: list[int], unknown_rank: bool = False) -> bytes:
    fields = [(2, proto.encode([(1, d)])) for d in dims]
    if unknown_rank:
        fields.append((3, 1))
    return proto.encode(fields)


def _entry(dtype: int = 1, shape: bytes | None = None, shard: int = 0, offset: int = 0,
           size: int = 16, crc: int | None = None, slices: list[bytes] = (),
           data: bytes = b"") -> bytes:
    fields: list = [(1, dtype), (2, _shape_proto([2, 2]) if shape is None else shape)]
    if shard:
        fields.append((3, shard))
    if offset:
        fields.append((4, offset))
    if size:
        fields.append((5, size))
    fields.append((6, ("fixed32", masked_crc(data) if crc is None else crc)))
    fields += [(7, s) for s in slices]
    return proto.encode(fields)


def _bundle(rows: list[tuple[bytes, bytes]], data: bytes, shards: int = 1,
            header: bytes | None = None) -> dict[str, bytes]:
    rows = [(b"", _header(shards) if header is None else header)] + rows
    files = {"m.ckpt.index": raw_table(rows)}
    for i in range(max(1, min(shards, 4))):
        files[f"m.ckpt.data-{i:05d}-of-{shards:05d}"] = data if i == 0 else b""
    return files


def _strings_data(items: list[bytes]) -> tuple[bytes, int]:
    buf = io.BytesIO()
    size, crc = write_strings(buf, np.array(items + [b""], dtype=object)[:-1]
                               if items else np.array([], dtype=object), "s")
    return buf.getvalue(), crc


def tf_cases(rng: random.Random) -> Iterator[Case]:
    data = np.arange(4, dtype=np.float32).tobytes()
    target = "m.ckpt"

    def case(cat: str, label: str, files: dict[str, bytes]) -> Case:
        return cat, label, files, target

    good = lambda **kw: _bundle([(b"w", _entry(data=data, **kw))], data)  # noqa: E731
    for n in [0, 2, 2**31, 2**32, 2**63, 2**64 - 1]:
        yield case("header", f"num_shards {n}",
                   _bundle([(b"w", _entry(data=data))], data, n % 2**64 if n < 2**64 else n))
    yield case("header", "big endian", _bundle([(b"w", _entry(data=data))], data,
                                               header=_header(endianness=1)))
    yield case("header", "min_consumer 99", _bundle([(b"w", _entry(data=data))], data,
                                                    header=_header(min_consumer=99)))
    yield case("header", "header not a proto", _bundle([(b"w", _entry(data=data))], data,
                                                       header=b"\xff" * 9))
    for dtype in list(range(0, 31)) + [101, 119, 2**31, 2**32, 2**63]:
        yield case("dtype", f"dtype enum {dtype}", good(dtype=dtype))
    for dims in HOSTILE_SHAPES + [[], [4], [16], [2, 2]]:
        yield case("shape", f"shape {dims[:4]}{'…' if len(dims) > 4 else ''}",
                   good(shape=_shape_proto(dims)))
    yield case("shape", "unknown rank", good(shape=_shape_proto([], True)))
    yield case("shape", "shape not a proto", good(shape=b"\xff\xff"))
    for v in HOSTILE_INTS:
        yield case("span", f"offset {v}", good(offset=v % 2**64))
        yield case("span", f"size {v}", good(size=v % 2**64))
        yield case("span", f"shard_id {v}", good(shard=v % 2**64))
    for label, slices in [("one full slice", [proto.encode([(1, b"")] * 2)]),
                          ("20000 slices", [proto.encode([(1, proto.encode([(1, 0), (2, 1)]))])]
                           * 20_000),
                          ("slice start huge", [proto.encode([(1, proto.encode(
                              [(1, 2**62), (2, 2)]))] * 2)]),
                          ("slice length -2", [proto.encode([(1, proto.encode(
                              [(1, 0), (2, 2**64 - 2)]))] * 2)]),
                          ("slice rank 40", [proto.encode([(1, b"")] * 40)])]:
        yield case("slices", label, good(slices=slices))
    # A partitioned variable whose slice keys name parts that do not exist or overlap.
    part = proto.encode([(1, 1), (2, _shape_proto([4])),
                         (7, proto.encode([(1, proto.encode([(1, 0), (2, 2)]))])),
                         (7, proto.encode([(1, proto.encode([(1, 1), (2, 3)]))]))])
    rows = [(b"p", part)]
    for start, n in [(0, 2), (1, 3)]:
        rows.append((slice_key("p", [(start, n)]), _entry(shape=_shape_proto([n]),
                                                          size=4 * n, data=data[:4 * n])))
    yield case("slices", "overlapping partitions", _bundle(sorted(rows), data))
    many = proto.encode([(1, 1), (2, _shape_proto([16_000]))] + [
        (7, proto.encode([(1, proto.encode([(1, i), (2, 1)]))])) for i in range(16_000)])
    part_rows = [(b"p", many)] + [
        (slice_key("p", [(i, 1)]), _entry(shape=_shape_proto([1]), size=4, data=data[:4]))
        for i in range(16_000)]
    yield case("slices", "16000 partitions", _bundle(sorted(part_rows), data))
    for label, key in [("key not UTF-8", b"\xff\xfe"), ("key with NUL", b"a\x00b"),
                       ("key ..", b"../up"), ("key 100000 bytes", b"k" * 100_000)]:
        yield case("names", label, _bundle([(key, _entry(data=data))], data))
    yield case("names", "keys out of order", _bundle([(b"b", _entry(data=data)),
                                                      (b"a", _entry(data=data))], data))
    yield case("names", "duplicate key", _bundle([(b"a", _entry(data=data)),
                                                  (b"a", _entry(data=data))], data))
    yield case("count", "20000 zero-size entries", _bundle(
        [(b"t%06d" % i, _entry(shape=_shape_proto([0]), size=0)) for i in range(20_000)], b""))
    for label, items, count in [("20M empty strings declared", [b""] * 1000, 20_000_000),
                                ("string length 2**63", None, 1),
                                ("count matches, lengths overrun", [b"abc"], 1)]:
        if items is None:
            raw = proto.varint(2**63) + struct.pack("<I", 0) + b"x"
            crc = masked_crc(raw)
        else:
            raw, crc = _strings_data(items)
            if label.startswith("count matches"):
                raw = proto.varint(1000) + raw[1:]
                crc = masked_crc(raw)
        yield case("strings", label, _bundle([(b"s", _entry(
            dtype=7, shape=_shape_proto([count]), size=len(raw), crc=crc))], raw))
    for i in range(15):
        fields = {"shape": _shape_proto(rng.choice(HOSTILE_SHAPES)),
                  "dtype": rng.choice([1, 7, 10, 14, 19, 23]),
                  "size": rng.choice(HOSTILE_INTS) % 2**64}
        yield case("pairs", f"pair {i}: dtype {fields['dtype']} size {fields['size']}",
                   good(**fields))


# ---------------------------------------------------------------------------------------------
# TF2 object graphs: TrackableObjectGraph nodes, children, attributes, slot references


def _graph(nodes: list[dict]) -> bytes:
    return proto.encode(
        (1, proto.encode(
            [(1, proto.encode([(1, c), (2, name)])) for name, c in n.get("children", [])]
            + [(2, proto.encode([(1, a), (2, b), (3, k)])) for a, b, k in n.get("attrs", [])]
            + [(3, proto.encode([(1, o), (2, s), (3, v)])) for o, s, v in n.get("slots", [])]))
        for n in nodes)


def _tf2_bundle(graph: bytes, keys: list[str]) -> dict[str, bytes]:
    data = np.arange(4, dtype=np.float32).tobytes()
    graph_raw, graph_crc = _strings_data([graph])
    rows = [(b"_CHECKPOINTABLE_OBJECT_GRAPH", _entry(
        dtype=7, shape=_shape_proto([]), offset=0, size=len(graph_raw), crc=graph_crc))]
    for k in keys:
        rows.append((k.encode(), _entry(offset=len(graph_raw), data=data)))
    return _bundle(sorted(rows), graph_raw + data)


def tf2_cases(rng: random.Random) -> Iterator[Case]:
    target = "m.ckpt"
    key = "model/w/.ATTRIBUTES/VARIABLE_VALUE"
    attr = ("VARIABLE_VALUE", "w", key)

    def case(cat: str, label: str, nodes: list[dict] | bytes, keys: list[str] = (key,)
             ) -> Case:
        graph = nodes if isinstance(nodes, bytes) else _graph(nodes)
        return cat, label, _tf2_bundle(graph, list(keys)), target

    yield case("refs", "child id out of range", [{"children": [("model", 5)]}])
    yield case("refs", "child id 2**63", [{"children": [("model", 2**63)]}])
    yield case("refs", "child id negative", [{"children": [("model", 2**64 - 1)]}])
    yield case("refs", "slot refers to missing nodes",
               [{"children": [("model", 1)], "slots": [(9, "m", 10)]}, {"attrs": [attr]}])
    yield case("cycles", "node is its own child",
               [{"children": [("model", 1)]}, {"children": [("self", 1)], "attrs": [attr]}])
    yield case("cycles", "two-node cycle",
               [{"children": [("model", 1)]}, {"children": [("b", 2)], "attrs": [attr]},
                {"children": [("a", 1)]}])
    chain = [{"children": [("n", i + 1)]} for i in range(20_000)] + [{"attrs": [attr]}]
    yield case("depth", "chain 20000 deep", chain)
    # A ladder: every level has two edges to the next node, so paths double with each level
    # (2**60 of them) while the graph has 61 nodes.
    ladder = [{"children": [("a", i + 1), ("b", i + 1)]} for i in range(60)] + [
        {"attrs": [attr]}]
    yield case("sharing", "ladder with 2**60 paths", ladder)
    wide = [{"children": [(f"c{i}", 1) for i in range(50_000)]}, {"attrs": [attr]}]
    yield case("sharing", "50000 edges to one node", wide)
    for label, name in [("child name 1 MB", "n" * 1_000_000), ("child name empty", ""),
                        ("child name with /", "a/b"), ("child name NUL", "\x00"),
                        ("child name ..", "..")]:
        yield case("names", label, [{"children": [(name, 1)]}, {"attrs": [attr]}])
    for label, a in [("full_name 1 MB", ("VARIABLE_VALUE", "f" * 1_000_000, key)),
                     ("checkpoint_key missing", ("VARIABLE_VALUE", "w", "nope")),
                     ("checkpoint_key empty", ("VARIABLE_VALUE", "w", "")),
                     ("attribute names the graph", ("VARIABLE_VALUE", "g",
                                                    "_CHECKPOINTABLE_OBJECT_GRAPH"))]:
        yield case("attrs", label, [{"children": [("model", 1)]}, {"attrs": [a]}])
    yield case("attrs", "30000 attributes on one node",
               [{"children": [("model", 1)]}, {"attrs": [attr] * 30_000}])
    yield case("bytes", "graph not a proto", b"\xff" * 64)
    yield case("bytes", "graph empty", b"")
    yield case("bytes", "node nested messages 3000 deep",
               b"".join([b"\x0a\x80\x80\x80\x80\x01"] * 3000))
    for i in range(8):
        n = rng.randint(2, 40)
        nodes = [{"children": [(f"c{j}", rng.randrange(n)) for j in range(rng.randint(1, 4))]}
                 for _ in range(n)]
        nodes[rng.randrange(1, n)]["attrs"] = [attr]
        yield case("pairs", f"random graph {i}: {n} nodes with cycles and sharing", nodes)


# ---------------------------------------------------------------------------------------------
# HDF5: datasets, dtypes, attributes, links and the Keras layouts, built with h5py


def _h5(build: Callable) -> bytes:
    import h5py

    buf = io.BytesIO()
    # Version-2 object headers, whose time stamps corpus.py knows how to fix: the same bytes on
    # every run.
    with h5py.File(buf, "w", track_order=True, libver="latest") as f:
        build(f)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.h5"
        path.write_bytes(buf.getvalue())
        corpus._fix_timestamps(path)
        return path.read_bytes()


def hdf5_cases(rng: random.Random) -> Iterator[Case]:
    import h5py

    target = "m.h5"

    def case(cat: str, label: str, build: Callable) -> Case:
        return cat, label, {target: _h5(build)}, target

    w = np.arange(4, dtype=np.float32)

    def ds(**kw) -> Callable:
        return lambda f: f.create_dataset("w", **kw)

    yield case("storage", "chunked 2**40 elements, no chunk written",
               ds(shape=(2**20, 2**20), dtype="f4", chunks=(1, 1024)))
    yield case("storage", "chunked, 4 GiB fill value region",
               ds(shape=(2**30,), dtype="f4", chunks=(2**20,), fillvalue=1.5))
    yield case("storage", "zero-size with huge dims", ds(shape=(0, 2**40), dtype="f4",
                                                         chunks=(1, 1024), maxshape=(None, None)))
    yield case("storage", "rank 32", ds(data=w.reshape((1,) * 31 + (4,))))
    yield case("storage", "contiguous, never written", ds(shape=(1024,), dtype="f8"))
    yield case("storage", "scalar", ds(data=np.float32(1.5)))
    yield case("storage", "null dataspace", ds(data=h5py.Empty("f4")))
    for label, dtype in [("compound", np.dtype([("a", "f4"), ("b", "i4")])),
                         ("enum", h5py.enum_dtype({"A": 0, "B": 1}, basetype="i1")),
                         ("vlen int", h5py.vlen_dtype(np.int32)),
                         ("opaque", np.dtype("V7")), ("array", np.dtype(("f4", (2,)))),
                         ("complex", np.dtype("c8")), ("float16 big-endian", np.dtype(">f2")),
                         ("object reference", h5py.ref_dtype),
                         ("region reference", h5py.regionref_dtype),
                         ("fixed string", np.dtype("S5")),
                         ("vlen string", h5py.string_dtype())]:
        yield case("dtype", f"dtype {label}", ds(shape=(2,), dtype=dtype))

    for label, value in [("bfloat16 on float32", "bfloat16"), ("nonsense", "nope"),
                         ("empty", ""), ("float8 on float32", "float8_e4m3fn"),
                         ("an int", 3), ("fixed bytes with NUL", np.bytes_(b"bf\x00"))]:
        yield case("attrs", f"dtype attribute {label}",
                   lambda f, v=value: f.create_dataset("w", data=w).attrs.__setitem__("dtype", v))
    for value in [-1, 2**62, "x", np.arange(3), 1.5]:
        yield case("attrs", f"order attribute {value!r:.20}",
                   lambda f, v=value: f.create_dataset("w", data=w).attrs.__setitem__("order", v))

    def soft_loop(f):
        f["a"] = h5py.SoftLink("/b")
        f["b"] = h5py.SoftLink("/a")
        f.create_dataset("w", data=w)

    def hard_cycle(f):
        g = f.create_group("g")
        g.create_dataset("w", data=w)
        g["self"] = g

    def deep(f):
        g = f
        for _ in range(500):
            g = g.create_group("d")
        g.create_dataset("w", data=w)

    def external(f):
        f["x"] = h5py.ExternalLink("/etc/passwd", "/")
        f.create_dataset("w", data=w)

    def wide(f):
        for i in range(1000):
            f.create_dataset(f"t{i}", data=np.zeros(0, np.int8))

    for label, build in [("soft link loop", soft_loop), ("group contains itself", hard_cycle),
                         ("groups 500 deep", deep), ("external link", external),
                         ("1000 datasets", wide)]:
        yield case("links", label, build)

    def legacy(names: object, weights: object, weight_is_group: bool = False) -> Callable:
        def build(f):
            f.attrs["layer_names"] = names
            g = f.create_group("dense")
            g.attrs["weight_names"] = weights
            if weight_is_group:
                g.create_group("dense/kernel:0")
            else:
                g.create_dataset("dense/kernel:0", data=w)
        return build

    for label, names, weights, group in [
            ("layer missing", [b"nope"], [b"dense/kernel:0"], False),
            ("weight missing", [b"dense"], [b"dense/nope:0"], False),
            ("weight is a group", [b"dense"], [b"dense/kernel:0"], True),
            ("weight names ints", [b"dense"], np.arange(2), False),
            ("layer names nested path", [b"../dense"], [b"dense/kernel:0"], False),
            ("weight names empty", [b"dense"], np.array([], dtype="S1"), False),
            ("layer listed twice", [b"dense", b"dense"], [b"dense/kernel:0"], False)]:
        yield case("keras", f"legacy Keras: {label}", legacy(names, weights, group))

    def keras3(var_names: list[str]) -> Callable:
        def build(f):
            v = f.create_group("layers/dense/vars")
            for n in var_names:
                v.create_dataset(n, data=w)
        return build

    for label, names in [("vars not numbered", ["kernel"]), ("vars sparse", ["0", "7"]),
                         ("vars negative", ["-1"]), ("vars huge index", [str(2**64)])]:
        yield case("keras", f"Keras 3: {label}", keras3(names))
    for i in range(6):
        shape = (rng.choice([0, 1, 2**20]), rng.choice([0, 2**20, 2**30]))
        yield case("pairs", f"pair {i}: chunked {shape}",
                   ds(shape=shape, dtype=rng.choice(["f4", "i1", "f8"]), chunks=(1, 1024),
                      maxshape=(None, None)))


# ---------------------------------------------------------------------------------------------
# Building and running

GENERATORS: dict[str, tuple[str, Callable[[random.Random], Iterator[Case]]]] = {
    "safetensors": ("safetensors", safetensors_cases),
    "npy": ("npy", npy_cases),
    "npz": ("npz", npz_cases),
    "tf": ("tf", tf_cases),
    "tf2": ("tf", tf2_cases),
    "hdf5": ("hdf5", hdf5_cases),
}


def generate(root: Path) -> list[Mutant]:
    """Write every case under ``root``; return them as corpus mutants marked ``built``."""
    cases: list[Mutant] = []
    for key, (fmt, gen) in GENERATORS.items():
        rng = random.Random(f"{SEED}/{key}")
        for i, (category, label, files, target) in enumerate(gen(rng)):
            d = root / "built" / key / f"{i:03d}"
            d.mkdir(parents=True)
            for rel, content in files.items():
                (d / rel).write_bytes(content)
            cases.append(Mutant(f"grammar-{key}/{i:03d}", f"grammar-{key}", fmt,
                                f"{category}: {label}", files, dir=str(d),
                                target=str(d / target), built=True))
    return cases


def run(root: Path, cases: list[Mutant]) -> dict[str, dict]:
    originals = {key: corpus.Original(key, fmt, root, "", {})
                 for key, (fmt, _) in (("grammar-" + k, v) for k, v in GENERATORS.items())}
    return corpus.run(root, originals, cases)


def summary(cases: list[Mutant], results: dict[str, dict]) -> str:
    """Outcomes per format and category, then each reader's slowest and largest case."""
    rows: dict[tuple[str, str], dict[str, int]] = {}
    for m in cases:
        key = (m.original.removeprefix("grammar-"), m.label.split(":", 1)[0])
        row = rows.setdefault(key, {"cases": 0, "error": 0, "equal": 0, "other": 0})
        row["cases"] += 1
        outcome = results.get(m.id, {"outcome": "other"})["outcome"]
        row[outcome if outcome in row else "other"] += 1
    lines = [f"{'reader':<13}{'category':<12}{'cases':>6}{'clean error':>12}{'read':>6}"
             f"{'other':>7}"]
    for (fmt, cat), row in rows.items():
        lines.append(f"{fmt:<13}{cat:<12}{row['cases']:>6}{row['error']:>12}{row['equal']:>6}"
                     f"{row['other']:>7}")
    totals = [sum(r[k] for r in rows.values()) for k in ("cases", "error", "equal", "other")]
    lines.append(f"{'total':<25}{totals[0]:>6}{totals[1]:>12}{totals[2]:>6}{totals[3]:>7}")
    lines.append("")
    lines.append("worst case per reader: slowest (s) and the case at the worker's peak RSS")
    for key in GENERATORS:
        mine = [(m, results[m.id]) for m in cases if m.original == f"grammar-{key}"
                and m.id in results]
        if not mine:
            continue
        slow = max(mine, key=lambda p: p[1].get("seconds", 0))
        big = max(mine, key=lambda p: p[1].get("maxrss_mib", 0))
        lines.append(f"  {key:<12} {slow[1].get('seconds', 0):>6.2f} s  {slow[0].label[:48]:<48}"
                     f" | {big[1].get('maxrss_mib', 0):>5} MiB  {big[0].label[:40]}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "run":
        keep = Path(argv[1]) if len(argv) > 1 else None
        root = keep or Path(tempfile.mkdtemp(prefix="grammar-"))
        if keep:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
        start = time.perf_counter()
        cases = generate(root)
        built = time.perf_counter()
        results = run(root, cases)
        print(summary(cases, results))
        print(f"built {len(cases)} cases in {built - start:.1f} s, ran in "
              f"{time.perf_counter() - built:.1f} s; digest {corpus.digest(cases)[:16]}")
        bad = corpus.failures(cases, results)
        for line in bad:
            print(line)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
        return 1 if bad else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
