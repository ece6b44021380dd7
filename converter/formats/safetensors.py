"""safetensors: https://github.com/huggingface/safetensors (format described in its README).

Layout: 8-byte little-endian header length N, N bytes of JSON header
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``,
padded with spaces to a multiple of 8), then the data buffer. We read and write the format
directly so that reading maps the file and writing streams one tensor at a time.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from .. import dtypes
from ..errors import FormatError
from ..outputs import outputs
from ..progress import tracked
from ..tensor import Checkpoint, Tensor
from ._common import check_shape, frombuffer, map_file
from ._stream import copy_to

# safetensors dtype code <-> canonical dtype name
CODES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16",
    "F16": "float16", "BF16": "bfloat16", "I32": "int32", "U32": "uint32", "F32": "float32",
    "F64": "float64", "I64": "int64", "U64": "uint64", "F8_E5M2": "float8_e5m2",
    "F8_E4M3": "float8_e4m3fn", "C64": "complex64",
}
NAMES = {v: k for k, v in CODES.items()}
DTYPES = frozenset(NAMES)  # what this format stores, by canonical dtype name
MAX_HEADER = 100 * 2**20


def sniff(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and n <= path.stat().st_size - 8


def read(path: Path) -> Checkpoint:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise FormatError(f"{path}: truncated safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, MAX_HEADER):
            raise FormatError(f"{path}: header length {n} exceeds the file size {size}")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise FormatError(f"{path}: safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise FormatError(f"{path}: __metadata__ must map strings to strings")
    start = 8 + n
    data_size = size - start
    buf = map_file(path)
    tensors: dict[str, Tensor] = {}
    ranges = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise FormatError(f"{path}: tensor {name!r}: header entry is not an object")
        code = info.get("dtype")
        if code not in CODES:
            raise FormatError(f"{path}: tensor {name!r}: unsupported dtype {code!r}")
        dtype = dtypes.from_name(CODES[code])
        shape = check_shape(path, name, info.get("shape"))
        offsets = info.get("data_offsets")
        if (
            not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_size
        ):
            raise FormatError(f"{path}: tensor {name!r}: data_offsets {offsets!r} outside the data")
        nbytes = math.prod(shape) * dtype.itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise FormatError(
                f"{path}: tensor {name!r}: {offsets[1] - offsets[0]} bytes stored, "
                f"{nbytes} expected for shape {list(shape)} {CODES[code]}"
            )
        ranges.append((offsets[0], offsets[1], name))
        tensors[name] = Tensor(
            name, dtype, shape,
            (lambda d=dtype, s=shape, o=start + offsets[0]: frombuffer(buf, d, s, o)),
            span=(str(path), start + offsets[0], nbytes),
        )
    ranges.sort()
    for (_, e0, n0), (b1, _, n1) in zip(ranges, ranges[1:], strict=False):
        if b1 < e0:
            raise FormatError(f"{path}: tensors {n0!r} and {n1!r} overlap")
    closers = [buf.close] if hasattr(buf, "close") else []
    return Checkpoint(tensors, metadata, closers=closers)


def header_for(ckpt: Checkpoint, path: Path) -> tuple[bytes, list[Tensor]]:
    """The padded header bytes for ``ckpt`` and the tensors in data order."""
    header: dict[str, object] = {}
    if ckpt.metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in ckpt.metadata.items()}
    offset = 0
    order = []
    for name, tensor in ckpt.items():
        if name == "__metadata__":
            raise FormatError(f"{path}: tensor {name!r}: the name is reserved in safetensors")
        dtype_name = dtypes.name_of(tensor.dtype)
        code = NAMES.get(dtype_name)
        if code is None:
            raise FormatError(
                f"{path}: tensor {name!r} has dtype {dtype_name}, which safetensors cannot store"
            )
        nbytes = tensor.size * tensor.dtype.itemsize
        header[name] = {"dtype": code, "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
        order.append(tensor)
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw, order


def write(ckpt: Checkpoint, path: Path, *, force: bool = False, progress: bool = False) -> None:
    head, order = header_for(ckpt, path)
    with outputs(force) as out:
        tmp = out.new(path)
        with open(tmp, "wb") as f:
            f.write(head)
            for tensor in tracked(order, total=ckpt.nbytes, enabled=progress):
                copy_to(f, tensor)
