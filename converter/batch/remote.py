"""Batch sources and outputs on remote storage through fsspec (``s3://``, ``gs://`` ...).

A remote source names what a local one does (:func:`converter.batch.discover.discover`): an
object, a TF prefix (or its index or a shard), a prefix ("directory") searched for
checkpoints, or a pattern (``*``, ``?``, ``[...]``, ``**``) expanded by the storage's glob.
A remote checkpoint is read where it lies, by ranged reads (:mod:`converter.storage`); outputs
for a remote DIR are written in a scratch directory and uploaded under it.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any

from .. import registry, storage
from ..errors import FormatError, UsageError
from ..formats.tfbundle.layout import step_of
from .archive import ARCHIVES, MAX_DEPTH
from .items import (
    INDEX,
    Item,
    bundle_parts,
    bundle_prefix,
    is_bundle_index,
    is_checkpoint_name,
    placed,
)


def remote_items(url: str, latest: bool = False) -> list[Item]:
    """The checkpoints behind a remote source; UsageError where it names nothing (a missing
    object or prefix, a pattern that matches nothing), as for a local source."""
    if glob.has_magic(url.split("://", 1)[1]):
        return _matched(url, latest)
    fs, root = storage.filesystem(url)
    protocol = url.split("://", 1)[0]
    root = root.rstrip("/")
    found = _find(fs, url, root)
    if found and set(found) != {root}:
        return _listed(protocol, root, found, latest)
    info = found.get(root) or _info(fs, url, root)
    if info is not None and info.get("type") == "directory":
        return []  # a prefix holding only its own marker: an empty directory
    if info is not None:
        return [_named(fs, url, protocol, root, info)]
    index = _info(fs, url, root + INDEX)
    if index is not None and is_bundle_index(root + INDEX) and index.get("type") != "directory":
        return [_bundle(fs, url, protocol, root)]
    raise UsageError(f"{url}: no such file or directory")


def _find(fs: Any, url: str, root: str) -> dict[str, dict]:
    """Every object under ``root`` (or ``root`` itself, where it is one), by path."""
    try:
        found = storage.call(url, "listing", fs.find, root, detail=True)
    except FileNotFoundError:  # no such bucket
        return {}
    return {p: i for p, i in found.items() if i.get("type") != "directory"}


def _info(fs: Any, url: str, path: str) -> dict | None:
    try:
        return storage.call(url, "looking it up", fs.info, path)
    except FileNotFoundError:
        return None


def _matched(url: str, latest: bool) -> list[Item]:
    """The items of what a pattern matches, each as if named: objects and "directories"."""
    protocol, rest = url.split("://", 1)
    magic = re.search(r"[*?[]", rest)
    cut = rest.rfind("/", 0, magic.start() if magic else len(rest))
    if cut < 0:
        raise UsageError(f"{url}: a pattern in the bucket (or host) name is not supported")
    tail = rest[cut + 1:]
    if any(seg in ("", ".", "..") for seg in tail.rstrip("/").split("/")):
        raise UsageError(f"{url}: '.', '..' or empty parts in a URL are refused (name the "
                         "object by its plain path)")
    fs, base = storage.filesystem(f"{protocol}://{rest[:cut]}")
    # As in Python's glob: ``**`` searches any depth as a whole part and is ``*`` elsewhere.
    tail = "/".join(seg if seg == "**" else re.sub(r"\*\*+", "*", seg)
                    for seg in tail.split("/"))
    try:
        matches = storage.call(url, "matching", fs.glob, f"{base.rstrip('/')}/{tail}",
                               detail=True)
    except FileNotFoundError:
        matches = {}
    if not matches:
        raise UsageError(f"{url}: matches nothing")
    items: list[Item] = []
    root = base.rstrip("/")
    paths = {p.rstrip("/") for p in matches}
    for path, info in sorted(matches.items()):
        path = path.rstrip("/")
        if info.get("type") == "directory":
            found = _find(fs, url, path)
            items += _listed(protocol, path, found, latest)
        elif not (path.endswith(".meta") and path[:-len(".meta")] + INDEX in paths):
            # as for local patterns: the directories between the pattern's base and the
            # object kept; a graph matched with its bundle is the bundle's
            parent = path.rpartition("/")[0]
            items.append(placed(_named(fs, url, protocol, path, info),
                                parent[len(root) + 1:] if parent.startswith(root + "/") else ""))
    return items


def _named(fs: Any, url: str, protocol: str, path: str, info: dict) -> Item:
    """The item of one object named (or matched): a bundle's index or shard stands for its
    prefix; any other object is an item, which fails if it is no checkpoint."""
    name, source = path.rpartition("/")[2], _url(protocol, path)
    prefix = bundle_prefix(path)
    if prefix is not None and prefix.endswith("/"):  # run/.index: no name to mirror it under
        return Item(source, name, remote=True, problem=(
            f"{source}: a TF checkpoint with no name before {name}; convert it with "
            "'ckpt convert'"))
    if prefix is not None:
        return _bundle(fs, url, protocol, prefix)
    if name.lower().endswith(ARCHIVES):
        return Item(source, name, remote=True, problem=(
            f"{source}: archives are unpacked from local files only; download it first"))
    return _item(protocol, path, [path], {path: info}, name)


def _bundle(fs: Any, url: str, protocol: str, prefix: str) -> Item:
    """The item of the TF bundle ``prefix``: its index and the shards listed beside it."""
    parent = prefix.rpartition("/")[0]
    try:
        entries = storage.call(url, "listing", fs.ls, parent, detail=True)
    except FileNotFoundError:
        entries = []
    beside = {str(e["name"]).rstrip("/"): e for e in entries if e.get("type") != "directory"}
    parts = bundle_parts(prefix, sorted(beside)) or [prefix + INDEX]
    return _item(protocol, prefix, parts, beside, prefix.rpartition("/")[2])


def _listed(protocol: str, root: str, found: dict[str, dict], latest: bool) -> list[Item]:
    """The checkpoints among the objects under the prefix ``root``: a "directory" holding a
    file some format marks such directories with (a SavedModel, an npy directory) as one
    item, TF bundles by their index, other objects by their names."""
    label = Path(root).name
    marks = registry.directory_marks()
    whole: list[str] = []
    for d in sorted({p.rpartition("/")[0] for p in found if p.rpartition("/")[2] in marks}):
        if not any(d == w or d.startswith(w + "/") for w in whole):
            whole.append(d)  # the outermost: a marked directory inside it is part of it
    items = [_under(protocol, root, label, d, sorted(p for p in found if p.startswith(d + "/")),
                    found) for d in whole]
    by_dir: dict[str, list[str]] = {}
    for path in sorted(found):
        if not any(path.startswith(w + "/") for w in whole):
            by_dir.setdefault(str(Path(path).parent), []).append(path)
    for _, paths in sorted(by_dir.items()):
        # By step, then name, and the state file's latest first, as for a local directory.
        prefixes = sorted((p[: -len(INDEX)] for p in paths if is_bundle_index(p)),
                          key=lambda p: (step_of(p), p.rpartition("/")[2]))
        if latest and prefixes:
            prefixes = _latest(protocol, prefixes, paths)
        for prefix in prefixes:
            items.append(_under(protocol, root, label, prefix, bundle_parts(prefix, paths),
                                found))
        for p in paths:
            if is_checkpoint_name(p.rpartition("/")[2]):
                items.append(_under(protocol, root, label, p, [p], found))
    return items


def _latest(protocol: str, prefixes: list[str], paths: list[str]) -> list[str]:
    """The prefix the directory's ``checkpoint`` state file names, else the highest step."""
    from ..formats.tfbundle.remote import read_state_url

    directory = prefixes[0].rpartition("/")[0]
    state = None
    if f"{directory}/checkpoint" in paths:
        state = read_state_url(_url(protocol, f"{directory}/checkpoint"), stacklevel=4)
    recorded = state.latest.rpartition("/")[2] if state is not None and state.latest else None
    named = [p for p in prefixes if recorded and p.rpartition("/")[2] == recorded]
    return named or prefixes[-1:]


