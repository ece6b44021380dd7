"""Finding the checkpoints behind batch sources: files, TF prefixes, training directories,
globs and archives. Each found checkpoint is an :class:`Item` with the output path that mirrors
its place in the input tree."""

from __future__ import annotations

import glob
import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import registry
from ..errors import UsageError
from ..formats.tfbundle.reader import DATA_RE, _state_file_prefixes, list_prefixes

ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")
FILE_SUFFIXES = (".npz", ".npy", ".h5", ".hdf5", ".safetensors")
STEP = re.compile(r"-(\d+)$")


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
    """

    source: str
    rel: str
    members: tuple[str, ...] = ()
    read_as: str = ""
    files: tuple[str, ...] = field(default=(), compare=False)  # on-disk files, for size/mtime
    remote: bool = False
    stamp: tuple[int, Any] | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """Identity in the manifest and for sharding."""
        return f"{self.source}::{self.read_as}" if self.members and not self.remote \
            else self.source


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVES)


def discover(sources: list[str], *, latest: bool = False) -> list[Item]:
    """Every checkpoint under ``sources``, in a stable order, each once."""
    items: dict[str, Item] = {}
    for src in sources:
        if "://" in src and not src.startswith("file://"):
            from .remote import remote_items

            for item in remote_items(src, latest):
                items.setdefault(item.key, item)
            continue
        src = src.removeprefix("file://")
        paths = [Path(p) for p in sorted(glob.glob(src, recursive=True))] if glob.has_magic(
            src) else [Path(src)]
        if not paths:
            raise UsageError(f"{src}: matches nothing")
        for path in paths:
            for item in _expand(path, latest):
                items.setdefault(item.key, item)
    return list(items.values())


def _expand(path: Path, latest: bool) -> list[Item]:
    if is_archive(path):
        return _archive_items(path, latest)
    if path.is_dir():
        return _dir_items(path, path.name, latest)
    if path.with_name(path.name + ".index").is_file():
        return [_prefix_item(path, path.name)]
    if path.is_file():
        m = DATA_RE.match(path.name)
        if path.name.endswith(".index") or m:
            prefix = path.with_name(m.group("prefix") if m else path.name[: -len(".index")])
            return [_prefix_item(prefix, prefix.name)]
        return [Item(str(path), path.name, files=(str(path),))]
    raise UsageError(f"{path}: no such file or directory")


def _prefix_item(prefix: Path, rel: str) -> Item:
    files = [prefix.with_name(prefix.name + ".index"),
             *sorted(prefix.parent.glob(glob.escape(prefix.name) + ".data-*"))]
    return Item(str(prefix), rel, files=tuple(str(f) for f in files))


def _whole(directory: Path) -> bool:
    """A directory that is one checkpoint: a SavedModel or an npy directory we wrote."""
    return (directory / "saved_model.pb").is_file() or (directory / "converter-index.json"
                                                         ).is_file()


def _whole_item(directory: Path, rel: str) -> Item:
    files = tuple(str(f) for f in sorted(directory.rglob("*")) if f.is_file())
    return Item(str(directory), rel, files=files)


def _dir_items(root: Path, label: str, latest: bool) -> list[Item]:
    if _whole(root):
        return [_whole_item(root, label)]
    out: list[Item] = []
    for dirpath, dirnames, _ in os.walk(root):
        directory = Path(dirpath)
        rel = Path(label) / directory.relative_to(root)
        dirnames.sort()
        for name in [n for n in dirnames if _whole(directory / n)]:
            out.append(_whole_item(directory / name, str(rel / name)))
            dirnames.remove(name)  # taken whole: do not look inside
        prefixes = list_prefixes(directory)
        if latest and prefixes:
            recorded, _ = _state_file_prefixes(directory)
            named = [p for p in prefixes if recorded and p.name == Path(recorded).name]
            prefixes = named or prefixes[-1:]
        out += [_prefix_item(prefix, str(rel / prefix.name)) for prefix in prefixes]
        for f in sorted(directory.iterdir()):
            if is_archive(f):
                out += [replace(i, rel=str(rel / i.rel)) for i in _archive_items(f, latest)]
            elif f.is_file() and f.name.lower().endswith(FILE_SUFFIXES) \
                    and registry.detect_or_none(f) is not None:
                out.append(Item(str(f), str(rel / f.name), files=(str(f),)))
    return out


def _archive_items(archive: Path, latest: bool) -> list[Item]:
    names = _members(archive)
    label = archive.name
    for suffix in ARCHIVES:
        if label.lower().endswith(suffix):
            label = label[: -len(suffix)]
            break
    by_dir: dict[str, list[str]] = {}
    for name in names:
        by_dir.setdefault(str(Path(name).parent), []).append(name)
    out: list[Item] = []
    for _, members in sorted(by_dir.items()):
        prefixes = sorted({m[: -len(".index")] for m in members if m.endswith(".index")},
                          key=lambda p: (_step(p), p))
        if latest and prefixes:
            prefixes = prefixes[-1:]
        for prefix in prefixes:
            parts = tuple(m for m in members if m == prefix + ".index"
                          or DATA_RE.match(Path(m).name) and m.startswith(prefix + ".data-"))
            out.append(Item(str(archive), str(Path(label) / prefix), parts, prefix,
                            files=(str(archive),)))
        for m in members:
            if m.lower().endswith(FILE_SUFFIXES):
                out.append(Item(str(archive), str(Path(label) / m), (m,), m,
                                files=(str(archive),)))
    return out


def _step(prefix: str) -> int:
    m = STEP.search(prefix)
    return int(m.group(1)) if m else -1


def _members(archive: Path) -> list[str]:
    import tarfile  # with zipfile, only for archives: they pull in bz2 and lzma at start-up
    import zipfile

    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                return [i.filename for i in zf.infolist() if not i.is_dir()]
        with tarfile.open(archive) as tf:
            return [m.name for m in tf.getmembers() if m.isfile()]
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise UsageError(f"{archive}: unreadable archive ({exc})") from None


def unpack(item: Item, into: Path) -> Path:
    """Extract the item's members into ``into`` (safely: no paths outside it); returns the path
    to read."""
    import tarfile
    import zipfile

    archive = Path(item.source)
    root = into.resolve()
    for name in item.members:
        target = (into / name).resolve()
        if root not in target.parents:
            raise UsageError(f"{archive}: member {name!r} points outside the archive")
        target.parent.mkdir(parents=True, exist_ok=True)
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf, zf.open(name) as src, open(target, "wb") as dst:
                _copy(src, dst)
        else:
            with tarfile.open(archive) as tf:
                src = tf.extractfile(name)
                if src is None:
                    raise UsageError(f"{archive}: member {name!r} is not a regular file")
                with src, open(target, "wb") as dst:
                    _copy(src, dst)
    return into / item.read_as


def _copy(src, dst) -> None:
    while chunk := src.read(8 << 20):
        dst.write(chunk)


def in_shard(item: Item, shard: tuple[int, int] | None) -> bool:
    """``--shard i/n`` (i counts from 1): a stable hash of the item decides, so every machine
    agrees without coordination and adding inputs does not reshuffle the others."""
    if shard is None:
        return True
    i, n = shard
    digest = hashlib.sha256(item.key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % n == i - 1
