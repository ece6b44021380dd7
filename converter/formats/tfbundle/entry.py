"""Index entries of a tensor bundle: the ``BundleEntryProto`` of
``tensorflow/core/protobuf/tensor_bundle.proto`` (with the ``TensorSliceProto`` extents of
``tensor_slice.proto`` for partitioned variables), as a :class:`BundleEntry` record.

Decoding and encoding are spelled out field by field, not built on :func:`proto.decode` and
:func:`proto.encode`: checkpoints of tens of thousands of tensors spend their open and save
time here. Both give the same bytes and the same records as the general wire functions.
"""

from __future__ import annotations

from typing import NamedTuple

from ...proto import (
    BYTES,
    FIXED32,
    MAX_RANK,
    VARINT,
    ProtoError,
    decode,
    decode_shape,
    encode_shape,
    last_int,
    read_varint,
    signed,
    skip,
    varint,
)

Extents = tuple[tuple[int, int], ...]  # (start, length) per dimension; length -1: all of it


class BundleEntry(NamedTuple):
    """Where a tensor's bytes are and what they hold, as its index entry says."""

    dtype_enum: int  # TensorFlow's DataType number (types.proto)
    shape: tuple[int, ...]
    shard: int  # the data file: PREFIX.data-<shard>-of-<num_shards>
    offset: int
    size: int  # bytes stored at offset
    crc32c: int  # masked, as stored
    slices: tuple[Extents, ...] = ()  # a partitioned variable's parts; empty for others


_new = tuple.__new__  # BundleEntry's own __new__ is a Python function: too slow per entry


def decode_slice(raw: bytes) -> Extents:
    """Extents ``(start, length)``; length -1 means the whole dimension."""
    extents = []
    for e in decode(raw).get(1, []):
        ef = decode(e)
        start = signed(last_int(ef, 1))
        length = signed(last_int(ef, 2, -1)) if 2 in ef else -1
        extents.append((start, length))
    if len(extents) > MAX_RANK:
        raise ProtoError(f"slice of rank {len(extents)} exceeds {MAX_RANK}")
    return tuple(extents)


_shapes: dict[bytes, tuple[int, ...]] = {}


def decode_entry(buf: bytes) -> BundleEntry:
    """A ``BundleEntryProto``; ProtoError for malformed bytes."""
    return as_written(buf) or _entry_any_layout(buf)


def as_written(buf: bytes) -> BundleEntry | None:
    """TensorFlow writes dtype, shape, shard, offset, size, crc32c in that order, leaving out
    zeros: an entry laid out so (with a shape seen before, and a location that is no negative
    int64) is read in one pass. None for any other, which :func:`_entry_any_layout` reads to
    the same result."""
    end = len(buf)
    if end >= 9 and buf[0] == 0x08 and buf[2] == 0x12 and not (buf[1] | buf[3]) & 0x80 \
            and buf[end - 5] == 0x35:
        pos = 4 + buf[3]
        shape = _shapes.get(buf[4:pos])
        stop = end - 5
        if shape is not None and pos <= stop:
            shard = offset = size = 0
            # Bounded by ``end`` as the general path is, so both fail alike: a varint read
            # here starts before ``stop`` and so ends within the crc32c's five bytes at most.
            if pos < stop and buf[pos] == 0x18:
                shard, pos = read_varint(buf, pos + 1, end)
            if pos < stop and buf[pos] == 0x20:
                offset, pos = _short_varint(buf, pos + 1) or read_varint(buf, pos + 1, end)
            if pos < stop and buf[pos] == 0x28:
                size, pos = _short_varint(buf, pos + 1) or read_varint(buf, pos + 1, end)
            if pos == stop and not (offset | size) >> 63:
                return _new(BundleEntry, (buf[1], shape, shard, offset, size,
                                          int.from_bytes(buf[stop + 1:], "little"), ()))
    return None


def _short_varint(buf: bytes, pos: int) -> tuple[int, int] | None:
    """A varint of at most four bytes at ``pos`` (offsets and sizes under 256 MiB), unrolled;
    None for a longer one. The caller guarantees four bytes from ``pos``."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    value = b & 0x7F
    b = buf[pos + 1]
    if b < 0x80:
        return value | b << 7, pos + 2
    value |= (b & 0x7F) << 7
    b = buf[pos + 2]
    if b < 0x80:
        return value | b << 14, pos + 3
    value |= (b & 0x7F) << 14
    b = buf[pos + 3]
    if b < 0x80:
        return value | b << 21, pos + 4
    return None


def _entry_any_layout(buf: bytes) -> BundleEntry:
    end = len(buf)
    pos = 0
    dt = shard = offset = size = crc = 0
    shape: tuple[int, ...] = ()
    slices: list[Extents] = []
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
                seen = _shapes.get(raw)
                if seen is None:  # checkpoints repeat a few shapes thousands of times
                    seen = decode_shape(raw)
                    if len(_shapes) < 4096:
                        _shapes[raw] = seen
                shape = seen
            else:
                slices.append(decode_slice(buf[pos:pos + n]))
            pos += n
        elif number == 0:
            raise ProtoError("field number 0")
        else:
            pos = skip(buf, pos, end, wire)
    return BundleEntry(dt, shape, shard, offset, size, crc, tuple(slices))


def encode_entry(dtype_enum: int, shape: tuple[int, ...], shard: int, offset: int, size: int,
                 crc32c: int) -> bytes:
    """A ``BundleEntryProto`` (no slices) as TensorFlow lays it out, zeros left out: byte for
    byte what :func:`proto.encode` gives for the same fields."""
    raw_shape = _raw_shapes.get(shape)
    if raw_shape is None:
        raw_shape = encode_shape(shape)
        if len(_raw_shapes) < 4096:
            _raw_shapes[shape] = raw_shape
    out = b"\x08" + varint(dtype_enum) + b"\x12" + varint(len(raw_shape)) + raw_shape
    if shard:
        out += b"\x18" + varint(shard)
    if offset:
        out += b"\x20" + varint(offset)
    if size:
        out += b"\x28" + varint(size)
    return out + b"\x35" + crc32c.to_bytes(4, "little")


_raw_shapes: dict[tuple[int, ...], bytes] = {}
