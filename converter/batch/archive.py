"""Archives as batch sources: listing members once, unpacking the ones a batch needs in one
pass, with the containment, size and free-space checks an archive from elsewhere calls for.

Reading members one by one would re-read a compressed tar from its start for each member (and
re-parse a zip's central directory), so an archive is unpacked once into scratch space and its
items are converted from there.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import UsageError

ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")
MAX_DEPTH = 255  # directories a member (or a source tree) may nest; deeper is refused
UNPACK_RATIO = 20  # default cap on unpacked bytes: this many times the archive's size ...
UNPACK_FLOOR = 1 << 30  # ... but never below this


@dataclass(frozen=True)
class Member:
    """A regular file in an archive, or why it cannot be taken."""

    name: str
    size: int
    problem: str | None = None


def member_problem(name: str) -> str | None:
    """Why a member name cannot be unpacked under the scratch directory, if it cannot."""
    if name.count("/") > MAX_DEPTH:
        return f"member {name[:60]!r}... is nested more than {MAX_DEPTH} directories deep"
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts or "\\" in name:
        return f"member {name!r} points outside the archive"
    return None


def list_members(archive: Path) -> list[Member]:
    """The archive's regular files in archive order; one pass over the archive. A name whose
    last entry is not a regular file (a link shadowing an earlier file) is listed with a
    problem: extracting it would not give the file."""
    import tarfile  # with zipfile, only for archives: they pull in bz2 and lzma at start-up
    import zipfile

    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                found = {i.filename: Member(i.filename, i.file_size)
                         for i in zf.infolist() if not i.is_dir()}
        else:
            found = {}
            with tarfile.open(archive) as tf:
                for m in tf:
                    if m.isfile():
                        found[m.name] = Member(m.name, m.size)
                    elif m.name in found and not m.isdir():
                        found[m.name] = Member(m.name, 0, f"member {m.name!r} is a link that "
                                                          "shadows a file of the same name")
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise UsageError(f"{archive}: unreadable archive ({exc})") from None
    return [m if m.problem else Member(m.name, m.size, member_problem(m.name))
            for m in found.values()]


def default_limit(archive: Path) -> int:
    return max(UNPACK_RATIO * archive.stat().st_size, UNPACK_FLOOR)


def extract(archive: Path, wanted: dict[str, int], into: Path, limit: int | None = None
            ) -> None:
    """Unpack the members named in ``wanted`` (name → listed size) into ``into`` in one pass.

    Raises UsageError (naming the archive) when the members would unpack to more than
    ``limit`` bytes (default: :func:`default_limit`), when the disk lacks the room, or when a
    member cannot be read.
    """
    import tarfile
    import zipfile

    limit = default_limit(archive) if limit is None else limit
    total = sum(wanted.values())
    if total > limit:
        raise UsageError(f"{archive}: members would unpack to {total} bytes, more than the "
                         f"limit of {limit} (raise it with --max-unpacked SIZE)")
    into.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(into).free
    if total > free:
        raise UsageError(f"{archive}: members unpack to {total} bytes, but only {free} are "
                         f"free in {into}")
    budget = [limit]
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for name in wanted:
                    with zf.open(name) as src:
                        _write(src, _target(into, name), budget, archive)
        else:
            with tarfile.open(archive, "r|*") as tf:  # streaming: one pass, no seeks
                for m in tf:
                    if m.name in wanted and m.isfile():
                        reader = tf.extractfile(m)
                        if reader is None:  # tarfile gives every regular file one; if not, say so
                            raise UsageError(f"{archive}: member {m.name!r} cannot be read")
                        _write(reader, _target(into, m.name), budget, archive)
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise UsageError(f"{archive}: cannot unpack ({exc})") from None


def _target(into: Path, name: str) -> Path:
    problem = member_problem(name)
    if problem is not None:  # listed members are checked already; this guards other callers
        raise UsageError(problem)
    target = into.joinpath(*PurePosixPath(name).parts)
    os.makedirs(target.parent, exist_ok=True)
    return target


def _write(src, target: Path, budget: list[int], archive: Path) -> None:
    # The cap counts bytes as written too: a member may hold more than its header declared.
    with open(target, "wb") as dst:
        while chunk := src.read(8 << 20):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise UsageError(f"{archive}: members unpack to more than the limit "
                                 "(raise it with --max-unpacked SIZE)")
            dst.write(chunk)
