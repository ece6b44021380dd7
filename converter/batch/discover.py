"""Finding the checkpoints behind batch sources: files, TF prefixes, training directories,
globs and archives. Each found checkpoint is an :class:`Item` with the output path that mirrors
its place in the input tree."""

from __future__ import annotations

import errno
import glob
import hashlib
import os
from dataclasses import replace
from pathlib import Path

from .. import registry
from ..errors import UsageError
from ..formats.tfbundle.layout import basename, prefixes_in, read_state, step_of
from .archive import ARCHIVES, MAX_DEPTH, list_members
from .items import (
    INDEX,
    Item,
    bundle_parts,
    bundle_prefix,
    is_bundle_index,
    is_checkpoint_name,
    is_url,
    placed,
)


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVES)


def discover(sources: list[str], *, latest: bool = False) -> list[Item]:
    """Every checkpoint under ``sources``, in a stable order, each once."""
    items: dict[str, Item] = {}
    seen: set[str] = set()  # real paths: a symlinked directory or a glob loop finds it again

    def take(item: Item) -> None:
        real = item.key if item.remote else os.path.realpath(item.source) + "::" + item.read_as
        if item.key not in items and real not in seen:
            items[item.key] = item
            seen.add(real)

    for src in sources:
        if is_url(src):
            from .remote import remote_items

            for item in remote_items(src, latest):
                take(item)
            continue
        src = src.removeprefix("file://")
        if glob.has_magic(src):
            try:
                paths = [Path(p) for p in sorted(glob.glob(src, recursive=True))]
            except RecursionError:  # the standard glob recurses once per directory level
                raise UsageError(f"{src}: the tree is too deep to search with a pattern; "
                                 "give the directory instead") from None
            if not paths:
                raise UsageError(f"{src}: matches nothing")
            base = Path(static_base(src))
            paths = without_graphs_of_matched_bundles(paths)
        else:
            paths = [Path(src)]
            base = None
            if not paths[0].exists() and not _is_prefix(paths[0]):
                raise UsageError(f"{src}: no such file or directory")
        for path in paths:
            for item in _expand(path, latest):
                if base is not None and not path.is_dir() and not is_archive(path):
                    # Files a pattern matched keep the directories between it and them, so
                    # that run_a/model.ckpt-3 and run_b/model.ckpt-3 stay two outputs.
                    item = placed(item, os.path.relpath(path.parent, base))
                take(item)
    return list(items.values())


def static_base(pattern: str) -> str:
    """The directory a glob pattern searches from: its leading parts without magic."""
    parts = pattern.split("/")
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return "/".join(fixed) or ("/" if pattern.startswith("/") else ".")


def without_graphs_of_matched_bundles(paths: list[Path]) -> list[Path]:
    """``paths`` without the ``.meta`` graphs of bundles whose ``.index`` was matched too: the
    bundle is the item (``model.ckpt-*`` matches its graph as well)."""
    names = {str(p) for p in paths}
    return [p for p in paths
            if not (p.name.endswith(".meta") and str(p)[:-len(".meta")] + INDEX in names)]



def _is_prefix(path: Path) -> bool:
    index = path.name + INDEX
    return is_bundle_index(index) and path.with_name(index).is_file()


def _label(path: Path) -> str:
    # The name a source is mirrored under: ``..`` or ``.`` stand for the directory they name.
    name = path.name
    if name in ("", ".", ".."):
        name = Path(os.path.realpath(path)).name
    return name


def _expand(path: Path, latest: bool) -> list[Item]:
    if is_archive(path):
        return _archive_items(path, latest)
    if path.is_dir():
        return _dir_items(path, _label(path), latest)
    if _is_prefix(path):
        return [_prefix_item(path, path.name)]
    if path.is_file():
        name = bundle_prefix(path.name)
        if name == "":  # run/.index: no name to mirror the output under
            return [Item(str(path), path.name, files=(str(path),), problem=(
                f"{path}: a TF checkpoint with no name before {path.name[len(name):]}; "
                "convert it with 'ckpt convert'"))]
        if name is not None:
            prefix = path.with_name(name)
            return [_prefix_item(prefix, prefix.name)]
        return [Item(str(path), path.name, files=(str(path),))]
    # A glob match that is neither (a dangling link, a link loop): the item fails, others go on.
    try:
        os.stat(path)
        why = "not a regular file or directory"
    except OSError as exc:
        why = "a symbolic link loop" if exc.errno == errno.ELOOP else \
            f"cannot be read ({exc.strerror})"
    return [Item(str(path), path.name, problem=f"{path}: {why}")]


def _prefix_item(prefix: Path, rel: str) -> Item:
    shards = bundle_parts(str(prefix), map(str, prefix.parent.glob(glob.escape(prefix.name)
                                                                     + ".data-*")))
    files = [str(prefix) + INDEX, *sorted(shards)]
    return Item(str(prefix), rel, files=tuple(files))


