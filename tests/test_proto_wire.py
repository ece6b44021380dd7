"""The protobuf wire reader shared by bundles and MetaGraphDef readers: field values follow
protobuf's last-one-wins rule, and every length is bounded by the buffer, whatever ``end`` a
caller passes."""

from __future__ import annotations

import pytest

from converter import proto


def test_last_value_of_a_field_wins():
    fields = proto.decode(b"\x08\x01\x08\x02\x12\x01a\x12\x01b")
    assert proto.last(fields, 1) == 2
    assert proto.last_int(fields, 1) == 2
    assert proto.last_bytes(fields, 2) == b"b"
    assert proto.last_int(fields, 9, 7) == 7
    with pytest.raises(proto.ProtoError, match="expected a number"):
        proto.last_int(fields, 2)
    with pytest.raises(proto.ProtoError, match="expected bytes"):
        proto.last_bytes(fields, 1)


@pytest.mark.parametrize("buf", [
    b"\x08",  # a varint key, then nothing
    b"\x08\x80",  # a varint value cut short
    b"\x0d\x00\x00",  # fixed32 with two of its four bytes
    b"\x09\x00",  # fixed64 with one of its eight bytes
    b"\x12\x05ab",  # a length past the buffer
])
@pytest.mark.parametrize("view", [bytes, memoryview])
def test_end_past_the_buffer_is_bounded_by_the_buffer(buf, view):
    with pytest.raises(proto.ProtoError):
        proto.decode(view(buf), 0, len(buf) + 10)


@pytest.mark.parametrize("wire", [proto.VARINT, proto.BYTES, proto.FIXED32, proto.FIXED64])
def test_skip_is_bounded_by_the_buffer(wire):
    with pytest.raises(proto.ProtoError):
        proto.skip(b"\x85", 0, 20, wire)


def test_read_varint_past_the_buffer():
    with pytest.raises(proto.ProtoError, match="truncated varint"):
        proto.read_varint(b"\x80", 0, 5)
