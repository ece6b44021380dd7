"""Tensor bundles built byte by byte to declare more than they hold: huge string counts,
thousands of partitions, object graphs whose paths blow up. ``python tests/hostile_bundles.py
KIND DIR [N]`` builds one and prints its prefix (used to measure a reader in a fresh process)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from converter import proto
from converter.crc32c import crc, extend, lengths_crc, mask
from converter.formats.tfbundle.entry import encode_entry
from converter.formats.tfbundle.slices import slice_key
from converter.formats.tfbundle.table import build_table
from converter.tfnames import ATTR_SUFFIX, GRAPH_KEY

DT_FLOAT, DT_STRING = 1, 7


def _header() -> bytes:
    return proto.encode([(1, 1), (3, proto.encode([(1, 1)]))])


def write_bundle(prefix: Path, entries: dict[bytes, bytes], data: bytes) -> Path:
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(data)
    table = build_table([(b"", _header())] + sorted(entries.items()))
    prefix.with_name(prefix.name + ".index").write_bytes(table)
    return prefix


def string_body(items: list[bytes]) -> tuple[bytes, int]:
    """TF's string tensor bytes and their masked crc."""
    value = lengths_crc([len(x) for x in items])
    length_crc = mask(value).to_bytes(4, "little")
    body = b"".join(items)
    value = extend(extend(value, length_crc), body)
    return b"".join(proto.varint(len(x)) for x in items) + length_crc + body, mask(value)


def empty_strings(prefix: Path, count: int) -> Path:
    """One string tensor of ``count`` empty strings: one byte of span each."""
    value = lengths_crc(np.zeros(count, dtype=np.uint32))
    length_crc = mask(value).to_bytes(4, "little")
    data = bytes(count) + length_crc
    value = extend(value, length_crc)
    return write_bundle(prefix, {b"s": encode_entry(DT_STRING, (count,), 0, 0, len(data),
                                                    mask(value))}, data)


def strings_declaring(prefix: Path, shape: tuple[int, ...]) -> Path:
    """A string tensor whose shape declares far more elements than its 12 bytes hold."""
    data, value = string_body([b"abcdefg"])
    return write_bundle(prefix, {b"s": encode_entry(DT_STRING, shape, 0, 0, len(data), value)},
                        data)


def _slice(extents: list[tuple[int, int]]) -> bytes:
    return proto.encode((1, proto.encode([(1, s), (2, n)])) for s, n in extents)


def partitioned(prefix: Path, grid: tuple[int, ...], part: tuple[int, ...] = (),
                overlap: bool = False, gap: bool = False) -> tuple[Path, np.ndarray]:
    """A float32 variable ``v`` cut into a grid of parts (``grid[d]`` parts along dimension d,
    each ``part[d]`` long, 1 by default). ``overlap`` moves the last part onto the one before
    it; ``gap`` leaves the last part out and enlarges the first to keep the volume."""
    part = part or (1,) * len(grid)
    full = tuple(g * p for g, p in zip(grid, part, strict=True))
    value = np.arange(int(np.prod(full)), dtype=np.float32).reshape(full)
    cells = list(np.ndindex(*grid))
    entries: dict[bytes, bytes] = {}
    slices = []
    data = bytearray()
    for i, cell in enumerate(cells):
        extents = [(c * p, p) for c, p in zip(cell, part, strict=True)]
        if overlap and i == len(cells) - 1:
            extents = [(s, n) for s, n in extents]
            extents[-1] = (extents[-1][0] - part[-1], part[-1])
        index = tuple(slice(s, s + n) for s, n in extents)
        raw = np.ascontiguousarray(value[index]).tobytes()
        entries[slice_key("v", extents)] = encode_entry(DT_FLOAT, tuple(n for _, n in extents), 0,
                                                        len(data), len(raw), mask(crc(raw)))
        slices.append(_slice(extents))
        data += raw
    if gap:
        last = cells[-1]
        entries.pop(slice_key("v", [(c * p, p) for c, p in zip(last, part, strict=True)]))
        slices.pop()
        first = [(0, p) for p in part]
        first[0] = (0, 2 * part[0])
        raw = np.ascontiguousarray(value[tuple(slice(0, n) for _, n in first)]).tobytes()
        entries[slice_key("v", first)] = encode_entry(DT_FLOAT, tuple(n for _, n in first), 0,
                                                      len(data), len(raw), mask(crc(raw)))
        slices[0] = _slice(first)
        data += raw
    shape = proto.encode_shape(full)
    entries[b"v"] = proto.encode([(1, DT_FLOAT), (2, shape)] + [(7, s) for s in slices])
    return write_bundle(prefix, entries, bytes(data)), value


def _graph(nodes: list[tuple[list[tuple[str, int]], list[tuple[str, str, str]]]]) -> bytes:
    return proto.encode(
        (1, proto.encode(
            [(1, proto.encode([(1, child), (2, local)])) for local, child in children]
            + [(2, proto.encode([(1, a), (2, b), (3, c)])) for a, b, c in attributes]))
        for children, attributes in nodes)


def graph_dag(prefix: Path, depth: int, name_length: int = 16) -> Path:
    """A TF2 checkpoint whose object graph is a chain of ``depth`` nodes, each reaching the
    next through two children (a DAG with shared children), with a variable on every node:
    object paths grow to ``depth * name_length`` bytes."""
    nodes = []
    keys = []
    for i in range(depth):
        a, b = "a" * name_length, "b" * name_length
        children = [(a, i + 1), (b, i + 1)] if i + 1 < depth else []
        key = f"k{i}{ATTR_SUFFIX}"
        keys.append(key)
        nodes.append((children, [("VARIABLE_VALUE", f"v{i}", key)]))
    graph, graph_crc = string_body([_graph(nodes)])
    value = np.zeros((), np.float32).tobytes()
    entries = {GRAPH_KEY.encode(): encode_entry(DT_STRING, (), 0, 0, len(graph), graph_crc)}
    for key in keys:
        entries[key.encode()] = encode_entry(DT_FLOAT, (), 0, len(graph), 4, mask(crc(value)))
    return write_bundle(prefix, entries, graph + value)


if __name__ == "__main__":
    kind, where = sys.argv[1], Path(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    build = {"strings": lambda p: empty_strings(p, n or 20_000_000),
             "partitions": lambda p: partitioned(p, (n or 16_000,))[0],
             "graph": lambda p: graph_dag(p, n or 8000)}[kind]
    print(build(where / "h.ckpt"))
