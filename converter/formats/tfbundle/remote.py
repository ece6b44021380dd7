"""Tensor bundles on remote storage: the index fetched whole (it is small), data by ranges.

A URL names a prefix, its ``.index`` or a data shard, or a prefix "directory": the
``checkpoint`` state file's latest, else the highest step; a SavedModel's ``variables/``. This
is :func:`layout.resolve` for object storage, where a state file naming a path of another
machine is the rule (training jobs record absolute local paths): only its last component is
looked up, beside the state file.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from ... import storage
from ...errors import ConverterWarning, CorruptionError, FormatError
from ...tensor import Checkpoint
from .._common import gc_paused
from .entry import BundleEntry
from .layout import (
    DATA_RE,
    MAX_SIZE,
    NAME,
    State,
    basename,
    format_state,
    parse_state,
    shards_pattern,
    step_of,
    updated_state,
)
from .reader import Bundle, checkpoint_of

MAX_INDEX = 1 << 31  # an index names tensors; one of 2 GiB is not a checkpoint's


def resolve_url(url: str) -> tuple[str, dict[str, Any]]:
    """The prefix URL that ``url`` names, and how it was found (``Source`` fields)."""
    meta: dict[str, Any] = {}
    leaf = storage.name(url)
    if url.endswith(".index"):
        prefix = url[: -len(".index")]
    elif m := DATA_RE.match(leaf):
        prefix = storage.join(storage.parent(url), m.group("prefix"))
    elif not url.endswith("/") and storage.exists(url + ".index"):
        prefix = url
    else:
        prefix = _in_directory(url.rstrip("/"), meta)
    if not storage.exists(prefix + ".index"):
        raise FormatError(f"{prefix}: no such checkpoint ({basename(prefix)}.index not found)")
    if (step := step_of(prefix)) >= 0:
        meta["step"] = step
    return prefix, meta


def _in_directory(url: str, meta: dict[str, Any]) -> str:
    names = storage.listing(url)
    if not names:
        raise FormatError(f"{url}: no such checkpoint ({storage.name(url)}.index not found, "
                          "and no objects under it)")
    directory = url
    if NAME not in names and "saved_model.pb" in names:
        directory = storage.join(url, "variables")
        names = storage.listing(directory)
        meta["saved_model"] = url
    found = sorted((n[: -len(".index")] for n in names if n.endswith(".index")),
                   key=lambda p: (step_of(p), p))
    everything = [storage.join(directory, p) for p in found]
    meta["checkpoints"] = [(p, s if (s := step_of(p)) >= 0 else None) for p in everything]
    latest = _state_latest(storage.join(directory, NAME)) if NAME in names else None
    if latest is not None:
        prefix = storage.join(directory, basename(latest))
        if basename(latest) + ".index" not in names:
            raise FormatError(f"{directory}/{NAME}: names checkpoint {latest}, which is not "
                              f"there ({basename(latest)}.index not found)")
        if basename(latest) != latest:
            warnings.warn(f"{directory}/{NAME}: names {latest}; using {basename(latest)} "
                          "beside it", ConverterWarning, stacklevel=4)
        return prefix
    if everything:
        return everything[-1]
    raise FormatError(f"{url}: no TensorFlow checkpoint here (no '{NAME}' state file and no "
                      ".index object)")


def _state_latest(url: str) -> str | None:
    state = read_state_url(url, stacklevel=6)
    return state.latest if state is not None else None


def read_state_url(url: str, *, stacklevel: int = 2) -> State | None:
    """The state file object ``url`` (which exists): :func:`layout.read_state` on object
    storage; None, with a warning, when it does not parse."""
    text = storage.RemoteFile(url).read_all(MAX_SIZE).decode("utf-8", "surrogateescape")
    try:
        return parse_state(text, url)
    except FormatError as exc:
        warnings.warn(f"{exc}; ignoring it", ConverterWarning, stacklevel=stacklevel)
        return None


def text_after_saving_url(directory: str, name: str) -> str:
    """The text of the state file in the prefix ``directory`` once prefix ``name`` has been
    saved there: the run's own state file, if it has one, merged as
    :func:`layout.text_after_saving` merges a local one."""
    url = storage.join(directory, NAME)
    old = read_state_url(url, stacklevel=3) if storage.exists(url) else None
    return format_state(updated_state(old, directory, name, by_name=True))


def own_objects(prefix: str) -> list[str]:
    """The objects of the bundle ``prefix`` that exist, in the order the local writer meets
    them: data shards of any count, then the index."""
    names = storage.listing(storage.parent(prefix))
    leaf = storage.name(prefix)
    claimed = re.compile(shards_pattern(leaf))
    found = sorted(n for n in names if claimed.fullmatch(n))
    if leaf + ".index" in names:
        found.append(leaf + ".index")
    return [storage.join(storage.parent(prefix), n) for n in found]


class RemoteBundle(Bundle):
    """A :class:`Bundle` whose index and shards are objects read by ranges."""

    def _index_name(self) -> str:
        return self.prefix + ".index"

    def _index_bytes(self) -> bytes:
        return storage.open_file(str(self.index_path)).read_all(MAX_INDEX)

    def shard_file(self, i: int) -> str:
        return f"{self.prefix}.data-{i:05d}-of-{self.num_shards:05d}"

    def _object(self, i: int, where: str) -> storage.RemoteFile:
        try:
            return storage.open_file(self.shard_file(i))
        except FormatError:
            if storage.exists(self.shard_file(i)):
                raise
            raise FormatError(f"{where}: data file {storage.name(self.shard_file(i))} is "
                              "missing") from None

    def span(self, name: str, entry: BundleEntry) -> tuple[bytes, int, int, str]:
        where = f"{self.shard_file(entry.shard)}: tensor {name!r}"
        obj = self._object(entry.shard, where)
        if entry.offset + entry.size > obj.size:
            raise CorruptionError(f"{where}: data at {entry.offset}+{entry.size} runs past "
                                  f"the end of the file ({obj.size} bytes); the file is truncated")
        return obj.pread(entry.offset, entry.size), 0, entry.size, where

    def _shard_size(self, i: int) -> int:
        try:
            return storage.open_file(self.shard_file(i)).size
        except FormatError:
            return 0

    def close(self) -> None:
        pass


def read_url(url: str, verify: bool = True) -> Checkpoint:
    prefix, meta = resolve_url(url)
    with gc_paused():
        return checkpoint_of(RemoteBundle(prefix, verify), meta)
