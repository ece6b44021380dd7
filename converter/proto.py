"""Just enough protocol-buffer wire format for TensorFlow's files, without generated code or
the ``protobuf`` runtime: tensor bundles (``tensor_bundle.proto``, ``trackable_object_graph.proto``)
and the MetaGraphDefs beside TF1 checkpoints (``meta_graph.proto``) alike.

Messages are decoded into ``{field: [values]}`` and encoded from ``(field, value)`` pairs.
Every length is checked against the buffer before use. ``TensorShapeProto``
(``tensor_shape.proto``), which bundles and graphs share, is decoded and encoded here too.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from .errors import FormatError

VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5


class ProtoError(FormatError):
    """Malformed protobuf bytes (callers re-raise it with the file and tensor)."""


def read_varint(buf: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise ProtoError("truncated varint")
        try:
            b = buf[pos]
        except IndexError:  # an ``end`` past the buffer: bounded by the buffer all the same
            raise ProtoError("truncated varint") from None
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtoError("varint longer than 10 bytes")


def decode(buf: bytes | memoryview, pos: int = 0, end: int | None = None) -> dict[int, list]:
    """Decode one message: ``{field_number: [value, ...]}``; bytes fields stay bytes."""
    if not isinstance(buf, (bytes, bytearray, memoryview)):
        # A field declared as a message arrived with a number's wire type.
        raise ProtoError("expected a message, found a number")
    end = len(buf) if end is None else min(end, len(buf))
    fields: dict[int, list] = {}
    value: int | bytes
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


def last(fields: dict[int, list], number: int, default=0):
    """The value of a non-repeated field: the last one on the wire wins, as in protobuf's own
    parsers (a message may be sent as several concatenated parts)."""
    values = fields.get(number)
    return values[-1] if values else default


def last_int(fields: dict[int, list], number: int, default: int = 0) -> int:
    """The last value of a number field; ProtoError if it arrived length-delimited."""
    value = last(fields, number, default)
    if not isinstance(value, int):
        raise ProtoError(f"field {number}: expected a number, found bytes")
    return value


def last_bytes(fields: dict[int, list], number: int, default: bytes = b"") -> bytes:
    """The last value of a bytes/string/message field; ProtoError if it arrived as a number."""
    value = last(fields, number, default)
    if not isinstance(value, bytes):
        raise ProtoError(f"field {number}: expected bytes, found a number")
    return value


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


# --- tensor_shape.proto --------------------------------------------------------------------


def decode_shape(raw: bytes) -> tuple[int, ...]:
    # Fast path for the common encoding: dims as `12 LEN 08 SIZE` with one-byte lengths.
    dims = []
    pos, end = 0, len(raw)
    while pos < end and raw[pos] == 0x12 and pos + 1 < end and raw[pos + 1] < 0x80:
        n = raw[pos + 1]
        start, pos = pos + 2, pos + 2 + n
        if pos > end:
            raise ProtoError("shape dimension runs past the message")
        if n == 0:
            dims.append(0)
        elif raw[start] == 0x08:
            size, after = read_varint(raw, start + 1, pos)
            if after != pos:
                break  # a named dimension: let the general decoder handle it
            size = signed(size)
            if size < 0:
                raise ProtoError(f"negative dimension {size}")
            dims.append(size)
        else:
            break
    else:
        if pos == end:
            return _rank_checked(dims)
    f = decode(raw)
    if last_int(f, 3):
        raise ProtoError("tensor of unknown rank")
    dims = []
    for d in f.get(2, []):
        size = signed(last_int(decode(d), 1))
        if size < 0:
            raise ProtoError(f"negative dimension {size}")
        dims.append(size)
    return _rank_checked(dims)


MAX_RANK = 64  # numpy's limit; TensorFlow's is lower still (254 in theory, 8 for most kernels)


def _rank_checked(dims: list[int]) -> tuple[int, ...]:
    if len(dims) > MAX_RANK:
        raise ProtoError(f"rank {len(dims)} exceeds {MAX_RANK}")
    return tuple(dims)


def encode_shape(shape: tuple[int, ...]) -> bytes:
    return encode((2, encode([(1, d)] if d else [])) for d in shape)


def skip(buf: bytes | memoryview, pos: int, end: int, wire: int) -> int:
    """The position after a field of wire type ``wire`` whose value starts at ``pos``."""
    end = min(end, len(buf))
    if wire == VARINT:
        return read_varint(buf, pos, end)[1]
    if wire == BYTES:
        n, pos = read_varint(buf, pos, end)
        if n > end - pos:
            raise ProtoError("length runs past the message")
        return pos + n
    if wire in (FIXED32, FIXED64):
        pos += 4 if wire == FIXED32 else 8
        if pos > end:
            raise ProtoError("truncated fixed-width field")
        return pos
    raise ProtoError(f"unsupported wire type {wire}")




def fields(buf: bytes | memoryview, pos: int = 0, end: int | None = None
           ) -> Iterator[tuple[int, int, int, int]]:
    """``(number, wire, a, b)`` for each field of one message, copying nothing: for a
    length-delimited field the value is ``buf[a:b]``; for a number ``a`` is the value (fixed
    widths as unsigned bits) and ``b`` the position after it. For messages too big to copy
    (a GraphDef whose constants hold a model's weights)."""
    end = len(buf) if end is None else min(end, len(buf))
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtoError("field number 0")
        if wire == BYTES:
            n, pos = read_varint(buf, pos, end)
            if n > end - pos:
                raise ProtoError(f"field {number}: length {n} runs past the message")
            yield number, wire, pos, pos + n
            pos += n
        elif wire == VARINT:
            value, pos = read_varint(buf, pos, end)
            yield number, wire, value, pos
        elif wire in (FIXED32, FIXED64):
            width = 4 if wire == FIXED32 else 8
            if pos + width > end:
                raise ProtoError(f"field {number}: truncated fixed{width * 8}")
            (value,) = struct.unpack_from("<I" if width == 4 else "<Q", buf, pos)
            pos += width
            yield number, wire, value, pos
        else:
            raise ProtoError(f"field {number}: unsupported wire type {wire}")
