"""Small checkpoints covering the dtypes, shapes and names every format must round-trip."""

from __future__ import annotations

import ml_dtypes
import numpy as np

from converter import dtypes


def _special_floats(dtype) -> np.ndarray:
    values = np.array([0.0, -0.0, 1.5, -2.25, np.inf, -np.inf, np.nan], dtype=np.float64)
    out = values.astype(dtype)
    # A NaN with a non-default payload must survive bit for bit.
    bits = out.view(f"u{out.dtype.itemsize}")
    if out.dtype.itemsize >= 2 and dtype not in (ml_dtypes.float8_e4m3fn,):
        bits[-1] = bits[-1] | 1
    return out


def array_for(name: str, shape: tuple[int, ...] = (2, 3), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = dtypes.from_name(name)
    size = int(np.prod(shape))
    if name == "string":
        items = [bytes(rng.integers(0, 256, size=int(n), dtype=np.uint8))
                 for n in rng.integers(0, 5, size)]
        out = np.empty(size, dtype=object)
        out[:] = items
        return out.reshape(shape)
    if name == "bool":
        return rng.integers(0, 2, size).astype(bool).reshape(shape)
    if name in ("int4", "uint4"):
        lo, hi = (-8, 7) if name == "int4" else (0, 15)
        return rng.integers(lo, hi, size, endpoint=True).astype(dtype).reshape(shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size, dtype=dtype, endpoint=True).reshape(shape)
    if dtype.kind == "c":
        return (rng.standard_normal(size) + 1j * rng.standard_normal(size)).astype(
            dtype).reshape(shape)
    base = rng.standard_normal(size).astype(dtype)
    if size >= 7 and name in ("float16", "float32", "float64", "bfloat16"):
        base[:7] = _special_floats(dtype)
    return base.reshape(shape)


def sample(dtype_names) -> dict[str, np.ndarray]:
    """One tensor per dtype plus scalars, empty and high-rank tensors and awkward names."""
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(sorted(dtype_names)):
        out[f"dtypes/{name}"] = array_for(name, (3, 4), seed=i)
    if "string" in dtype_names:
        out["strings/scalar"] = np.array(b"\x00scalar\xff", dtype=object)
    if "float32" in dtype_names:
        out["dense/kernel"] = array_for("float32", (4, 5), 1)
        out["dense/kernel/Adam"] = array_for("float32", (4, 5), 2)  # a name that is also a scope
        out["scalar"] = np.float32(3.5) * np.ones((), np.float32)
        out["empty"] = np.zeros((0, 3), np.float32)
        out["rank6"] = array_for("float32", (1, 2, 1, 3, 1, 2), 3)
        out["odd name: é/. /%x"] = array_for("float32", (2,), 4)
        out["global_step"] = np.array(1000, np.int64)
    return out
