"""Value transforms on entries: transpose, cast, reshape, merging axes, split, concat, gate
reordering, adding a constant.

Each primitive works out the new shape and dtype at once, so a transform that does not fit a
tensor fails when rules are applied or planned, not when a writer reads; the values are
computed when read. A transformed tensor has no byte span (its bytes differ from the file's).
The rules in ``transforms.py`` and the presets compose these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import dtypes
from ..dtypes import c_order
from ..errors import FormatError, RenameError
from .core import Entry


def _what(e: Entry) -> str:
    return f"tensor {e.name!r} of shape {list(e.shape or ())}"


def _axis(e: Entry, axis: int) -> int:
    if e.shape is None:
        return axis  # planned from a name: nothing is read, so nothing to normalise
    rank = len(e.shape)
    if not -rank <= axis < rank:
        raise RenameError(f"{_what(e)}: axis {axis} is out of range for rank {rank}")
    return axis % rank


def _take(array: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    return c_order(array[(slice(None),) * axis + (slice(start, stop),)])


def transpose(e: Entry, axes: Sequence[int]) -> Entry:
    """Permute the axes (``[1, 0]``: a dense kernel ``[in, out]`` to ``[out, in]``)."""
    axes = tuple(axes)
    shape = None
    if e.shape is not None:
        if sorted(axes) != list(range(len(e.shape))):
            raise RenameError(f"{_what(e)}: axes {list(axes)} are not a permutation of its "
                              f"{len(e.shape)} axes")
        shape = tuple(e.shape[a] for a in axes)
    return e.transformed(f"transpose {list(axes)}", shape, e.dtype,
                         lambda a: c_order(a.transpose(axes)))


def to_dtype(name: str) -> np.dtype:
    try:
        return dtypes.from_name(name)
    except FormatError:
        raise RenameError(f"unknown dtype {name!r} (known: {', '.join(sorted(dtypes.ALL))})"
                          ) from None


def cast(e: Entry, dtype: np.dtype, label: str | None = None) -> Entry:
    """Convert the values to ``dtype`` (numpy ``astype``: rounding, so not exact)."""
    if e.dtype is not None and (e.dtype.hasobject or np.dtype(dtype).hasobject):
        raise RenameError(f"tensor {e.name!r}: cannot cast {dtypes.name_of(e.dtype)} to "
                          f"{dtypes.name_of(dtype)}")
    if label is None:
        label = f"cast {dtypes.name_of(e.dtype) if e.dtype is not None else '?'}" \
                f"->{dtypes.name_of(dtype)}"
    # A TF quantized dtype recorded by the reader no longer describes the values.
    attrs = {k: v for k, v in e.attrs.items() if k != "tf_dtype"}
    return e.transformed(label, e.shape, np.dtype(dtype), lambda a: a.astype(dtype), attrs=attrs)


def reshape(e: Entry, shape: Sequence[int]) -> Entry:
    """Give the values a new shape with the same size; one dimension may be ``-1``."""
    wanted = tuple(shape)
    if wanted.count(-1) > 1 or any(d < -1 for d in wanted):
        raise RenameError(f"reshape to {list(wanted)}: at most one -1 and no other negative "
                          "dimension")
    new = None
    if e.shape is not None:
        size, known = math.prod(e.shape), math.prod(d for d in wanted if d != -1)
        if -1 in wanted and known and size % known == 0:
            new = tuple(size // known if d == -1 else d for d in wanted)
        elif -1 not in wanted and known == size:
            new = wanted
        else:
            raise RenameError(f"{_what(e)} ({size} values) cannot be reshaped to {list(wanted)}")
    return e.transformed(f"reshape {list(wanted)}", new, e.dtype,
                         lambda a: c_order(a).reshape(new))


def _merged(shape: tuple[int, ...], lo: int, hi: int) -> tuple[int, ...]:
    return shape[:lo] + (math.prod(shape[lo:hi + 1]),) + shape[hi + 1:]


def merge_axes(e: Entry, first: int, last: int) -> Entry:
    """Merge axes ``first``..``last`` (inclusive, consecutive) into one, in C order: an
    ``EinsumDense`` kernel ``[hidden, heads, head_size]`` with axes 1..2 becomes
    ``[hidden, heads * head_size]``, whatever the sizes (``reshape`` needs them fixed)."""
    shape = None
    if e.shape is not None:
        lo, hi = _axis(e, first), _axis(e, last)
        if lo > hi:
            raise RenameError(f"{_what(e)}: axes {first}..{last} are not in order")
        shape = _merged(e.shape, lo, hi)

    def fn(a: np.ndarray) -> np.ndarray:
        lo, hi = first % a.ndim, last % a.ndim
        return c_order(a).reshape(_merged(a.shape, lo, hi))

    return e.transformed(f"merge axes {first}..{last}", shape, e.dtype, fn)


def squeeze(e: Entry, axis: int) -> Entry:
    """Drop axis ``axis``, which must have length 1 (GPT-2's conv1d weights ``[1, in, out]``)."""
    shape = None
    if e.shape is not None:
        ndim = len(e.shape)
        if not -ndim <= axis < ndim or e.shape[axis] != 1:
            raise RenameError(f"{_what(e)}: axis {axis} is not of length 1, so it cannot be "
                              "squeezed")
        shape = e.shape[:axis % ndim] + e.shape[axis % ndim + 1:]
    return e.transformed(f"squeeze axis {axis}", shape, e.dtype,
                         lambda a: c_order(a.squeeze(axis)))


def unsqueeze(e: Entry, axis: int) -> Entry:
    """Insert an axis of length 1 at ``axis`` (``[in, out]`` back to GPT-2's ``[1, in, out]``)."""
    shape = None
    if e.shape is not None:
        ndim = len(e.shape) + 1
        if not -ndim <= axis < ndim:
            raise RenameError(f"{_what(e)}: cannot insert axis {axis} into {len(e.shape)} axes")
        at = axis % ndim
        shape = e.shape[:at] + (1,) + e.shape[at:]
    return e.transformed(f"unsqueeze axis {axis}", shape, e.dtype,
                         lambda a: c_order(np.expand_dims(a, axis)))


def _split_sizes(e: Entry, total: int, sizes: Sequence[int] | None, n: int) -> list[int]:
    if sizes is None:
        if total % n:
            raise RenameError(f"{_what(e)}: {total} does not split into {n} equal parts")
        return [total // n] * n
    sizes = list(sizes)
    if len(sizes) != n or sizes.count(-1) > 1 or any(s < -1 for s in sizes):
        raise RenameError(f"split sizes {sizes}: need {n} sizes, at most one of them -1")
    rest = total - sum(s for s in sizes if s != -1)
    if -1 in sizes and rest >= 0:
        sizes[sizes.index(-1)] = rest
    if sum(sizes) != total:
        raise RenameError(f"{_what(e)}: sizes {sizes} do not add up to {total}")
    return sizes


def split(e: Entry, axis: int, names: Sequence[str], sizes: Sequence[int] | None = None
          ) -> list[Entry]:
    """Cut along ``axis`` into parts named ``names`` (equal parts unless ``sizes`` is given)."""
    if len(names) < 2:
        raise RenameError("split needs at least two parts")
    ax = _axis(e, axis)
    if e.shape is None:
        return [e.transformed(f"split {i + 1}/{len(names)} of axis {axis}", None, e.dtype,
                              lambda a: a, name=name) for i, name in enumerate(names)]
    parts, start = [], 0
    sizes = _split_sizes(e, e.shape[ax], sizes, len(names))
    for name, size in zip(names, sizes, strict=True):
        shape = e.shape[:ax] + (size,) + e.shape[ax + 1:]
        stop = start + size

        def cut(a: np.ndarray, start: int = start, stop: int = stop) -> np.ndarray:
            return _take(a, ax, start, stop)

        parts.append(e.transformed(f"split axis {ax} [{start}:{stop}]", shape, e.dtype, cut,
                                   name=name))
        start = stop
    return parts


def concat(parts: Sequence[Entry], axis: int, name: str) -> Entry:
    """Join ``parts`` along ``axis`` into one tensor named ``name`` (e.g. a fused QKV)."""
    first = parts[0]
    shape = None
    ax = _axis(first, axis)
    shapes = [p.shape for p in parts if p.shape is not None]
    if len(shapes) == len(parts):
        head = shapes[0]
        for p, p_shape in zip(parts[1:], shapes[1:], strict=True):
            others = [d for i, d in enumerate(p_shape) if i != ax]
            if len(p_shape) != len(head) or p.dtype != first.dtype or others != [
                    d for i, d in enumerate(head) if i != ax]:
                raise RenameError(f"cannot concatenate {_what(first)} ({first.dtype}) and "
                                  f"{_what(p)} ({p.dtype}) along axis {axis}")
        shape = head[:ax] + (sum(s[ax] for s in shapes),) + head[ax + 1:]
    loads = [p.load for p in parts if p.load is not None]
    load: Callable[[], np.ndarray] | None = None
    if len(loads) == len(parts):
        def joined() -> np.ndarray:
            return c_order(np.concatenate([f() for f in loads], axis=ax))

        load = joined
    label = f"concat axis {axis} of " + " + ".join(p.name for p in parts)
    return Entry(name, tuple(s for p in parts for s in p.sources), first.kind, first.attrs,
                 shape, first.dtype, load, None, (label,))


def reorder(e: Entry, axis: int, perm: Sequence[int], label: str) -> Entry:
    """Cut ``axis`` into ``len(perm)`` equal blocks and put block ``perm[i]`` at position i."""
    ax = _axis(e, axis)
    n = len(perm)
    if e.shape is not None and e.shape[ax] % n:
        raise RenameError(f"{_what(e)}: axis {axis} ({e.shape[ax]}) is not {n} equal gates")

    def fn(a: np.ndarray) -> np.ndarray:
        blocks = np.split(a, n, axis=ax)
        return c_order(np.concatenate([blocks[p] for p in perm], axis=ax))

    return e.transformed(label, e.shape, e.dtype, fn)


def add_constant(e: Entry, value: float, axis: int = -1, block: int | None = None,
                 blocks: int | None = None) -> Entry:
    """Add ``value`` to every element, or only to block ``block`` of ``blocks`` equal blocks
    along ``axis`` (the forget gate of an LSTM bias)."""
    if e.dtype is not None and (e.dtype.hasobject or e.dtype == np.bool_):
        raise RenameError(f"tensor {e.name!r}: cannot add a number to {e.dtype}")
    index: tuple[Any, ...] = (Ellipsis,)
    label = f"add {value}"
    if blocks is not None:
        block = 0 if block is None else block
        ax = _axis(e, axis)
        if not 0 <= block < blocks:
            raise RenameError(f"block {block} is not one of {blocks} blocks")
        if e.shape is not None:
            if e.shape[ax] % blocks:
                raise RenameError(f"{_what(e)}: axis {axis} is not {blocks} equal blocks")
            width = e.shape[ax] // blocks
            index = (slice(None),) * ax + (slice(block * width, (block + 1) * width),)
        label += f" to block {block} of {blocks} on axis {axis}"

    def fn(a: np.ndarray) -> np.ndarray:
        out = np.array(a, copy=True, order="C")
        out[index] += np.asarray(value).astype(out.dtype)
        return out

    return e.transformed(label, e.shape, e.dtype, fn)


def gate_order(order: str) -> tuple[list[int], str]:
    """``"ijfo->ifjo"`` → the permutation ``[0, 2, 1, 3]`` and a label."""
    src, sep, dst = order.partition("->")
    if not sep or len(set(src)) != len(src) or sorted(src) != sorted(dst) or len(src) < 2:
        raise RenameError(f"gate order {order!r}: expected e.g. 'ijfo->ifjo' (the same "
                          "distinct letters on both sides)")
    return [src.index(c) for c in dst], f"gates {src}->{dst}"