def _whole(directory: Path) -> bool:
    """A directory that is one checkpoint (a SavedModel, an npy directory we wrote): one holding
    a file some format marks such directories with."""
    return any((directory / name).is_file() for name in registry.directory_marks())


def _whole_item(directory: Path, rel: str) -> Item:
    files = []
    for dirpath, _, names, _ in _walk(directory):
        files += [str(dirpath / n) for n in names]
    return Item(str(directory), rel, files=tuple(sorted(files)))


def _walk(root: Path):
    """``os.walk`` without recursion (a tree thousands of directories deep must not exhaust
    the stack) and without following links to directories (no loops); yields
    ``(directory, dirnames, filenames, too_deep)``, top-down, so callers may prune
    ``dirnames``. Directories deeper than MAX_DEPTH are yielded with ``too_deep`` and not
    entered."""
    stack = [(root, 0)]
    while stack:
        directory, depth = stack.pop()
        if depth > MAX_DEPTH:
            yield directory, [], [], True
            continue
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError:
            continue
        dirnames = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        filenames = sorted(e.name for e in entries if not e.is_dir(follow_symlinks=False))
        yield directory, dirnames, filenames, False
        stack += [(directory / d, depth + 1) for d in reversed(dirnames)]


def _dir_items(root: Path, label: str, latest: bool) -> list[Item]:
    if _whole(root):
        return [_whole_item(root, label)]
    out: list[Item] = []
    for directory, dirnames, filenames, too_deep in _walk(root):
        if too_deep:
            out.append(Item(str(directory), f"{label}/<too deep>", problem=(
                f"{str(directory)[:80]}...: nested more than {MAX_DEPTH} directories deep; "
                "not searched")))
            continue
        rel = Path(label) / directory.relative_to(root)
        for name in [n for n in dirnames if _whole(directory / n)]:
            out.append(_whole_item(directory / name, str(rel / name)))
            dirnames.remove(name)  # taken whole: do not look inside
        # A Path cannot hold an empty basename (run/.index): those are read whole elsewhere.
        prefixes = [Path(p) for p in prefixes_in(directory)
                    if basename(p) and is_bundle_index(basename(p) + INDEX)]
        if latest and prefixes:
            state = read_state(directory)
            recorded = state.latest if state is not None else None
            named = [p for p in prefixes if recorded and p.name == Path(recorded).name]
            prefixes = named or prefixes[-1:]
        out += [_prefix_item(prefix, str(rel / prefix.name)) for prefix in prefixes]
        for name in filenames:
            f = directory / name
            if is_archive(f):
                out += [replace(i, rel=str(rel / i.rel)) for i in _archive_items(f, latest)]
            elif f.is_file() and is_checkpoint_name(name) and not _is_prefix(f) \
                    and registry.detect_or_none(f) is not None:
                out.append(Item(str(f), str(rel / f.name), files=(str(f),)))
    return out


def _archive_items(archive: Path, latest: bool) -> list[Item]:
    try:
        listed = list_members(archive)
    except UsageError as exc:  # this archive fails; the rest of the batch goes on
        return [Item(str(archive), archive.name, files=(str(archive),), problem=str(exc))]
    label = archive.name
    for suffix in sorted(ARCHIVES, key=len, reverse=True):
        if label.lower().endswith(suffix):
            label = label[: -len(suffix)]
            break
    sizes = {m.name: m.size for m in listed}
    problems = {m.name: m.problem for m in listed if m.problem}
    by_dir: dict[str, list[str]] = {}
    for member in listed:
        by_dir.setdefault(member.name.rpartition("/")[0], []).append(member.name)
    out: list[Item] = []

    def item(rel_name: str, parts: tuple[str, ...], read_as: str) -> Item:
        problem = next((problems[p] for p in parts if p in problems), None)
        rel = f"{label}/{rel_name}" if problem is None else f"{label}/<member>"
        return Item(str(archive), rel, parts, read_as, files=(str(archive),),
                    sizes=tuple(sizes[p] for p in parts),
                    problem=f"{archive}: {problem}" if problem else None)

    for _, members in sorted(by_dir.items()):
        prefixes = sorted({m[: -len(INDEX)] for m in members if is_bundle_index(m)},
                          key=lambda p: (step_of(p), p))
        if latest and prefixes:
            prefixes = prefixes[-1:]
        for prefix in prefixes:
            out.append(item(prefix, tuple(bundle_parts(prefix, members)), prefix))
        for m in members:
            if m not in prefixes and is_checkpoint_name(m.rpartition("/")[2]):
                out.append(item(m, (m,), m))
    return out


def in_shard(item: Item, shard: tuple[int, int] | None) -> bool:
    """``--shard i/n`` (i counts from 1): a stable hash of the item decides, so every machine
    agrees without coordination and adding inputs does not reshuffle the others."""
    if shard is None:
        return True
    i, n = shard
    digest = hashlib.sha256(item.key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % n == i - 1
