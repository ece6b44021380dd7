"""Creation order of checkpoint tensors, for ``match="order"``.

Model variables come in creation order; a checkpoint's tensors must be put in theirs before
the two can be paired one after the other. A tensor bundle sorts its keys (``layer10`` before
``layer2``), and so does safetensors, so their key order says nothing. The order comes from,
best first:

1. the ``.meta`` beside a TF1 checkpoint (``tf.compat.v1.train.Saver`` writes one): the
   MetaGraphDef's ``variables`` collection lists the graph's variables as they were created
   (``tensorflow/core/protobuf/meta_graph.proto``, ``variable.proto``);
2. the source's own order where the format keeps it: a dict of arrays, npz members (unless
   they are sorted by name, as an npz converted from a bundle is), a Keras 2 ``.h5`` file's
   layer list;
3. numbered names, compared in natural order: ``layer2`` < ``layer10``, ``dense`` <
   ``dense_1`` < ``dense_2`` < ``dense_10``. Names that differ in more than their numbers
   (``gamma`` and ``beta``, ``encoder`` and ``decoder``) give no order.

When several unused tensors fit a variable and none of these orders them, pairing stops with
a :class:`LoadError` listing the candidates.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import proto
from ..errors import FormatError, LoadError, option
from ..tensor import Checkpoint
from ..tfnames import natural_key

# The number TF and Keras append to a repeated name: "dense_3", "layer10".
_NUMBER = re.compile(r"_?\d+")
# Formats whose readers list tensors sorted by name (HDF5 too, but for a Keras 2 layer list).
SORTED_FORMATS = ("tf", "safetensors", "npy")
META_VARIABLES = "variables"  # tf.compat.v1.GraphKeys.GLOBAL_VARIABLES


def skeleton(name: str) -> str:
    """The name without its numbers: names that share one are ordered by their numbers."""
    return _NUMBER.sub("", name)


def _facts(ckpt: Checkpoint) -> tuple[str | None, str | None, str | None]:
    """``(format, layout, TF prefix)`` as the reader recorded them; all None for a checkpoint
    made in memory."""
    source = ckpt.source
    if source is None:
        return None, None, None
    return source.format, source.layout, source.path


def creation_rank(raw: Checkpoint) -> dict[str, int] | None:
    """``{tensor name: position}`` in creation order, from a ``.meta`` beside the checkpoint or
    the source's own order; None when neither is known (names decide, see :func:`first`)."""
    fmt, layout, prefix = _facts(raw)
    if fmt == "tf" and prefix:
        names = meta_variables(Path(prefix + ".meta"))
        if names is not None:
            return {n: i for i, n in enumerate(names)}
    if fmt in SORTED_FORMATS or fmt == "hdf5" and layout != "keras2":
        return None
    names = list(raw)
    if fmt == "npz" and len(names) > 1 and names == sorted(names):
        # Members listed by name (an npz converted from a bundle or safetensors) are in the
        # sorted order of their source, not the order they were created in.
        return None
    return {n: i for i, n in enumerate(names)}


def renamed_rank(rank: dict[str, int] | None, raw: Checkpoint, rules: Any
                 ) -> dict[str, int] | None:
    """``rank`` in the names ``rules`` give the tensors."""
    if rank is None or rules is None:
        return rank
    out = {}
    for row in rules.plan(raw):
        if len(row.sources) == 1 and row.sources[0] in rank:
            out[row.name] = rank[row.sources[0]]
    return out


def meta_variables(path: Path) -> list[str] | None:
    """The checkpoint names of the graph's variables in creation order, from a MetaGraphDef
    file; None when there is no such file. Partitioned variables count once, by full name."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with f:
        if not f.seek(0, 2):
            raise FormatError(f"{path}: empty MetaGraphDef")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                return _variables(memoryview(buf))
            except proto.ProtoError as exc:
                raise FormatError(f"{path}: not a MetaGraphDef ({exc})") from None


def _variables(buf: memoryview) -> list[str]:
    names: list[str] = []
    try:
        for number, start, end in _fields(buf, 0, len(buf)):
            if number != 4:  # collection_def; the graph itself is skipped, never copied
                continue
            entry = proto.decode(buf, start, end)
            if proto.last_bytes(entry, 1) != META_VARIABLES.encode():
                continue
            collection = proto.decode(proto.last_bytes(entry, 2))
            for raw in proto.decode(proto.last_bytes(collection, 2)).get(1, []):
                variable = proto.decode(raw)
                name = proto.last_bytes(variable, 1).decode("utf-8", "replace")
                sliced = proto.last_bytes(variable, 4)
                if sliced:
                    name = proto.last_bytes(proto.decode(sliced), 1).decode("utf-8", "replace")
                name = name[:-2] if name.endswith(":0") else name
                if name not in names:
                    names.append(name)
    finally:
        buf.release()
    return names


def _fields(buf: memoryview, pos: int, end: int):
    """``(field number, start, end)`` of each length-delimited top-level field."""
    while pos < end:
        key, pos = proto.read_varint(buf, pos, end)
        wire = key & 7
        if wire == proto.BYTES:
            n, pos = proto.read_varint(buf, pos, end)
            if n > end - pos:
                raise proto.ProtoError("field runs past the file")
            yield key >> 3, pos, pos + n
            pos += n
        elif wire == proto.VARINT:
            pos = proto.read_varint(buf, pos, end)[1]
        elif wire in (proto.FIXED32, proto.FIXED64):
            pos += 4 if wire == proto.FIXED32 else 8
        else:
            raise proto.ProtoError(f"unsupported wire type {wire}")


def first(candidates: list[str], rank: dict[str, int] | None, variable: str,
          describe: Callable[[str], str]) -> str:
    """The candidate created first; LoadError listing them when nothing orders them."""
    if rank is not None and all(c in rank for c in candidates):
        return min(candidates, key=rank.__getitem__)
    if len({skeleton(c) for c in candidates}) == 1:
        keys = [natural_key(c) for c in candidates]
        if len(set(keys)) == len(keys):
            return candidates[keys.index(min(keys))]
    shown = ", ".join(describe(c) for c in candidates[:8]) + (
        f" (+{len(candidates) - 8} more)" if len(candidates) > 8 else "")
    raise LoadError(f"{option('match-order')}: {len(candidates)} checkpoint tensors fit "
                    f"variable {variable!r} and nothing tells which was created first: {shown}; "
                    f"pair them by name with rename rules ({option('rename')})")
