"""``TensorProto`` (``tensorflow/core/framework/tensor.proto``): the value of a ``Const`` node.

Fields: ``dtype`` 1, ``tensor_shape`` 2, ``tensor_content`` 4 (raw little-endian bytes), and one
typed repeated field per dtype: ``float_val`` 5, ``double_val`` 6, ``int_val`` 7 (every integer
type of 32 bits or fewer, quantized ones included), ``string_val`` 8, ``scomplex_val`` 9,
``int64_val`` 10, ``bool_val`` 11, ``dcomplex_val`` 12, ``half_val`` 13 (float16 and bfloat16 bits
in int32s), ``uint32_val`` 16, ``uint64_val`` 17 and ``float8_val`` 18 (one byte a value).

A repeated field may arrive packed (one length-delimited run) or unpacked (one field per value),
or both mixed; parsers accept either, so this does. The values fill the shape as TensorFlow's
``Tensor::FromProto`` fills it (``tensor.cc``): a non-empty ``tensor_content`` must hold exactly
the shape's bytes; otherwise the first values are taken, fewer values than elements repeat the
last one (``tf.constant(0.5, shape=[1000])`` stores one float), and none at all give zeros.

Bounds: :func:`scan` checks that the bytes of every value are in the file and counts them
without decoding; a shape that needs more elements than the values present (a broadcast) is
filled on read only up to :data:`MAX_FILL` bytes, so a hostile shape is refused before
anything is allocated.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .. import dtypes, proto
from ..proto import BYTES, FIXED32, FIXED64, VARINT, ProtoError

# DataType enum (types.proto) -> canonical dtype name, as tensor bundles use them.
DT_NAMES = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
    8: "complex64", 9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 18: "complex128",
    19: "float16", 22: "uint32", 23: "uint64", 24: "float8_e5m2", 25: "float8_e4m3fn",
    26: "float8_e4m3fnuz", 27: "float8_e4m3b11fnuz", 28: "float8_e5m2fnuz",
}
# Quantized types hold plain integers: read as such, the TF type kept in attrs["tf_dtype"].
QUANTIZED = {11: ("qint8", "int8"), 12: ("quint8", "uint8"), 13: ("qint32", "int32"),
             15: ("qint16", "int16"), 16: ("quint16", "uint16")}
# The rest of the enum, for signatures (a TensorInfo may name any of them).
OTHER_NAMES = {0: "invalid", 20: "resource", 21: "variant", 29: "int4", 30: "uint4",
               31: "int2", 32: "uint2", 33: "float4_e2m1fn"}

MAX_FILL = 1 << 30  # bytes a broadcast constant may fill beyond the values the file holds


def dtype_name(enum: int) -> str:
    """A DataType's name: canonical for tensor dtypes (``float32``), TF's otherwise
    (``resource``, ``qint8``); reference types (``+100``) by their base type's name."""
    base = enum - 100 if enum > 100 else enum
    if base in DT_NAMES:
        name = DT_NAMES[base]
    elif base in QUANTIZED:
        name = QUANTIZED[base][0]
    else:
        name = OTHER_NAMES.get(base, f"dtype_{base}")
    return name + "_ref" if enum > 100 else name


# dtype enum -> (field number, how its values are stored)
_INT = (7, "varint")
_FIELDS: dict[int, tuple[int, str]] = {
    1: (5, "fixed32"), 2: (6, "fixed64"), 3: _INT, 4: _INT, 5: _INT, 6: _INT, 17: _INT,
    11: _INT, 12: _INT, 13: _INT, 15: _INT, 16: _INT,
    7: (8, "bytes"), 8: (9, "fixed32"), 9: (10, "varint"), 10: (11, "varint"),
    14: (13, "varint"), 19: (13, "varint"), 18: (12, "fixed64"),
    22: (16, "varint"), 23: (17, "varint"),
    **{e: (18, "byte") for e in (24, 25, 26, 27, 28)},
}
_WIDTH = {"fixed32": 4, "fixed64": 8}
_RAW: dict[str, np.dtype] = {"fixed32": np.dtype("<u4"), "fixed64": np.dtype("<u8"),
                             "varint": np.dtype(np.uint64)}