def key_problem(root: str, path: str) -> str | None:
    return storage.key_problem(root, path, MAX_DEPTH)


def _under(protocol: str, root: str, label: str, path: str, parts: list[str],
           info: dict[str, dict]) -> Item:
    """The item at ``path`` found under ``root``, mirrored under ``label``."""
    problem = next((why for p in parts if (why := key_problem(root, p))), None)
    if problem is not None:
        return _item(protocol, path, parts, info, f"{label}/<object>",
                     f"{_url(protocol, path)}: {problem}")
    return _item(protocol, path, parts, info,
                 f"{label}/{path[len(root) + 1:]}" if path != root else label)


def _item(protocol: str, path: str, parts: list[str], info: dict[str, dict], rel: str,
          problem: str | None = None) -> Item:
    listed = [info[p] for p in parts if p in info]
    size = sum(int(i.get("size") or 0) for i in listed)
    stamp = max((str(i.get("LastModified") or i.get("mtime") or "") for i in listed),
                default="")
    return Item(_url(protocol, path), rel, tuple(_url(protocol, p) for p in parts),
                path.rpartition("/")[2], remote=True, stamp=(size, stamp), problem=problem)


def _url(protocol: str, path: str) -> str:
    # Paths of some file systems (http) keep their scheme; those of most (s3) do not.
    return path if "://" in path else f"{protocol}://{path}"


def upload(local: list[Path], out_url: str, rel_parent: str) -> None:
    """Upload the files (and directories) of one output under ``out_url/rel_parent`` (DIR
    itself where ``rel_parent`` is empty), one object per file, indexes after the data they
    name (:func:`storage.upload_all`)."""
    _, root = storage.filesystem(out_url)
    protocol = out_url.split("://", 1)[0]
    target = "/".join(p for p in (_url(protocol, root.rstrip("/")), rel_parent.strip("/"))
                      if p)
    pairs = []
    for path in local:
        if path.is_dir():
            pairs += [(str(f), f"{target}/{path.name}/{f.relative_to(path).as_posix()}")
                      for f in sorted(path.rglob("*")) if f.is_file()]
        else:
            pairs.append((str(path), f"{target}/{path.name}"))
    storage.upload_all(pairs)


def read_bytes(url: str) -> bytes | None:
    """The object at ``url``, or None where there is none: one request, and no decoding (a
    manifest cut short mid-character is still read line by line)."""
    fs, path = storage.filesystem(url)
    try:  # not cat(): that takes [ or * in the name for a pattern
        return storage.call(url, "read", fs.cat_file, path)
    except FileNotFoundError:
        return None


def write_bytes(url: str, data: bytes) -> None:
    fs, path = storage.filesystem(url)
    try:
        storage.call(url, "upload", fs.pipe_file, path, data)
    except FileNotFoundError:
        raise FormatError(f"{url}: cannot write there (no such bucket or container)") from None
