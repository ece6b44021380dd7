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
    if not isinstance(buf, (bytes, bytearray, memoryview)):
        # A field declared as a message arrived with a number's wire type.
        raise ProtoError("expected a message, found a number")
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


def first_int(fields: dict[int, list], number: int, default: int = 0) -> int:
    """The last value of a number field; ProtoError if it arrived length-delimited."""
    value = first(fields, number, default)
    if not isinstance(value, int):
        raise ProtoError(f"field {number}: expected a number, found bytes")
    return value


def first_bytes(fields: dict[int, list], number: int, default: bytes = b"") -> bytes:
    """The last value of a bytes/string/message field; ProtoError if it arrived as a number."""
    value = first(fields, number, default)
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


# --- tensor_bundle.proto -------------------------------------------------------------------


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
    if first_int(f, 3):
        raise ProtoError("tensor of unknown rank")
    dims = []
    for d in f.get(2, []):
        size = signed(first_int(decode(d), 1))
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


def decode_slice(raw: bytes) -> list[tuple[int, int]]:
    """Extents ``(start, length)``; length -1 means the whole dimension."""
    extents = []
    for e in decode(raw).get(1, []):
        ef = decode(e)
        start = signed(first_int(ef, 1))
        length = signed(first_int(ef, 2, -1)) if 2 in ef else -1
        extents.append((start, length))
    if len(extents) > MAX_RANK:
        raise ProtoError(f"slice of rank {len(extents)} exceeds {MAX_RANK}")
    return extents


def _skip(buf: bytes, pos: int, end: int, wire: int) -> int:
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


_shapes: dict[bytes, tuple[int, ...]] = {}


def decode_entry(buf: bytes) -> dict:
    """A ``BundleEntryProto``; the same result as :func:`decode` and friends, specialised because
    checkpoints with tens of thousands of tensors spend their open time here."""
    return _entry_as_written(buf) or _entry_any_layout(buf)


def _entry_as_written(buf: bytes) -> dict | None:
    """TensorFlow writes dtype, shape, shard, offset, size, crc32c in that order, leaving out
    zeros: an entry laid out so (with a shape seen before) is read in one pass. None for any
    other layout, which :func:`_entry_any_layout` reads to the same result."""
    end = len(buf)
    if end >= 9 and buf[0] == 0x08 and buf[2] == 0x12 and not (buf[1] | buf[3]) & 0x80 \
            and buf[end - 5] == 0x35:
        pos = 4 + buf[3]
        shape = _shapes.get(buf[4:pos])
        stop = end - 5
        if shape is not None and pos <= stop:
            shard = offset = size = 0
            # Bounded by ``end`` as the general path is, so both fail alike.
            if pos < stop and buf[pos] == 0x18:
                shard, pos = read_varint(buf, pos + 1, end)
            if pos < stop and buf[pos] == 0x20:
                offset, pos = read_varint(buf, pos + 1, end)
            if pos < stop and buf[pos] == 0x28:
                size, pos = read_varint(buf, pos + 1, end)
            if pos == stop:
                return {"dt": buf[1], "shape": shape, "shard": shard, "offset": signed(offset),
                        "size": signed(size), "crc": int.from_bytes(buf[stop + 1:], "little"),
                        "slices": []}
    return None


def _entry_any_layout(buf: bytes) -> dict:
    end = len(buf)
    pos = 0
    dt = shard = offset = size = crc = 0
    shape: tuple[int, ...] = ()
    slices: list[list[tuple[int, int]]] = []
    while pos < end:
        key = buf[pos]
        if key & 0x80:
            key, pos = read_varint(buf, pos, end)
        else:
            pos += 1
        number, wire = key >> 3, key & 7
        if wire == VARINT and number in (1, 3, 4, 5):
            value = buf[pos] if pos < end else 0x80
            if value & 0x80:
                value, pos = read_varint(buf, pos, end)
            else:
                pos += 1
            if number == 1:
                dt = value
            elif number == 3:
                shard = value
            elif number == 4:
                offset = signed(value)
            else:
                size = signed(value)
        elif number == 6 and wire == FIXED32:
            if pos + 4 > end:
                raise ProtoError("truncated fixed32")
            crc = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        elif number in (2, 7) and wire == BYTES:
            n, pos = read_varint(buf, pos, end)
            if n > end - pos:
                raise ProtoError(f"field {number}: length {n} runs past the message")
            if number == 2:
                raw = bytes(buf[pos:pos + n])
                shape = _shapes.get(raw)
                if shape is None:  # checkpoints repeat a few shapes thousands of times
                    shape = decode_shape(raw)
                    if len(_shapes) < 4096:
                        _shapes[raw] = shape
            else:
                slices.append(decode_slice(buf[pos:pos + n]))
            pos += n
        elif number == 0:
            raise ProtoError("field number 0")
        else:
            pos = _skip(buf, pos, end, wire)
    return {"dt": dt, "shape": shape, "shard": shard, "offset": offset, "size": size,
            "crc": crc, "slices": slices}
