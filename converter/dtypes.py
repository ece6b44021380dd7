"""Dtype names shared by every format.

A dtype travels between formats by its canonical name (``float32``, ``bfloat16``, ``string`` ...).
ml_dtypes supplies the types numpy lacks; formats that cannot store them natively keep the raw bits
in an unsigned integer of the same width and record the name beside them.
"""

from __future__ import annotations

import numpy as np

from .errors import FormatError

STRING = np.dtype(object)

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
    name = _name_of(np.dtype(dtype))
    _names[np.dtype(dtype)] = name
    return name


def _name_of(dtype: np.dtype) -> str:
    if dtype == STRING:
        return "string"
    name = dtype.name
    if name in _NATIVE or name in _EXTENDED:
        return name
    raise FormatError(f"unsupported dtype {dtype!r}")


def from_name(name: str) -> np.dtype:
    """The numpy dtype for a canonical name."""
    if name == "string":
        return STRING
    if name in _NATIVE:
        return np.dtype(name)
    if name in _EXTENDED:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, name))
    raise FormatError(f"unknown dtype name {name!r}")


def storage_dtype(dtype: np.dtype) -> np.dtype:
    """The native dtype that holds the raw bits of ``dtype`` (itself when it is native)."""
    dtype = np.dtype(dtype)
    if is_native(dtype) or dtype == STRING:
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
    if array.dtype.itemsize != dtype.itemsize or array.dtype == STRING:
        raise FormatError(f"stored dtype {array.dtype} cannot hold {name}")
    return array.view(dtype)