_WIRE = {"fixed32": FIXED32, "fixed64": FIXED64, "varint": VARINT}


class Spec(NamedTuple):
    """What a TensorProto holds, found without decoding its values."""

    dtype_enum: int
    dtype: np.dtype
    shape: tuple[int, ...]
    start: int  # the TensorProto's bytes: buf[start:end]
    end: int
    content: tuple[int, int] | None  # tensor_content's span, when it holds the values
    nvalues: int  # values in the typed field (elements, complex numbers counted once)
    attrs: dict[str, str]


def supported(dtype_enum: int) -> bool:
    return dtype_enum in DT_NAMES or dtype_enum in QUANTIZED


def numpy_dtype(dtype_enum: int) -> tuple[np.dtype, dict[str, str]]:
    if dtype_enum in QUANTIZED:
        tf_name, base = QUANTIZED[dtype_enum]
        return np.dtype(base), {"tf_dtype": tf_name}
    return dtypes.from_name(DT_NAMES[dtype_enum]), {}


def scan(buf, start: int, end: int) -> Spec | None:
    """The TensorProto at ``buf[start:end]``; None for a dtype that is not a tensor of numbers,
    booleans or strings (resource, variant). ProtoError for malformed bytes or values that do
    not fit the shape."""
    dtype_enum = 0
    shape_span: tuple[int, int] | None = None
    content: tuple[int, int] | None = None
    for number, wire, a, b in proto.fields(buf, start, end):
        if number == 1:
            if wire != VARINT:
                raise ProtoError("dtype is not a number")
            dtype_enum = a
        elif number in (2, 4) and wire != BYTES:
            raise ProtoError(f"field {number}: expected bytes, found a number")
        elif number == 2:
            shape_span = (a, b)
        elif number == 4:
            content = (a, b)
    if not supported(dtype_enum):
        return None
    shape = proto.decode_shape(bytes(buf[shape_span[0]:shape_span[1]])) if shape_span else ()
    dtype, attrs = numpy_dtype(dtype_enum)
    n = math.prod(shape)
    if content is not None and content[1] > content[0]:
        if dtype == dtypes.STRING:
            raise ProtoError("string tensor in tensor_content (not supported; string_val is)")
        if content[1] - content[0] != n * dtype.itemsize:
            raise ProtoError(f"tensor_content holds {content[1] - content[0]} bytes, shape "
                             f"{list(shape)} of {dtypes.name_of(dtype)} needs "
                             f"{n * dtype.itemsize}")
        return Spec(dtype_enum, dtype, shape, start, end, content, 0, attrs)
    count = _count(buf, start, end, dtype_enum)
    if 0 < count < n or (count == 0 and n):
        itemsize = 8 if dtype == dtypes.STRING else dtype.itemsize
        if n * itemsize > MAX_FILL:
            raise ProtoError(f"shape {list(shape)} filled from {count} value(s) would take "
                             f"{n * itemsize} bytes (more than {MAX_FILL} this reader fills)")
    return Spec(dtype_enum, dtype, shape, start, end, None, count, attrs)


def _count(buf, start: int, end: int, dtype_enum: int) -> int:
    field, how = _FIELDS[dtype_enum]
    count = 0
    for number, wire, a, b in proto.fields(buf, start, end):
        if number != field:
            continue
        if how == "byte":
            if wire != BYTES:
                raise ProtoError(f"field {number}: expected bytes, found a number")
            count = b - a  # a bytes field, not repeated: the last one wins
        elif how == "bytes":
            if wire != BYTES:
                raise ProtoError(f"field {number}: expected bytes, found a number")
            count += 1
        elif wire == BYTES:  # packed
            if how == "varint":
                run = np.frombuffer(buf, np.uint8, b - a, a)
                if len(run) and run[-1] & 0x80:
                    raise ProtoError(f"field {number}: truncated varint")
                count += int(np.count_nonzero(run < 0x80))
            else:
                if (b - a) % _WIDTH[how]:
                    raise ProtoError(f"field {number}: packed length {b - a} is not a "
                                     f"multiple of {_WIDTH[how]}")
                count += (b - a) // _WIDTH[how]
        elif wire == _WIRE[how]:
            count += 1
        else:
            raise ProtoError(f"field {number}: wire type {wire} for {how} values")
    if dtype_enum in (8, 18):  # complex numbers: two values each
        if count % 2:
            raise ProtoError(f"field {field}: odd number of values for complex numbers")
        count //= 2
    return count


