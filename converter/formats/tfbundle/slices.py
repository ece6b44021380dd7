"""Keys of partitioned-variable parts: ``EncodeTensorNameSlice`` in TensorFlow's
``tensorflow/core/util/saved_tensor_slice_util.cc``, built from the ``OrderedCode`` encodings
(``tensorflow/core/lib/strings/ordered_code.cc``): a leading 0, the name, the rank, then each
dimension's start and length (-1 for the whole dimension) as signed order-preserving numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _num_increasing(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return bytes([len(raw)]) + raw


def _escape(value: bytes) -> bytes:
    out = bytearray()
    for b in value:
        if b == 0:
            out += b"\x00\xff"
        elif b == 0xFF:
            out += b"\xff\x00"
        else:
            out.append(b)
    return bytes(out) + b"\x00\x01"


def _signed_increasing(value: int) -> bytes:
    x = ~value if value < 0 else value
    if x < 64:
        return bytes([(0x80 ^ value) & 0xFF])
    length = (x.bit_length() + 7) // 7  # one header bit per byte, plus the sign bit
    raw = bytearray((value & ((1 << (8 * length)) - 1)).to_bytes(length, "big"))
    header = [0x80, 0xC0, 0xE0, 0xF0, 0xF8, 0xFC, 0xFE, 0xFF, 0xFF, 0xFF][length - 1]
    raw[0] ^= header
    if length == 9:
        raw[1] ^= 0x80
    elif length == 10:
        raw[1] ^= 0xC0
    return bytes(raw)


def slice_key(name: str, extents: Sequence[tuple[int, int]]) -> bytes:
    """The index key under which TF stores one part of partitioned variable ``name``."""
    key = _num_increasing(0) + _escape(name.encode()) + _num_increasing(len(extents))
    for start, length in extents:
        key += _signed_increasing(start) + _signed_increasing(length)
    return key


def covers_exactly(boxes: list[list[tuple[int, int]]], full: tuple[int, ...]) -> bool:
    """Whether boxes (``[(start, stop)]`` per dimension, inside ``full``) cover it exactly once.

    TensorFlow cuts a variable into a grid (every partitioner cuts along one axis; a shard
    policy cuts parts further into rows): the cut points of each dimension, sorted, index
    each box by its grid cell in O(n log n). Boxes off any grid fall back to a pairwise check
    vectorised over all boxes at once."""
    if sum(math.prod(b - a for a, b in box) for box in boxes) != math.prod(full):
        return False
    if not boxes or math.prod(full) == 0:
        return True
    rank = len(full)
    cuts = [sorted({x for box in boxes for x in box[d]}) for d in range(rank)]
    where = [{x: i for i, x in enumerate(c)} for c in cuts]
    cells = set()
    for box in boxes:
        cell = tuple(where[d][a] for d, (a, _) in enumerate(box))
        if any(where[d][b] != cell[d] + 1 for d, (_, b) in enumerate(box)):
            return _disjoint(boxes)  # spans several cells: not a grid
        cells.add(cell)
    # One cell per box and the volumes add up: covered once exactly when no cell repeats.
    return len(cells) == len(boxes)


def _disjoint(boxes: list[list[tuple[int, int]]]) -> bool:
    import numpy as np

    lo = np.array([[a for a, _ in box] for box in boxes], dtype=np.int64)
    hi = np.array([[b for _, b in box] for box in boxes], dtype=np.int64)
    for i in range(len(boxes) - 1):
        if (np.maximum(lo[i], lo[i + 1:]) < np.minimum(hi[i], hi[i + 1:])).all(axis=1).any():
            return False
    return True
