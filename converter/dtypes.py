"""Dtype names shared by every format.

A dtype travels between formats by its canonical name (``float32``, ``bfloat16``, ``string`` ...).
ml_dtypes supplies the types numpy lacks; formats that cannot store them natively keep the raw bits
in an unsigned integer of the same width and record the name beside them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import FormatError

if TYPE_CHECKING:
    import numpy as np

    STRING: np.dtype  # numpy's object dtype: byte strings

# numpy is imported on first use, not with this module: listing a checkpoint knows its dtypes
# by name and needs no array, and importing numpy is much of what such a listing costs.

_NATIVE = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128",
)
# ml_dtypes names; resolved lazily because importing ml_dtypes costs start-up time.
_EXTENDED = (
    "bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
    "float8_e4m3b11fnuz", "int4", "uint4",
)

ALL = frozenset(_NATIVE + _EXTENDED + ("string",))

# Bytes per element of each name (ml_dtypes' 4-bit types take a byte each); 0 for strings,
# whose elements have no fixed size.
ITEMSIZE = {
    "bool": 1, "int8": 1, "int16": 2, "int32": 4, "int64": 8, "uint8": 1, "uint16": 2,
    "uint32": 4, "uint64": 8, "float16": 2, "float32": 4, "float64": 8, "complex64": 8,
    "complex128": 16, "bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1,
    "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1, "float8_e4m3b11fnuz": 1, "int4": 1,
    "uint4": 1, "string": 0,
}


def __getattr__(name: str) -> Any:
    if name == "STRING":
        globals()["STRING"] = found = from_name("string")
        return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_native(dtype: np.dtype) -> bool:
    """True if plain numpy (and so npy/npz/HDF5) knows this dtype without ml_dtypes."""
    try:
        return _native[dtype]
    except (KeyError, TypeError):
        pass
    native = dtype.kind in "biufc" and dtype.name in _NATIVE
    _native[dtype] = native
    return native


_native: dict[np.dtype, bool] = {}


_names: dict[np.dtype, str] = {}


def name_of(dtype: np.dtype) -> str:
    """Canonical name of a numpy dtype; object arrays are ``string`` (arrays of bytes)."""
    # numpy derives dtype.name anew on every access; listings of 20k tensors notice.
    try:
        return _names[dtype]
    except (KeyError, TypeError):
        pass
    import numpy as np

    name = _name_of(np.dtype(dtype))
    _names[np.dtype(dtype)] = name
    return name


def _name_of(dtype: np.dtype) -> str:
    if dtype.kind == "O":
        return "string"
    name = dtype.name
    if name in _NATIVE or name in _EXTENDED:
        return name
    raise FormatError(f"unsupported dtype {dtype!r}")


def from_name(name: str) -> np.dtype:
    """The numpy dtype for a canonical name."""
    found = _by_name.get(name)
    if found is not None:  # readers that know names ask once per tensor
        return found
    import numpy as np

    if name == "string":
        found = np.dtype(object)
    elif name in _NATIVE:
        found = np.dtype(name)
    elif name in _EXTENDED:
        import ml_dtypes

        found = np.dtype(getattr(ml_dtypes, name))
    else:
        raise FormatError(f"unknown dtype name {name!r}")
    _by_name[name] = found
    return found


_by_name: dict[str, np.dtype] = {}


def storage_dtype(dtype: np.dtype) -> np.dtype:
    """The native dtype that holds the raw bits of ``dtype`` (itself when it is native)."""
    import numpy as np

    dtype = np.dtype(dtype)
    if is_native(dtype) or dtype.kind == "O":
        return dtype
    return np.dtype(f"<u{dtype.itemsize}")


def to_storage(array: np.ndarray) -> np.ndarray:
    """View ``array`` as its storage dtype (no copy for C-contiguous input)."""
    target = storage_dtype(array.dtype)
    if target == array.dtype:
        return array
    return c_order(array).view(target)


def c_order(array: np.ndarray) -> np.ndarray:
    """``array`` in C order, keeping its rank (``np.ascontiguousarray`` turns 0-d into 1-d)."""
    return array if array.flags.c_contiguous else array.copy(order="C")


def from_storage(array: np.ndarray, name: str) -> np.ndarray:
    """Reinterpret raw bits stored natively as the dtype called ``name``."""
    dtype = from_name(name)
    if array.dtype == dtype:
        return array
    if array.dtype.itemsize != dtype.itemsize or array.dtype.kind == "O":
        raise FormatError(f"stored dtype {array.dtype} cannot hold {name}")
    return array.view(dtype)