def values(buf, spec: Spec) -> np.ndarray:
    """The tensor's values, filled to its shape as TensorFlow fills them."""
    if spec.content is not None:
        a, b = spec.content
        little = spec.dtype.newbyteorder("<") if spec.dtype.byteorder == ">" else spec.dtype
        n = math.prod(spec.shape)
        if not n:
            return np.empty(spec.shape, spec.dtype)
        array = np.frombuffer(buf, little, n, a).reshape(spec.shape)
        array.flags.writeable = False
        return array
    flat = _typed(buf, spec)
    n = math.prod(spec.shape)
    if len(flat) >= n:
        flat = flat[:n]
    elif len(flat):
        flat = np.concatenate([flat, np.full(n - len(flat), flat[-1], flat.dtype)])
    elif spec.dtype == dtypes.STRING:
        flat = np.full(n, b"", object)
    else:
        flat = np.zeros(n, spec.dtype)
    return flat.reshape(spec.shape)


def _typed(buf, spec: Spec) -> np.ndarray:
    field, how = _FIELDS[spec.dtype_enum]
    if how in ("byte", "bytes"):
        found = [bytes(buf[a:b]) for number, wire, a, b in proto.fields(buf, spec.start, spec.end)
                 if number == field]
        if how == "bytes":
            out = np.empty(len(found), object)
            out[:] = found
            return out
        data = found[-1] if found else b""
        return np.frombuffer(data, np.uint8).view(spec.dtype)
    raw_type = _RAW[how]
    parts: list[np.ndarray] = []
    loose: list[int] = []
    for number, wire, a, b in proto.fields(buf, spec.start, spec.end):
        if number != field:
            continue
        if wire == BYTES:
            if loose:
                parts.append(np.array(loose, raw_type))
                loose = []
            if how == "varint":
                parts.append(_varints(np.frombuffer(buf, np.uint8, b - a, a)))
            else:
                parts.append(np.frombuffer(buf, raw_type, (b - a) // raw_type.itemsize, a))
        else:
            loose.append(a)
    if loose:
        parts.append(np.array(loose, raw_type))
    raw = np.concatenate(parts) if parts else np.empty(0, raw_type)
    return _convert(raw, spec)


def _convert(raw: np.ndarray, spec: Spec) -> np.ndarray:
    enum, dtype = spec.dtype_enum, spec.dtype
    if enum in (1, 2):
        return raw.view(dtype)
    if enum in (8, 18):
        return raw.view(np.float32 if enum == 8 else np.float64).view(dtype)
    if enum == 10:
        return raw != 0
    if enum in (14, 19):
        return raw.astype(np.uint16).view(dtype)
    # Integers: int32 fields sign-extend to 64 bits on the wire; a cast keeps the low bits,
    # as TensorFlow's static_cast from the field's type does.
    return raw.view(np.int64).astype(dtype)


def _varints(run: np.ndarray) -> np.ndarray:
    """The varints packed in ``run`` (uint8), as uint64 (bits past 64 dropped, as protobuf
    parsers drop them)."""
    if not len(run):
        return np.empty(0, np.uint64)
    last = run < 0x80
    if not last[-1]:
        raise ProtoError("truncated varint")
    ends = np.flatnonzero(last)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    if int(lengths.max()) > 10:
        raise ProtoError("varint longer than 10 bytes")
    position = np.arange(len(run)) - np.repeat(starts, lengths)
    parts = (run & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    return np.bitwise_or.reduceat(parts, starts)
