"""TensorFlow checkpoints in the tensor-bundle format, read and written without TensorFlow.

A checkpoint ``PREFIX`` is ``PREFIX.index`` (a LevelDB table: ``table.py``) mapping each tensor
name to a ``BundleEntryProto`` (``proto.py``), and ``PREFIX.data-NNNNN-of-NNNNN`` shards holding
the raw little-endian bytes (``reader.py``, ``writer.py``). TF2 object-based checkpoints add an
object graph (``objgraph.py``). Pre-2016 V1 checkpoints (one file, no ``.index``) are read
through TensorFlow when it is installed.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import FormatError
from ...tensor import Checkpoint, Source, Tensor
from .reader import _V1, DATA_RE, DT_NAMES, read_bundle
from .writer import write_bundle

DTYPES = frozenset(DT_NAMES.values())
METADATA = False  # a bundle has no place for free-form metadata


def sniff(path: Path) -> bool:
    if path.is_dir():
        return (path / "checkpoint").is_file() or any(path.glob("*.index")) or (
            path / "variables").is_dir() and any((path / "variables").glob("*.index"))
    if path.name.endswith(".index") and path.is_file():
        return True
    if path.name.endswith(".meta") and path.is_file() and _metagraph_prefix(path) is not None:
        return True  # claimed so that read() can say what it is
    if DATA_RE.match(path.name):
        return True
    if path.with_name(path.name + ".index").is_file():
        return True
    if path.is_file():
        from .reader import _looks_like_v1

        return _looks_like_v1(path)
    return False


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
    try:
        return read_bundle(path, verify=verify)
    except _V1:
        return _read_v1(path)


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
    import os

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
    except Exception as exc:  # TF raises its own error types
        raise FormatError(f"{path}: TensorFlow cannot read it: {exc}") from None
    shapes = reader.get_variable_to_shape_map()
    types = reader.get_variable_to_dtype_map()
    tensors = {}
    for name in sorted(shapes):
        dtype = types[name].as_numpy_dtype
        tensors[name] = Tensor(name, dtype, tuple(shapes[name]),
                               (lambda n=name: reader.get_tensor(n)))
    return Checkpoint(tensors, source=Source("tf", str(path), "tf1-v1"))


def write(ckpt: Checkpoint, path: Path, *, force: bool = False, progress: bool = False,
          max_shard_size: int | None = None, state_file: bool = True) -> None:
    """Write ``PREFIX.index`` and ``PREFIX.data-*`` (sharded at ``max_shard_size`` bytes), then
    update the ``checkpoint`` state file beside them."""
    write_bundle(ckpt, path, force=force, progress=progress, max_shard_size=max_shard_size,
                 state_file=state_file)
