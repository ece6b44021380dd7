"""The batch manifest, ``DIR/manifest.jsonl``: one JSON record per item and run, appended as
items finish and fsynced at most every SYNC_EVERY seconds and at the end, so an interrupted
batch knows what it finished. A killed process loses nothing (each record is flushed to the
system at once); a lost machine loses at most the last SYNC_EVERY seconds of records, whose
items ``--resume`` converts again (outputs are renamed into place, so that is harmless)."""

from __future__ import annotations

import json
import os
import time
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any

from ..errors import ConverterWarning

MANIFEST = "manifest.jsonl"


@dataclass
class Result:
    """One line of the manifest.

    ``status`` is "done", "failed", "skipped" (done before, unchanged, same conversion) or,
    in a dry run, "planned". ``conversion`` identifies the format, rules and writer options
    the item was converted with; ``format`` is the source format where it is known.
    """

    source: str
    output: str
    status: str
    size: int
    mtime: float
    seconds: float = 0.0
    sha256: str | None = None
    error: str | None = None
    conversion: str | None = None
    format: str | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Result:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


def read_manifest(directory: Path) -> dict[str, dict]:
    """The last record of each source in ``directory/manifest.jsonl``. A line that is not a
    record (cut short when a run was killed mid-write) is skipped with a warning."""
    records: dict[str, dict] = {}
    path = directory / MANIFEST
    if not path.is_file():
        return records
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                records[record["source"]] = record
            except (ValueError, KeyError, TypeError):
                warnings.warn(f"{path}: line {number} is not a whole record (cut short by an "
                              "interruption?); ignored", ConverterWarning, stacklevel=2)
    return records


@contextmanager
def open_manifest(directory: Path) -> Iterator[IO[str]]:
    """The manifest, open for appending on a line of its own (after a torn last line, from a
    run killed mid-write, the next record must not be glued onto it); fsynced when closed."""
    path = directory / MANIFEST
    with open(path, "ab+") as f:
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
    with open(path, "a", encoding="utf-8") as manifest:
        try:
            yield manifest
        finally:
            with suppress(ValueError):  # closed already; a failed fsync is reported
                manifest.flush()
                os.fsync(manifest.fileno())


SYNC_EVERY = 0.2  # seconds: an fsync per item cost more than converting a small one
_synced: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # manifest -> last fsync


def log(manifest: Any, result: Result) -> None:
    """Append ``result`` (``manifest``: the open manifest, or what writes through to it)."""
    manifest.write(json.dumps(asdict(result)) + "\n")
    manifest.flush()
    now = time.monotonic()
    if now - _synced.get(manifest, -SYNC_EVERY) >= SYNC_EVERY:
        os.fsync(manifest.fileno())
        _synced[manifest] = now
