"""Batch sources and outputs on remote storage through fsspec (``s3://``, ``gs://`` ...).

A remote checkpoint is read where it lies, by ranged reads (:mod:`converter.storage`); outputs
for a remote DIR are written in a scratch directory and uploaded under it.
"""

from __future__ import annotations

from pathlib import Path

from .. import storage
from ..errors import FormatError, UsageError
from .archive import MAX_DEPTH
from .items import INDEX, Item, bundle_parts, is_bundle_index, is_checkpoint_name


def remote_items(url: str, latest: bool = False) -> list[Item]:
    """The checkpoints under a remote prefix: TF bundles (by their ``.index``) and files."""
    fs, root = storage.filesystem(url)
    protocol = url.split("://", 1)[0]
    root = root.rstrip("/")
    try:
        found = storage.call(url, "listing", fs.find, root, detail=True)
        if not found and storage.call(url, "looking it up", fs.isfile, root):
            found = {root: storage.call(url, "looking it up", fs.info, root)}
    except FileNotFoundError:
        raise UsageError(f"{url}: cannot list (no such bucket or container)") from None
    label = Path(root).name
    items = []
    by_dir: dict[str, list[str]] = {}
    for path in sorted(found):
        by_dir.setdefault(str(Path(path).parent), []).append(path)
    for _, paths in sorted(by_dir.items()):
        prefixes = sorted(p[: -len(INDEX)] for p in paths if is_bundle_index(p))
        if latest and prefixes:
            prefixes = prefixes[-1:]
        for prefix in prefixes:
            items.append(_item(protocol, root, label, prefix, bundle_parts(prefix, paths), found))
        for p in paths:
            if is_checkpoint_name(p.rpartition("/")[2]):
                items.append(_item(protocol, root, label, p, [p], found))
    return items


def key_problem(root: str, path: str) -> str | None:
    return storage.key_problem(root, path, MAX_DEPTH)


def _item(protocol: str, root: str, label: str, path: str, parts: list[str],
          info: dict[str, dict]) -> Item:
    size = sum(int(info[p].get("size") or 0) for p in parts)
    stamp = max(str(info[p].get("LastModified") or info[p].get("mtime") or "") for p in parts)
    problem = next((why for p in parts if (why := key_problem(root, p))), None)
    if problem is None:
        rel = f"{label}/{path[len(root) + 1:]}" if path != root else label
    else:
        rel = f"{label}/<object>"
    return Item(f"{protocol}://{path}", rel, tuple(f"{protocol}://{p}" for p in parts),
                path.rpartition("/")[2], remote=True, stamp=(size, stamp),
                problem=f"{protocol}://{path}: {problem}" if problem else None)


def upload(local: list[Path], out_url: str, rel_parent: str) -> None:
    """Upload the files (and directories) of one output under ``out_url/rel_parent``, one
    object per file, indexes after the data they name (:func:`storage.upload_all`)."""
    _, root = storage.filesystem(out_url)
    protocol = out_url.split("://", 1)[0]
    target = f"{protocol}://{root.rstrip('/')}/{rel_parent}".rstrip("/")
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
