"""Writing tensor bundles that TensorFlow reads: data shards, then the index, then the
``checkpoint`` state file (``tensorflow/core/util/tensor_bundle/tensor_bundle.cc``)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ... import dtypes, proto
from ...crc32c import mask
from ...errors import ConverterWarning, FormatError
from ...outputs import outputs
from ...progress import tracked
from ...tensor import Checkpoint, Tensor
from ...tfnames import ATTR_SUFFIX, GRAPH_KEY
from .._common import check_dtype, split_by_size
from ..stream import copy_all
from . import objgraph
from .entry import encode_entry
from .layout import NAME, shard_path, shards_pattern, text_after_saving
from .reader import DT_NAMES, QUANTIZED
from .strings import write_strings
from .table import build_table

DT_ENUM = {name: enum for enum, name in DT_NAMES.items()}
DT_QUANTIZED = {tf_name: enum for enum, (tf_name, _) in QUANTIZED.items()}
BUNDLE_VERSION = 1  # kTensorBundleVersion


def _dt_enum(tensor: Tensor, where: str) -> int:
    tf_name = tensor.attrs.get("tf_dtype")
    if tf_name in DT_QUANTIZED:
        return DT_QUANTIZED[tf_name]
    name = dtypes.name_of(tensor.dtype)
    if name not in DT_ENUM:
        raise FormatError(f"{where}: tensor {tensor.name!r} has dtype {name}, which TensorFlow "
                          "checkpoints cannot store")
    return DT_ENUM[name]


KERAS3_WEIGHTS = "optimizer/_trainable_variables/"


def _with_object_graph(ckpt: Checkpoint, where: Path) -> list[Tensor]:
    """The tensors to write, with an object graph that matches them when they use TF2 keys."""
    tensors = [t for t in ckpt.values() if t.name != GRAPH_KEY]
    keys = [t.name for t in tensors]
    if not any(k.endswith(ATTR_SUFFIX) for k in keys):
        return list(ckpt.values())
    old = ckpt.get(GRAPH_KEY)
    if old is not None:
        try:
            raw = old.read().reshape(-1)[0]
            if objgraph.keys_of(objgraph.parse(raw)) == set(keys):
                return list(ckpt.values())
        except (proto.ProtoError, IndexError, AttributeError, TypeError):
            pass
    full_names = {t.name: t.attrs.get("full_name", "") for t in tensors if t.attrs.get("full_name")}
    paths = {t.name: t.attrs["object_path"] for t in tensors
             if t.kind == "variable" and t.attrs.get("object_path")
             and t.name != t.attrs["object_path"] + ATTR_SUFFIX}
    unplaced = [k for k in keys if k not in paths and k.startswith(KERAS3_WEIGHTS)]
    if unplaced:
        # Keras 3 tracks a model's trainable weights under the model as well; without their
        # model paths the rebuilt graph offers them under the optimizer only.
        warnings.warn(f"{where}: {len(unplaced)} weights are keyed only as "
                      f"{KERAS3_WEIGHTS}N (Keras 3) and their model paths are unknown: "
                      "tf.train.Checkpoint(model=...) will not restore them; keep the TF "
                      "checkpoint's object graph, or use converter.load_into(model, ...)",
                      ConverterWarning, stacklevel=4)
    graph = np.array(objgraph.build(keys, full_names, paths), dtype=object)
    return tensors + [Tensor.from_array(GRAPH_KEY, graph, kind="object_graph")]


def _write_group(f: BinaryIO, group: list[Tensor]) -> Iterator[tuple[Tensor, int, int]]:
    """Write tensors back to back; yields ``(tensor, bytes written, masked crc32c)``."""
    run: list[Tensor] = []
    for t in [*group, None]:
        if t is not None and not t.dtype.hasobject:
            run.append(t)
            continue
        for done, written, value in copy_all(f, run, want_crc=True):
            yield done, written, mask(value)
        run = []
        if t is not None:
            yield t, *write_strings(f, t.read(), t.name)


def prefix_for(path: Path) -> Path:
    if path.name.endswith(".index"):
        return path.with_name(path.name[: -len(".index")])
    if path.is_dir():
        return path / "model.ckpt"
    return path


def write_bundle(ckpt: Checkpoint, path: Path, *, force: bool = False, progress: bool = False,
                 max_shard_size: int | str | None = None, state_file: bool = True) -> None:
    prefix = prefix_for(path)
    tensors = _with_object_graph(ckpt, prefix)
    enums: dict[int, int] = {}  # by id: the tensors stay alive in ``tensors`` until written
    for t in tensors:
        if t.name[:1] in ("", "\x00"):  # the empty key holds the bundle header
            raise FormatError(f"{prefix}: tensor {t.name!r}: TensorFlow checkpoints cannot hold "
                              "an empty name or one starting with a NUL byte")
        # Before any file is made: a dtype no bundle can hold is refused up front, by name.
        check_dtype(prefix, t, "a TensorFlow checkpoint")
        enums[id(t)] = _dt_enum(t, str(prefix))
    # Assign shards up front so that file names (-of-N) are known before writing.
    shards = split_by_size(tensors, max_shard_size)
    n = len(shards)
    entries: dict[bytes, bytes] = {}
    with outputs(force) as out:
        # Shards of an earlier, larger bundle of this prefix go once the new index is in place.
        out.sweep(prefix.parent, shards_pattern(prefix.name))
        stream = iter(tracked(tensors, total=sum(t.nbytes for t in tensors), enabled=progress))
        for i, group in enumerate(shards):
            tmp = out.new(shard_path(prefix, i, n))
            with open(tmp, "wb") as f:
                offset = 0
                for t, written, value in _write_group(f, group):
                    next(stream)
                    try:
                        key = t.name.encode("utf-8")
                    except UnicodeEncodeError:
                        raise FormatError(f"tensor {t.name!r}: name is not valid UTF-8") from None
                    entries[key] = encode_entry(enums[id(t)], t.shape, i, offset, written, value)
                    offset += written
        header = proto.encode([(1, n), (3, proto.encode([(1, BUNDLE_VERSION)]))])
        table = build_table([(b"", header)] + sorted(entries.items()))
        out.new(prefix.with_name(prefix.name + ".index")).write_bytes(table)
        if state_file:
            state = prefix.parent / NAME
            text = text_after_saving(prefix.parent, prefix.name)
            out.force = True  # the state file is a pointer TF itself rewrites on every save
            out.new(state, pointer=True).write_text(text, encoding="utf-8")
