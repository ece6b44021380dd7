"""Just enough protocol-buffer wire format for the tensor bundle.

Messages (``tensorflow/core/protobuf/tensor_bundle.proto``, ``tensor_shape.proto``,
``tensor_slice.proto``, ``trackable_object_graph.proto``) are decoded into ``{field: [values]}``
and encoded from ``(field, value)`` pairs, so no generated code or ``protobuf`` runtime is needed.
Every length is checked against the buffer before use.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from ...errors import FormatError

VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5


class ProtoError(FormatError):
    """Malformed protobuf bytes (callers re-raise it with the file and tensor)."""


def read_varint(buf: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise ProtoError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtoError("varint longer than 10 bytes")


def decode(buf: bytes | memoryview, pos: int = 0, end: int | None = None) -> dict[int, list]:
    """Decode one message: ``{field_number: [value, ...]}``; bytes fields stay bytes."""
    if end is None:
        end = len(buf)
    fields: dict[int, list] = {}
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtoError("field number 0")
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end)
        elif wire == BYTES:
            n, pos = read_varint(buf, pos, end)
            if n > end - pos:
                raise ProtoError(f"field {number}: length {n} runs past the message")
            value = bytes(buf[pos:pos + n])
            pos += n
        elif wire == FIXED32:
            if pos + 4 > end:
                raise ProtoError("truncated fixed32")
            (value,) = struct.unpack_from("<I", buf, pos)
            pos += 4
        elif wire == FIXED64:
            if pos + 8 > end:
                raise ProtoError("truncated fixed64")
            (value,) = struct.unpack_from("<Q", buf, pos)
            pos += 8
        else:
            raise ProtoError(f"unsupported wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def signed(value: int) -> int:
    """int64 from its two's-complement varint."""
    return value - (1 << 64) if value >= 1 << 63 else value


def first(fields: dict[int, list], number: int, default=0):
    values = fields.get(number)
    return values[-1] if values else default


def varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode(items: Iterable[tuple[int, int | bytes | str | tuple[str, int]]]) -> bytes:
    """Encode ``(field, value)`` pairs: int → varint, bytes/str → length-delimited,
    ``("fixed32", v)`` → fixed32."""
    out = bytearray()
    for number, value in items:
        if isinstance(value, tuple):
            out += varint(number << 3 | FIXED32) + struct.pack("<I", value[1])
        elif isinstance(value, (bytes, bytearray, str)):
            data = value.encode() if isinstance(value, str) else bytes(value)
            out += varint(number << 3 | BYTES) + varint(len(data)) + data
        else:
            out += varint(number << 3 | VARINT) + varint(int(value))
    return bytes(out)


# --- tensor_bundle.proto -------------------------------------------------------------------


def decode_shape(raw: bytes) -> tuple[int, ...]:
    f = decode(raw)
    if first(f, 3):
        raise ProtoError("tensor of unknown rank")
    dims = []
    for d in f.get(2, []):
        size = signed(first(decode(d), 1))
        if size < 0:
            raise ProtoError(f"negative dimension {size}")
        dims.append(size)
    return tuple(dims)


def encode_shape(shape: tuple[int, ...]) -> bytes:
    return encode((2, encode([(1, d)] if d else [])) for d in shape)


def decode_slice(raw: bytes) -> list[tuple[int, int]]:
    """Extents ``(start, length)``; length -1 means the whole dimension."""
    extents = []
    for e in decode(raw).get(1, []):
        ef = decode(e)
        start = signed(first(ef, 1))
        length = signed(first(ef, 2, -1)) if 2 in ef else -1
        extents.append((start, length))
    return extents
