"""The parts of the .npy format (numpy's ``numpy.lib.format``) that npy and npz share, plus the
side information converter keeps beside numpy's own: dtype names numpy cannot store (bfloat16 ...)
and byte-string tensors, which numpy could only pickle.
"""

from __future__ import annotations

import ast
import io
import math
import struct
from collections.abc import Callable
from typing import IO, Protocol

import numpy as np

from .. import dtypes
from ..errors import FormatError
from ..tensor import Tensor
from ._common import check_shape, first_line
from .stream import copy_to

MAGIC = b"\x93NUMPY"
MAX_HEADER = 1 << 20


class Reader(Protocol):
    """What :func:`read_header` reads from: a binary file, or a :class:`BufferReader`."""

    def read(self, n: int, /) -> bytes: ...


def read_header(f: Reader, where: str) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    """Parse an npy header at the file's position.

    Returns ``(dtype, shape, fortran_order, header_bytes)``; header_bytes counts from the magic.
    """
    magic = f.read(8)
    if len(magic) < 8 or magic[:6] != MAGIC:
        raise FormatError(f"{where}: not an .npy file (bad magic)")
    major = magic[6]
    if major == 1:
        raw = f.read(2)
        if len(raw) < 2:
            raise FormatError(f"{where}: truncated .npy header")
        (n,) = struct.unpack("<H", raw)
        fixed = 10
    elif major in (2, 3):
        raw = f.read(4)
        if len(raw) < 4:
            raise FormatError(f"{where}: truncated .npy header")
        (n,) = struct.unpack("<I", raw)
        fixed = 12
    else:
        raise FormatError(f"{where}: unsupported .npy version {major}.{magic[7]}")
    if n > MAX_HEADER:
        raise FormatError(f"{where}: .npy header length {n} is too large")
    text = f.read(n)
    if len(text) < n:
        raise FormatError(f"{where}: truncated .npy header")
    key = (major, text)
    parsed = _parsed.get(key)
    if parsed is None:
        parsed = _parse(major, text, where)
        if len(_parsed) < 4096:  # archives of many tensors repeat a few headers
            _parsed[key] = parsed
    return (*parsed, fixed + n)


_parsed: dict[tuple[int, bytes], tuple[np.dtype, tuple[int, ...], bool]] = {}


def _parse(major: int, text: bytes, where: str) -> tuple[np.dtype, tuple[int, ...], bool]:
    try:
        d = ast.literal_eval(text.decode("utf-8" if major == 3 else "latin1"))
        descr, fortran, shape = d["descr"], d["fortran_order"], d["shape"]
        dtype = np.lib.format.descr_to_dtype(descr)
    except Exception as exc:  # literal_eval and descr_to_dtype raise many kinds
        raise FormatError(f"{where}: malformed .npy header ({type(exc).__name__})") from None
    if not isinstance(fortran, bool):
        raise FormatError(f"{where}: malformed .npy header (fortran_order)")
    shape = check_shape(where, list(shape) if isinstance(shape, tuple) else shape)
    return dtype, shape, fortran


class BufferReader:
    """``read(n)`` over ``buf[start:end]`` (a memory map), for :func:`read_header` without a
    file object."""

    def __init__(self, buf, start: int, end: int) -> None:
        self.buf, self.pos, self.end = buf, start, end

    def read(self, n: int) -> bytes:
        data = bytes(self.buf[self.pos:min(self.pos + n, self.end)])
        self.pos += len(data)
        return data


