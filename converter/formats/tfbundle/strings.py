"""String tensors in a data shard (``WriteStringTensor`` in
``tensorflow/core/util/tensor_bundle/tensor_bundle.cc``): one varint64 length per element, a
masked crc32c of the lengths (each as a little-endian uint32, or uint64 when it does not fit),
then the bytes of every element back to back.

The lengths are decoded with numpy, not element by element, and every count is checked against
the stored size before anything of that count is allocated: each element takes at least one
byte of the span, so a shape cannot declare more elements than the span has bytes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, BinaryIO

from ...crc32c import crc, extend, lengths_crc, mask
from ...errors import CorruptionError, FormatError
from ...proto import varint

if TYPE_CHECKING:
    import numpy as np


def _lengths(table: np.ndarray, count: int, where: str) -> tuple[np.ndarray, int]:
    """The first ``count`` varints of ``table`` (uint8) and the bytes they take."""
    import numpy as np

    if count == 0:
        return np.zeros(0, np.uint64), 0
    head = table[:count]
    if len(head) == count and not (head & 0x80).any():  # every length under 128: one byte each
        return head, count
    window = table[: 10 * count]
    ends = np.flatnonzero(window < 0x80)[:count]
    if len(ends) < count:
        raise CorruptionError(f"{where}: string lengths run past the stored data")
    used = int(ends[-1]) + 1
    starts = np.empty(count, np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    widths = ends - starts + 1
    if int(widths.max()) > 10:
        raise CorruptionError(f"{where}: a string length is a varint longer than 10 bytes")
    position = np.arange(used, dtype=np.int64) - np.repeat(starts, widths)
    digits = (window[:used] & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    lengths = np.add.reduceat(digits, starts)
    last = window[ends[widths == 10]]
    if (last > 1).any():  # the tenth byte holds the 64th bit only
        raise CorruptionError(f"{where}: a string length does not fit in 64 bits")
    return lengths, used


def read_strings(buf, offset: int, size: int, shape: tuple[int, ...], expected: int,
                 where: str, verify: bool) -> np.ndarray:
    """The string tensor stored at ``buf[offset:offset + size]`` as an object array of bytes."""
    import numpy as np

    count = math.prod(shape)
    if count + 4 > size:
        raise CorruptionError(f"{where}: shape {list(shape)} declares {count} strings, more "
                              f"than {size} stored bytes can hold")
    data = np.frombuffer(buf, np.uint8, count=size, offset=offset)
    lengths, pos = _lengths(data[: size - 4], count, where)
    longest = int(lengths.max()) if count else 0
    # The lengths may be any 64-bit numbers: bound each before summing them.
    total = int(lengths.sum(dtype=np.uint64)) if longest <= size else size + 1
    if longest > size or pos + 4 + total != size:
        raise CorruptionError(f"{where}: string lengths do not match the stored size")
    stored = data[pos:pos + 4]
    if verify:
        value = lengths_crc(lengths)
        if mask(value) != int.from_bytes(stored.tobytes(), "little"):
            raise CorruptionError(f"{where}: checksum mismatch in string lengths")
        value = extend(extend(value, stored), data[pos + 4:])
        if mask(value) != expected:
            raise CorruptionError(f"{where}: checksum mismatch (data corrupted)")
    out = np.empty(count, dtype=object)
    if total == 0:
        out.fill(b"")
    else:
        body = data[pos + 4:].tobytes()
        items = []
        start = 0
        for stop in np.cumsum(lengths, dtype=np.uint64).tolist():
            items.append(body[start:stop])
            start = stop
        out[:] = items
    return out.reshape(shape)


def read_scalar_string(buf, offset: int, size: int, expected: int, where: str,
                       verify: bool) -> bytes:
    """:func:`read_strings` of a scalar (a TF2 checkpoint's object graph) as its bytes, with the
    same checks and errors, without numpy: listing a checkpoint reads its object graph."""
    if 1 + 4 > size:
        raise CorruptionError(f"{where}: shape [] declares 1 strings, more than {size} stored "
                              "bytes can hold")
    data = bytes(buf[offset:offset + size])
    n = shift = 0
    for pos in range(min(10, size - 4)):
        b = data[pos]
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    else:
        raise CorruptionError(f"{where}: string lengths run past the stored data")
    if pos == 9 and data[9] > 1:  # the tenth byte holds the 64th bit only
        raise CorruptionError(f"{where}: a string length does not fit in 64 bits")
    pos += 1
    if n > size or pos + 4 + n != size:
        raise CorruptionError(f"{where}: string lengths do not match the stored size")
    stored = data[pos:pos + 4]
    if verify:
        value = crc(n.to_bytes(4 if n <= 0xFFFFFFFF else 8, "little"))
        if mask(value) != int.from_bytes(stored, "little"):
            raise CorruptionError(f"{where}: checksum mismatch in string lengths")
        value = extend(extend(value, stored), data[pos + 4:])
        if mask(value) != expected:
            raise CorruptionError(f"{where}: checksum mismatch (data corrupted)")
    return data[pos + 4:]


def write_strings(f: BinaryIO, array: np.ndarray, name: str) -> tuple[int, int]:
    """TF's string layout: varint64 lengths, masked crc of the lengths, then the bytes.
    Returns ``(bytes written, masked crc)``."""
    import numpy as np

    items = []
    for x in array.reshape(-1):
        if isinstance(x, str):
            x = x.encode()
        if not isinstance(x, (bytes, bytearray, np.bytes_)):
            raise FormatError(f"tensor {name!r}: string tensors must hold bytes, found {type(x)}")
        items.append(bytes(x))
    value = lengths_crc([len(x) for x in items])
    length_crc = mask(value).to_bytes(4, "little")
    value = extend(value, length_crc)
    head = b"".join(varint(len(x)) for x in items) + length_crc
    body = b"".join(items)
    value = extend(value, body)
    f.write(head)
    f.write(body)
    return len(head) + len(body), mask(value)
