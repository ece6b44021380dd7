"""What a batch item is, and which names are checkpoints.

:class:`Item` is the record discovery makes for every source kind (local trees, archives,
remote listings). Which file names are checkpoints comes from the format registry (the longest
suffix wins, as everywhere else) and, for the names the registry gives to TensorFlow, from the
bundle layout: ``PREFIX.index`` and its data shards are one checkpoint, found by its prefix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import registry, storage
from ..formats.tfbundle.layout import DATA_RE, STEP_RE

INDEX = ".index"  # a bundle's index: PREFIX.index beside PREFIX.data-NNNNN-of-NNNNN
# The index of a checkpoint sharded the Hugging Face way (NAME.safetensors.index.json beside
# NAME-0000i-of-0000N.safetensors): the shards are checkpoints by themselves, the index is not.
SHARDS_INDEX = ".index.json"


@dataclass(frozen=True)
class Item:
    """One checkpoint to convert.

    Attributes:
        source: what to read: a path, a TF prefix, or for archives the archive path.
        rel: its path relative to the batch source it was found under (mirrored under DIR).
        members: for archives, the members that make up the checkpoint (unpacked together);
            for remote sources, the URLs of its objects (downloaded together).
        read_as: inside the unpacked archive or download, the path to read.
        remote: the source is an fsspec URL.
        stamp: for remote sources, (size, modification stamp) as listed.
        sizes: for archives, the listed size of each member.
        problem: why the item cannot be converted, found before converting (it fails).
        unpacked: for archives, the directory its archive was unpacked into.
    """

    source: str
    rel: str
    members: tuple[str, ...] = ()
    read_as: str = ""
    files: tuple[str, ...] = field(default=(), compare=False)  # on-disk files, for size/mtime
    remote: bool = False
    stamp: tuple[int, Any] | None = field(default=None, compare=False)
    sizes: tuple[int, ...] = field(default=(), compare=False)
    problem: str | None = field(default=None, compare=False)
    unpacked: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        """Identity in the manifest and for sharding."""
        return f"{self.source}::{self.read_as}" if self.members and not self.remote \
            else self.source


def is_url(text: str | Path) -> bool:
    """A remote (fsspec) source or output; ``file://`` names a local path."""
    return storage.is_url(text)


def _is_tf(fmt: registry.Format | None) -> bool:
    return fmt is not None and fmt.name == "tf"


def is_bundle_index(name: str) -> bool:
    """``PREFIX.index`` of a TF bundle: a name (or path, or object key) ending in ``.index``
    that the registry gives to TensorFlow, not to a format with a longer suffix."""
    return name.endswith(INDEX) and _is_tf(registry.by_suffix(Path(name)))


def bundle_prefix(name: str) -> str | None:
    """The prefix that a bundle's index or data shard belongs to (a name, path or object key
    in, the same kind out); None for any other name."""
    if m := DATA_RE.match(name):
        return m.group("prefix")
    return name[: -len(INDEX)] if is_bundle_index(name) else None


def bundle_parts(prefix: str, names: Iterable[str]) -> list[str]:
    """The names among ``names`` that make up the bundle ``prefix``: its index and shards."""
    return [n for n in names if bundle_prefix(n) == prefix]


def is_checkpoint_name(name: str) -> bool:
    """A file name that the registry's suffixes claim as a checkpoint by itself. A pre-2016
    TF checkpoint is one file that may carry its step after the suffix (``model.ckpt-1000``).
    Index files of multi-file checkpoints are not checkpoints by themselves: a bundle's
    ``.index`` is found with its prefix, the shards of a sharded index one by one."""
    fmt = registry.by_suffix(Path(name))
    if bundle_prefix(name) is not None or _is_tf(fmt) and name.lower().endswith(INDEX):
        return False
    if fmt is None:
        step = STEP_RE.search(name)
        return step is not None and registry.by_suffix(Path(name[: step.start()])) is not None
    if name.lower().endswith(SHARDS_INDEX):
        return registry.by_suffix(Path(name[: -len(SHARDS_INDEX)])) is None
    return True


def placed(item: Item, subdir: str) -> Item:
    """``item`` mirrored under ``subdir`` (``.`` or empty: where it was)."""
    if subdir in ("", "."):
        return item
    return dataclasses.replace(item, rel=f"{subdir.rstrip('/')}/{item.rel}")