def header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The .npy header for a C-order array (version 1.0 unless it needs 2.0, as numpy does)."""
    key = (dtype, tuple(shape))
    made = _headers.get(key)
    if made is None:
        made = _header(dtype, shape)
        if len(_headers) < 4096:
            _headers[key] = made
    return made


_headers: dict[tuple[np.dtype, tuple[int, ...]], bytes] = {}


def _header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    d = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
         "shape": tuple(shape)}
    out = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(out, d)
    except ValueError:
        out = io.BytesIO()
        np.lib.format.write_array_header_2_0(out, d)
    return out.getvalue()


def encode(tensor: Tensor) -> tuple[bytes, np.ndarray | None, dict[str, object] | None]:
    """How a tensor is stored in an .npy: ``(header, in-memory data or None, side entry)``.

    Data is None when the tensor's own bytes are stored as they are (streamed by the caller);
    dtypes numpy lacks keep their raw bits with a side entry naming the dtype; byte strings are
    encoded (they are small and have no span to stream from).
    """
    if tensor.dtype.hasobject:
        data = encode_strings(tensor.read())
        return header(data.dtype, data.shape), data, {"dtype": "string",
                                                      "shape": list(tensor.shape)}
    stored = dtypes.storage_dtype(tensor.dtype).newbyteorder("<")
    side: dict[str, object] | None = (
        None if dtypes.is_native(tensor.dtype) else {"dtype": dtypes.name_of(tensor.dtype)})
    return header(stored, tensor.shape), None, side


def write(f: IO[bytes], tensor: Tensor, encoded) -> None:
    """Write an .npy (header from :func:`encode`, then the data) to ``f``."""
    head, data, _ = encoded
    f.write(head)
    if data is None:
        copy_to(f, tensor)
    elif data.size:
        f.write(memoryview(data).cast("B"))


def encode_strings(array: np.ndarray) -> np.ndarray:
    """Byte strings as one uint8 array: little-endian uint64 lengths, then the bytes."""
    items = [bytes(x) if not isinstance(x, str) else x.encode() for x in array.reshape(-1)]
    lengths = np.array([len(x) for x in items], dtype="<u8")
    return np.frombuffer(lengths.tobytes() + b"".join(items), dtype=np.uint8)


def decode_strings(raw: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    count = math.prod(shape)
    data = raw.tobytes()
    if len(data) < 8 * count:
        raise FormatError(f"{where}: string tensor is truncated")
    lengths = np.frombuffer(data, dtype="<u8", count=count)
    if sum(lengths.tolist()) != len(data) - 8 * count:  # Python ints: uint64 sums wrap
        raise FormatError(f"{where}: string lengths do not match the stored bytes")
    out = np.empty(count, dtype=object)
    pos = 8 * count
    for i, n in enumerate(lengths.tolist()):
        out[i] = data[pos:pos + n]
        pos += n
    return out.reshape(shape)


def stored_shape_dtype(
    dtype: np.dtype, shape: tuple[int, ...], side: dict[str, object] | None, where: str
) -> tuple[np.dtype, tuple[int, ...]]:
    """The tensor's dtype and shape given the stored ones and its side entry."""
    if not side:
        return dtype, shape
    if not isinstance(side, dict):
        raise FormatError(f"{where}: malformed side entry {side!r:.80}")
    name = side.get("dtype")
    if name == "string":
        if dtype != np.uint8 or len(shape) != 1:
            raise FormatError(f"{where}: byte strings must be stored as a 1-d uint8 buffer, "
                              f"found {dtype} {list(shape)}")
        return dtypes.STRING, check_shape(where, side.get("shape"))
    if not isinstance(name, str) or name not in dtypes.ALL:
        raise FormatError(f"{where}: unknown dtype {name!r:.80} in the side entry")
    want = dtypes.from_name(name)
    if want.itemsize != dtype.itemsize:
        raise FormatError(f"{where}: stored dtype {dtype} cannot hold {name}")
    return want, shape


def restore(raw: np.ndarray, side: dict[str, object] | None, where: str) -> np.ndarray:
    if not side:
        return raw
    if side.get("dtype") == "string":
        return decode_strings(raw, check_shape(where, side.get("shape")), where)
    return dtypes.from_storage(raw, str(side["dtype"]))


def unpickled(where: str, load: Callable[[], object], name: str, prefix: str | None
              ) -> list[Tensor]:
    """The tensors of a pickled .npy (trusted: the caller was allowed to unpickle): a dict,
    nested or not, gives one tensor per array leaf named by its keys (under ``prefix`` unless
    None), an object array of byte or text strings a string tensor named ``name``; anything else
    is refused in one line naming the key."""
    try:
        value = load()
    except Exception as exc:  # unpickling runs arbitrary code: anything can come out of it
        raise FormatError(f"{where}: cannot unpickle it ({type(exc).__name__}: "
                          f"{first_line(exc)})") from None
    out: list[Tensor] = []

    def visit(obj: object, key: str | None) -> None:
        if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == () \
                and isinstance(obj.item(), dict):
            obj = obj.item()
        if isinstance(obj, dict):
            if not obj:
                raise FormatError(f"{where}: {_key(key)} is an empty dict, which holds no "
                                  "tensors")
            for k, v in obj.items():
                if isinstance(k, bytes):
                    k = k.decode("latin1")
                if not isinstance(k, str):
                    raise FormatError(f"{where}: {_key(key)} has a key {k!r:.80} that is not a "
                                      "string")
                visit(v, k if key is None else f"{key}/{k}")
            return
        tensor_name = name if key is None else key if prefix is None else f"{prefix}/{key}"
        if isinstance(obj, np.ndarray) and not obj.dtype.hasobject:
            array = obj
        elif isinstance(obj, np.ndarray) and all(
                isinstance(x, (bytes, str)) for x in obj.reshape(-1)):
            array = np.empty(obj.shape, dtype=object)
            for i, x in enumerate(obj.reshape(-1)):
                array.reshape(-1)[i] = x.encode() if isinstance(x, str) else x
        else:
            raise FormatError(f"{where}: {_key(key)} holds a value of type "
                              f"{type(obj).__name__}, not an array; only arrays (and dicts "
                              "of arrays) can be read")
        out.append(Tensor.from_array(tensor_name, array))

    visit(value, None)
    return out


def _key(key: str | None) -> str:
    return "the pickled object" if key is None else f"key {key!r}"
