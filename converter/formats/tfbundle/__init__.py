"""TensorFlow checkpoints in the tensor-bundle format, read and written without TensorFlow.

A checkpoint ``PREFIX`` is ``PREFIX.index`` (a LevelDB table: ``table.py``) mapping each tensor
name to a ``BundleEntryProto`` (``entry.py``), and ``PREFIX.data-NNNNN-of-NNNNN`` shards holding
the raw little-endian bytes (``reader.py``, ``strings.py``, ``writer.py``); partitioned
variables store parts under encoded keys (``slices.py``). TF2 object-based checkpoints add an
object graph (``objgraph.py``). File names, steps, which checkpoint a path or directory names
and the ``checkpoint`` state file are the bundle layout (``layout.py``). Pre-2016 V1 checkpoints
(one file, no ``.index``) are read through TensorFlow when it is installed.

This module is the format's facade (``sniff``, ``read``, ``write``): it imports the reader and
the writer only when asked to read or write, so code that needs only the layout
(``converter.formats.tfbundle.layout``, which ``import converter`` loads for batch discovery)
pays for neither.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from ...errors import FormatError
from ...tensor import Checkpoint, Source, Tensor
from .._common import first_line
from .layout import DATA_RE, V1, looks_like_v1, v1_in


def sniff(path: Path) -> bool:
    if path.is_dir():
        return os.path.lexists(path / "checkpoint") or any(path.glob("*.index")) or (
            path / ".index").exists() or (
            path / "variables").is_dir() and any((path / "variables").glob("*.index")) or bool(
            v1_in(path))
    # exists(), not is_file(): a FIFO of a checkpoint's name is refused by the reader, in words.
    if path.name.endswith(".index") and path.exists():
        return True
    if path.name.endswith(".meta") and path.is_file() and _metagraph_prefix(path) is not None:
        return True  # claimed so that read() can say what it is
    if DATA_RE.match(path.name):
        return True
    if path.with_name(path.name + ".index").exists():
        return True
    return looks_like_v1(path)


def read(path: Path, *, verify: bool = True) -> Checkpoint:
    """Open a checkpoint given its prefix, ``.index`` file, a data shard or a directory (the
    ``checkpoint`` state file's latest, or the highest step; a SavedModel's ``variables/``).
    A ``PREFIX.meta`` graph is refused with a message naming ``PREFIX``: it holds no weights,
    and reading the checkpoint beside it instead would hide which file was converted."""
    if path.name.endswith(".meta") and path.is_file():
        prefix = _metagraph_prefix(path)
        if prefix is not None:
            beside = f"its checkpoint is {prefix} (use that prefix)" if _is_prefix(prefix) \
                else f"no checkpoint {prefix.name} ({prefix.name}.index) is beside it"
            raise FormatError(f"{path}: a TensorFlow MetaGraph (graph, not weights); {beside}")
    from .reader import read_bundle

    try:
        return read_bundle(path, verify=verify)
    except V1 as old:
        return _read_v1(Path(old.path))


def read_url(url: str, *, verify: bool = True) -> Checkpoint:
    """A checkpoint on remote storage (see :mod:`.remote`): the index is fetched, each
    tensor's bytes are read by range when asked for."""
    from .remote import read_url as read_remote

    return read_remote(url, verify=verify)


def _is_prefix(prefix: Path) -> bool:
    return prefix.with_name(prefix.name + ".index").is_file()


def _metagraph_prefix(path: Path) -> Path | None:
    """The prefix a ``PREFIX.meta`` Saver file belongs to, if it is one: a checkpoint beside
    it, or content that opens like a serialized MetaGraphDef (field 1 or 2, length-delimited)."""
    prefix = path.with_name(path.name[: -len(".meta")])
    if _is_prefix(prefix):
        return prefix
    with open(path, "rb") as f:
        return prefix if f.read(1) in (b"\x0a", b"\x12") else None


def _read_v1(path: Path) -> Checkpoint:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter
    try:
        import tensorflow as tf
    except ImportError:
        raise FormatError(
            f"{path}: a pre-2016 (V1) TensorFlow checkpoint; reading this old format needs "
            'TensorFlow: pip install "ckpt-converter[tf]"'
        ) from None
    try:
        reader = tf.compat.v1.train.NewCheckpointReader(str(path))
        shapes = reader.get_variable_to_shape_map()
        types = reader.get_variable_to_dtype_map()
    except Exception as exc:  # TF raises its own error types
        raise FormatError(f"{path}: TensorFlow cannot read it: {first_line(exc)}") from None

    def load(name: str):
        try:
            return reader.get_tensor(name)
        except Exception as exc:  # e.g. NotFoundError: a V1 data file that is not there
            raise FormatError(f"{path}: tensor {name!r}: TensorFlow cannot read it: "
                              f"{first_line(exc)}") from None

    tensors = {}
    for name in sorted(shapes):
        dtype = types[name].as_numpy_dtype
        tensors[name] = Tensor(name, dtype, tuple(shapes[name]), partial(load, name))
    return Checkpoint(tensors, source=Source("tf", str(path), "tf1-v1"))


def write(ckpt: Checkpoint, path: Path, *, force: bool = False, progress: bool = False,
          max_shard_size: int | str | None = None, state_file: bool = True) -> None:
    """Write ``PREFIX.index`` and ``PREFIX.data-*`` (sharded at ``max_shard_size`` bytes), then
    update the ``checkpoint`` state file beside them."""
    from .writer import write_bundle

    write_bundle(ckpt, path, force=force, progress=progress, max_shard_size=max_shard_size,
                 state_file=state_file)
