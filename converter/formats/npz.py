"""numpy .npz: a zip archive of .npy members (``numpy.lib.format``), one per tensor.

Member ``NAME.npy`` holds tensor ``NAME``, as ``numpy.load`` expects, unless the name needs an
escape (``_common.name_to_path``: ``%``, ``\\``, control characters and ``:*?"<>|`` become
``%XX``; the parts ``.``, ``..`` and the empty part ``%2E``, ``%2E%2E`` and ``%``: ``../up`` is
``%2E%2E/up.npy``), so no member of an archive we write is absolute or climbs out of the
directory it is extracted to; the side member maps such members back to their names. Names that
are not valid Unicode are refused. Dtypes numpy cannot store (bfloat16, float8) are kept as raw
bits in an unsigned integer of the same width, and byte-string tensors as a uint8 buffer (uint64
lengths, then the bytes) instead of a pickle; the member ``__converter__.json`` records their
real dtype, escaped names and the checkpoint metadata.
Uncompressed members are read through a memory map; ``compress=True`` writes deflated members.
Pickled members (``allow_pickle=True``) are unpickled when opened, as in ``npy``: a member
``det1.npy`` holding a dict of arrays gives tensors ``det1/conv1/weights`` ...

Hostile archives stay bounded: the side member may hold at most ``MAX_SIDE`` bytes and 1 MiB
plus twice the archive's size (``_common.read_capped``), and a deflated member may declare at
most ``_common.MAX_RATIO`` (deflate's limit) times its compressed size, so neither is inflated
or allocated beyond what the file can back.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from .. import storage
from ..errors import CorruptionError, FormatError
from ..outputs import outputs
from ..progress import tracked
from ..signals import Sections, sections
from ..tensor import Checkpoint, Source, Tensor
from . import _npyfmt
from ._common import (
    check_declared,
    check_dtype,
    check_name,
    first_line,
    frombuffer,
    map_file,
    name_to_path,
    read_capped,
    release,
    stored_start,
)

SIDE = "__converter__.json"
MAX_SIDE = 64 << 20  # a side entry is ~50 bytes: room for a million tensors



def sniff(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return False
    if path.suffix.lower() == ".npz":
        return True
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return bool(names) and all(n.endswith(".npy") or n == SIDE for n in names)


# What zipfile raises besides BadZipFile on a damaged archive: zlib.error (bad deflate data),
# NotImplementedError (unknown compression), RuntimeError (encrypted member), EOFError, and
# ValueError/OSError/struct.error for offsets that point nowhere.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError,
              ValueError, OSError, struct.error, OverflowError)


def _open(path: Path | str, source: IO[bytes] | None = None) -> zipfile.ZipFile:
    """The archive at ``path``, or read from the file object ``source`` (a remote object)."""
    try:
        zf = zipfile.ZipFile(source if source is not None else path)
    except ZIP_ERRORS as exc:
        raise FormatError(f"{path}: not a valid .npz (zip) file: {first_line(exc)}") from None
    if source is not None:
        expected = _central_count(source)
    else:
        with open(path, "rb") as f:
            expected = _central_count(f)
    if expected is not None and expected != len(zf.filelist):
        zf.close()
        raise FormatError(f"{path}: the zip directory lists {len(zf.filelist)} members but its "
                          f"end record says {expected} (corrupt central directory)")
    return zf


def _central_count(f: IO[bytes]) -> int | None:
    """The member count the end-of-central-directory record states (None for zip64 or when the
    record cannot be found; zipfile has checked it exists). zipfile itself does not compare it
    with what it parsed, so a damaged length inside the directory can hide members."""
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - (22 + 0xFFFF)))
    tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None
    (count,) = struct.unpack_from("<H", tail, at + 10)
    return None if count == 0xFFFF else count


def _side(zf: zipfile.ZipFile, path: Path | str, size: int | None = None
          ) -> tuple[dict, dict, dict]:
    """``(tensors, metadata, names)`` from the side member, checked for shape."""
    if SIDE not in zf.namelist():
        return {}, {}, {}
    info = zf.getinfo(SIDE)
    try:
        side = json.loads(read_capped(zf, info, path, MAX_SIDE, size))
    except RecursionError:
        raise FormatError(f"{path}: {SIDE} is nested too deeply") from None
    except ZIP_ERRORS as exc:  # JSON and Unicode errors are ValueErrors too
        raise FormatError(f"{path}: {SIDE} is unreadable ({first_line(exc)})") from None
    tensors = side.get("tensors", {}) if isinstance(side, dict) else None
    metadata = side.get("metadata", {}) if isinstance(side, dict) else None
    names = side.get("names", {}) if isinstance(side, dict) else None
    if not isinstance(tensors, dict) or not isinstance(metadata, dict) or not all(
            isinstance(v, dict) for v in tensors.values()) or not isinstance(names, dict) \
            or not all(isinstance(v, str) for v in names.values()):
        raise FormatError(f"{path}: {SIDE} is malformed (expected an object with 'tensors', "
                          "'metadata' and 'names' objects)")
    return tensors, metadata, names


def read(path: Path, *, allow_pickle: bool = False) -> Checkpoint:
    zf = _open(path)
    try:
        buf = map_file(path)
        return _read(zf, str(path), allow_pickle, buf, path.stat().st_size, None)
    except BaseException:
        zf.close()
        raise


def read_url(url: str, *, allow_pickle: bool = False) -> Checkpoint:
    """An ``.npz`` object on remote storage: its central directory and each member's local
    header by ranged reads; a stored member's bytes by a ranged read when asked for, a
    deflated one streamed through zipfile."""
    obj = storage.open_file(url)
    zf = _open(url, io.BufferedReader(storage.RangeReader(obj), 1 << 16))
    try:
        return _read(zf, url, allow_pickle, storage.RangeBuffer(obj), obj.size, obj)
    except BaseException:
        zf.close()
        raise


def _read(zf: zipfile.ZipFile, path: str, allow_pickle: bool, buf, size: int,
          remote: storage.RemoteFile | None) -> Checkpoint:
    """The archive's tensors; ``buf`` slices its bytes (a memory map of a local file, or a
    :class:`storage.RangeBuffer` of the ``remote`` object)."""
    infos = zf.infolist()
    side_tensors, metadata, names = _side(zf, path, size)
    tensors: dict[str, Tensor] = {}
    for info in infos:
        if not info.filename:  # zipfile's is_dir() would raise IndexError
            raise FormatError(f"{path}: a member has an empty name (corrupt zip directory)")
        if info.filename == SIDE or info.is_dir():
            continue
        if not info.filename.endswith(".npy"):
            raise FormatError(f"{path}: member {info.filename!r} is not an .npy file")
        name = names.get(info.filename, info.filename[:-4])
        where = f"{path}: tensor {name!r}"
        if name in tensors:
            raise FormatError(f"{where}: stored twice")
        check_declared(path, info, f"tensor {name!r}", size)
        start = stored_start(buf, info, size)
        try:
            if start is not None:  # read in place: zipfile's per-member set-up costs more
                member = _npyfmt.BufferReader(buf, start, start + info.file_size)
                dtype, shape, fortran, hlen = _npyfmt.read_header(member, where)
            else:
                with zf.open(info) as f:
                    dtype, shape, fortran, hlen = _npyfmt.read_header(f, where)
        except ZIP_ERRORS as exc:
            raise FormatError(f"{where}: unreadable member ({first_line(exc)})") from None
        if dtype.hasobject:
            if not allow_pickle:
                raise FormatError(f"{where}: holds pickled objects; pass allow_pickle=True "
                                  "(--allow-pickle) only for files you trust")

            def load_pickle(i=info) -> object:
                with zf.open(i) as f:
                    # latin-1: Python 2 pickles, as numpy.load advises.
                    return np.lib.format.read_array(f, allow_pickle=True,
                                                    pickle_kwargs={"encoding": "latin1"})

            try:
                found = _npyfmt.unpickled(where, load_pickle, name, name)
            except ZIP_ERRORS as exc:
                raise FormatError(f"{where}: unreadable member ({first_line(exc)})") from None
            for t in found:
                if t.name in tensors:
                    raise FormatError(f"{path}: tensor {t.name!r} is stored twice")
                tensors[t.name] = t
            continue
        nbytes = math.prod(shape) * dtype.itemsize
        if not dtype.hasobject and info.file_size != hlen + nbytes:
            raise FormatError(f"{where}: member holds {info.file_size - hlen} data bytes, "
                              f"{nbytes} expected for shape {list(shape)} {dtype}")
        entry = side_tensors.get(name)
        real_dtype, real_shape = _npyfmt.stored_shape_dtype(dtype, shape, entry, where)
        span = None
        if start is not None and not dtype.hasobject and not fortran:
            # In the file: stored_start checked that the member's file_size bytes fit.
            start += hlen
            def in_place(d=dtype, s=shape, o=start, e=entry, w=where, i=info, h=hlen
                         ) -> np.ndarray:
                # numpy.load checks the member's CRC-32 (zipfile does as it reads); so do we.
                member: bytes | memoryview
                if remote is not None:  # the member, header and all, in one ranged read
                    member = remote.pread(o - h, i.file_size)
                    data, at = member, h
                else:
                    member = memoryview(buf)[o - h:o + i.file_size - h] if i.file_size else b""
                    data, at = buf, o
                if zlib.crc32(member) != i.CRC:
                    raise CorruptionError(f"{w}: CRC-32 mismatch (data corrupted)")
                return _npyfmt.restore(frombuffer(data, d, s, at), e, w)
            load: Callable[[], np.ndarray] = in_place
            if not entry or entry.get("dtype") != "string":
                span = (str(path), start, nbytes)
        else:
            def from_member(i=info, e=entry, w=where) -> np.ndarray:
                return _npyfmt.restore(_read_member(zf, i, w, allow_pickle), e, w)
            load = from_member
        tensors[name] = Tensor(name, real_dtype, real_shape, load, span=span)
    closers = [zf.close, lambda: release(buf)]
    return Checkpoint(tensors, {str(k): str(v) for k, v in metadata.items()},
                      source=Source("npz", path), closers=closers)


def integrity(path: Path) -> dict[str, str]:
    """``{tensor: problem}`` for members whose zip CRC-32 does not match, found by streaming
    every member once through zipfile (bounded memory); ``ckpt verify`` uses it, since reading
    a stored member through its memory map would touch every page."""
    problems: dict[str, str] = {}
    try:
        zf = zipfile.ZipFile(path)
    except ZIP_ERRORS:
        return problems  # reading the file reports it
    with zf:
        try:
            names = _side(zf, path)[2]
        except FormatError:
            names = {}  # reading the file reports it
        for info in zf.infolist():
            if info.filename == SIDE or not info.filename.endswith(".npy"):
                continue
            name = names.get(info.filename, info.filename[:-4])
            try:
                with zf.open(info) as f:
                    while f.read(1 << 20):
                        pass
            except ZIP_ERRORS as exc:
                problems[name] = f"{path}: tensor {name!r}: {first_line(exc)}"
    return problems


def _read_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, allow_pickle: bool
) -> np.ndarray:
    try:
        with zf.open(info) as f:
            return np.lib.format.read_array(f, allow_pickle=allow_pickle)
    except ZIP_ERRORS as exc:
        raise FormatError(f"{where}: unreadable member ({first_line(exc)})") from None


class _Forward:
    """The output file without ``seek``: zipfile then follows each member with a data
    descriptor instead of seeking back to patch its local header, three seeks per member that
    were most of the time an archive of many small tensors took to write."""

    def __init__(self, f) -> None:
        self._f = f

    def write(self, data) -> int:
        return self._f.write(data)

    def tell(self) -> int:
        return self._f.tell()

    def flush(self) -> None:
        self._f.flush()

    def seek(self, *args: object) -> int:
        raise OSError("written front to back")


def write(ckpt: Checkpoint, path: Path, *, force: bool = False, compress: bool = False,
          progress: bool = False) -> None:
    side_tensors: dict[str, dict] = {}
    names: dict[str, str] = {}
    used: set[str] = set()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with outputs(force) as out:
        tmp = out.new(path)
        with sections() as bookkeeping, open(tmp, "wb") as raw, \
                _archive(raw, method, bookkeeping) as zf:
            for tensor in tracked(ckpt.values(), total=ckpt.nbytes, enabled=progress):
                check_name(path, tensor.name, "npz")
                check_dtype(path, tensor, "npz")
                member = name_to_path(tensor.name, portable=False)
                if member in used or member == SIDE:  # a shortened name's hash collided
                    member = member[:-4] + "~" + hashlib.sha1(
                        tensor.name.encode()).hexdigest()[:12] + ".npy"
                used.add(member)
                if member != tensor.name + ".npy":
                    names[member] = tensor.name
                encoded = _npyfmt.encode(tensor)
                head, data, entry = encoded
                if entry:
                    side_tensors[tensor.name] = entry
                size = len(head) + (tensor.nbytes if data is None else data.nbytes)
                with _member(zf, member, size > zipfile.ZIP64_LIMIT - 2**20,
                             bookkeeping) as f:
                    _npyfmt.write(f, tensor, encoded)
            if side_tensors or ckpt.metadata or names:
                side = {"version": 1, "metadata": ckpt.metadata, "tensors": side_tensors}
                if names:
                    side["names"] = names
                with bookkeeping:
                    zf.writestr(SIDE, json.dumps(side, ensure_ascii=False))


# An interrupt landing inside zipfile's bookkeeping (a member marked open but not yet handed
# back) leaves an archive that refuses to close: the interrupt turns into a ValueError and
# ZipFile.__del__ prints a traceback. Only the data writes are left interruptible.


@contextmanager
def _archive(raw, method: int, bookkeeping: Sections) -> Iterator[zipfile.ZipFile]:
    with bookkeeping:
        # zipfile never closes a file object it is handed, so _Forward needs no close().
        zf = zipfile.ZipFile(_Forward(raw), "w",  # type: ignore[call-overload]
                             compression=method, allowZip64=True)
    try:
        yield zf
    finally:
        with bookkeeping:
            zf.close()


@contextmanager
def _member(zf: zipfile.ZipFile, name: str, force_zip64: bool,
            bookkeeping: Sections) -> Iterator[IO[bytes]]:
    f = None
    try:
        with bookkeeping:
            f = zf.open(name, "w", force_zip64=force_zip64)
        yield f
    finally:
        if f is not None:
            with bookkeeping:
                f.close()
