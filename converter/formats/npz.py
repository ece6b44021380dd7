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
import sys
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from .. import storage
from ..errors import CorruptionError, FormatError
from ..outputs import outputs
from ..progress import tracked
from ..signals import Sections, sections
from ..tensor import Checkpoint, Source, Tensor, ZipMember
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
from .stream import CHUNK, pieces, start_writeback

SIDE = "__converter__.json"
# The side member's date: the members' own (zipfile's default), not the time of writing, so
# that the same conversion gives the same bytes.
SIDE_DATE = (1980, 1, 1, 0, 0, 0)
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
                span = (path, start, nbytes)
        else:
            def from_member(i=info, e=entry, w=where) -> np.ndarray:
                return _npyfmt.restore(_read_member(zf, i, w, allow_pickle), e, w)
            load = from_member
        # The header's dtype and shape are checked (_npyfmt.read_header, check_shape).
        # The member is the npy header and then the span: its CRC-32 covers both.
        zip_crc = ZipMember(span[1] - hlen, info.file_size, info.CRC) if span is not None \
            else None
        tensors[name] = Tensor._trusted(name, real_dtype, real_shape, math.prod(real_shape),
                                        load, None, span, None, {}, zip_crc)
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
    members = _members(ckpt, path)  # every name and dtype judged before a byte is written
    stream = tracked(ckpt.values(), total=ckpt.nbytes, enabled=progress)
    with outputs(force) as out:
        tmp = out.new(path)
        with open(tmp, "wb") as raw:
            if compress:
                _write_zipfile(raw, members, ckpt.metadata, zipfile.ZIP_DEFLATED, stream)
            else:
                _write_stored(raw, members, ckpt.metadata, stream)


class _Member(NamedTuple):
    tensor: Tensor
    name: str  # in the archive
    head: bytes | None  # the .npy header of a tensor whose own bytes are stored; None: encoded
    entry: dict[str, object] | None  # in the side member


def _members(ckpt: Checkpoint, path: Path) -> list[_Member]:
    """Each tensor's member: its name in the archive, its side entry and, unless its values
    must be encoded (byte strings, encoded when written), its .npy header."""
    out = []
    used: set[str] = set()
    encoded: dict[tuple[np.dtype, tuple[int, ...]], tuple[bytes, dict | None]] = {}
    for tensor in ckpt.values():
        check_name(path, tensor.name, "npz")
        check_dtype(path, tensor, "npz")
        member = name_to_path(tensor.name, portable=False)
        if member in used or member == SIDE:  # a shortened name's hash collided
            member = member[:-4] + "~" + hashlib.sha1(
                tensor.name.encode()).hexdigest()[:12] + ".npy"
        used.add(member)
        if tensor.dtype.hasobject:  # as _npyfmt.encode has it, without reading the strings
            out.append(_Member(tensor, member, None, {"dtype": "string",
                                                      "shape": list(tensor.shape)}))
        else:  # checkpoints of many tensors repeat a few shapes
            key = (tensor.dtype, tensor.shape)
            found = encoded.get(key)
            if found is None:
                head, _, entry = _npyfmt.encode(tensor)
                found = encoded[key] = (head, entry)
            out.append(_Member(tensor, member, found[0], found[1]))
    return out


def _side_member(members: list[_Member], metadata: dict[str, str]) -> bytes | None:
    """The side member's JSON, or None when nothing needs it."""
    entries = {m.tensor.name: m.entry for m in members if m.entry}
    names = {m.name: m.tensor.name for m in members if m.name != m.tensor.name + ".npy"}
    if not (entries or metadata or names):
        return None
    side: dict[str, object] = {"version": 1, "metadata": metadata, "tensors": entries}
    if names:
        side["names"] = names
    return json.dumps(side, ensure_ascii=False).encode("utf-8")


def _write_zipfile(raw, members: list[_Member], metadata: dict[str, str], method: int,
                   stream: Iterator[Tensor]) -> None:
    """The archive through zipfile (deflated members)."""
    with sections() as bookkeeping, _archive(raw, method, bookkeeping) as zf:
        for m in members:
            encoded = _npyfmt.encode(m.tensor)
            head, data, _ = encoded
            size = len(head) + (m.tensor.nbytes if data is None else data.nbytes)
            with _member(zf, m.name, size > zipfile.ZIP64_LIMIT - 2**20, bookkeeping) as f:
                _npyfmt.write(f, m.tensor, encoded)
            next(stream)
        side = _side_member(members, metadata)
        if side is not None:
            with bookkeeping:
                zf.writestr(_side_info(zf), side)


def _side_info(zf: zipfile.ZipFile) -> zipfile.ZipInfo:
    """The side member's record as ``writestr(SIDE, ...)`` makes it, but for its date."""
    info = zipfile.ZipInfo(SIDE, date_time=SIDE_DATE)
    info.compress_type = zf.compression
    info.external_attr = 0o600 << 16
    return info


def _write_stored(raw, members: list[_Member], metadata: dict[str, str],
                  stream: Iterator[Tensor]) -> None:
    """The archive of stored members, byte for byte what :func:`_write_zipfile` writes with
    ``ZIP_STORED`` (zipfile's layout for an output it cannot seek: each member's sizes and
    CRC-32 in a data descriptor after its bytes), without zipfile's cost per member: small
    tensors stored back to back are read in runs (``stream.pieces``) and the archive goes to
    the file in large writes."""
    archive = _StoredZip(raw)
    i, n = 0, len(members)
    while i < n:
        m = members[i]
        if m.head is None:  # byte strings: encoded, then stored as a whole
            head, data, _ = _npyfmt.encode(m.tensor)
            archive.begin(m.name, len(head) + (0 if data is None else data.nbytes), head)
            if data is not None and data.size:
                archive.add(data.reshape(-1).view(np.uint8))
            archive.end()
            next(stream)
            i += 1
            continue
        j = i + 1
        while j < n and members[j].head is not None:
            j += 1
        whole = archive.whole
        k = i  # the member whose bytes come next
        held: list = []  # the pieces of a small tensor, written with its member at once
        started = False
        for tensor, piece in pieces([m.tensor for m in members[i:j]]):
            if tensor.nbytes <= _WRITE_AT_ONCE:
                if piece is not None:
                    held.append(piece)
                    continue
                whole(members[k].name, members[k].head or b"", held)
                held = []
            else:
                if not started:
                    head = members[k].head or b""
                    archive.begin(members[k].name, len(head) + tensor.nbytes, head)
                    started = True
                if piece is not None:
                    archive.add(piece)
                    continue
                archive.end()
                started = False
            next(stream)
            k += 1
        i = j
    side = _side_member(members, metadata)
    if side is not None:  # as writestr writes it (zip64 by its rule), dated as the members
        archive.begin(SIDE, len(side), side, SIDE_DATE, writestr=True)
        archive.end()
    archive.finish()


# The zip format's records (APPNOTE.TXT 4.3), as zipfile packs them.
_DATA_DESCRIPTOR = 0x08  # general purpose flag bit 3: sizes and CRC-32 after the data
_UTF8_NAME = 0x800  # bit 11: the name is UTF-8
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_DESCRIPTOR = struct.Struct("<4sLLL")
_DESCRIPTOR64 = struct.Struct("<4sLQQ")
_END = struct.Struct("<4s4H2LH")
_END64 = struct.Struct("<4sQ2H2L4Q")
_LOCATOR64 = struct.Struct("<4sLQL")
_NO_DATE = (1980, 1, 1, 0, 0, 0)  # what zipfile dates the members it opens by name
_NO_DATE_DOS = 1 << 5 | 1  # its MS-DOS date (the time is 0)
_WRITE_AT_ONCE = 1 << 20  # buffered bytes written out at this size; bigger pieces go directly
_CRC_BESIDE = 1 << 20  # pieces from this size have their CRC-32 taken beside their write


class _StoredZip:
    """A zip archive of stored members written front to back, field for field as zipfile
    writes one to an output it cannot seek (local header with zero sizes and CRC, the bytes, a
    data descriptor; the central directory and end records as ``ZipFile.close`` writes them,
    zip64 included). A member is ``begin`` (with its first bytes), ``add``..., ``end``."""

    def __init__(self, f) -> None:
        self.f = f
        self.pos = f.tell()  # where the next byte goes
        # One buffer, reused: a fresh one per write would be fresh pages to fault in each time.
        self.buf = bytearray(_WRITE_AT_ONCE)
        self.view = memoryview(self.buf)
        self.fill = 0
        # Large archives are sent to disk as they are written (as stream's copies are), so the
        # fsync before the rename waits for the tail, not for gigabytes of dirty pages.
        try:
            self._fd: int | None = f.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None
        self._sent = self.pos  # where the bytes not yet sent to disk start
        # Per member: name, flags, date, header offset, version, zip64, CRC-32, size.
        self.central: list[tuple[bytes, int, tuple[int, ...], int, int, bool, int, int]] = []
        self._open: tuple[bytes, int, tuple[int, ...], int, int, bool] | None = None
        self._crc = 0
        self._start = 0

    def _write(self, data: bytes | memoryview) -> None:
        n = len(data)
        fill = self.fill
        if fill + n > _WRITE_AT_ONCE:
            self.flush()
            fill = 0
        if n >= _WRITE_AT_ONCE:
            self.f.write(data)  # larger than the file's buffer: it reaches the descriptor
            end = self.pos + n
            if self._fd is not None and end - self._sent >= CHUNK:
                start_writeback(self._fd, self._sent, end - self._sent)
                self._sent = end
        else:
            self.view[fill:fill + n] = data
            self.fill = fill + n
        self.pos += n

    def flush(self) -> None:
        if self.fill:
            self.f.write(self.view[:self.fill])
            self.fill = 0

    def begin(self, name: str, size: int, first: bytes,
              date_time: tuple[int, ...] = _NO_DATE, *, writestr: bool = False) -> None:
        """Start member ``name`` of ``size`` bytes, ``first`` the first of them; zip64 as
        the writer has it: for members near zipfile's limit (``force_zip64``) or, for
        ``writestr``, past it."""
        if name.isascii():
            raw, flags = name.encode("ascii"), _DATA_DESCRIPTOR
        else:
            raw, flags = name.encode("utf-8"), _DATA_DESCRIPTOR | _UTF8_NAME
        if not writestr:
            zip64 = size > zipfile.ZIP64_LIMIT - 2**20
        else:
            zip64 = size * 1.05 > zipfile.ZIP64_LIMIT
        if zip64:
            version, extra, marker = zipfile.ZIP64_VERSION, struct.pack("<HHQQ", 1, 16, 0, 0), \
                0xFFFFFFFF
        else:
            version, extra, marker = zipfile.DEFAULT_VERSION, b"", 0
        dosdate, dostime = _dos(date_time)
        self._open = (raw, flags, date_time, self.pos, version, zip64)
        self._write(_LOCAL.pack(b"PK\x03\x04", version, 0, flags, zipfile.ZIP_STORED, dostime,
                                dosdate, 0, marker, marker, len(raw), len(extra))
                    + raw + extra + first)
        self._start = self.pos - len(first)
        self._crc = zlib.crc32(first)

    def whole(self, name: str, head: bytes, pieces: list) -> None:
        """Member ``name`` (dated as zipfile dates those it opens by name) of ``head`` and
        then ``pieces`` (C-contiguous buffers), under ``_WRITE_AT_ONCE`` bytes: written in one
        piece, as :meth:`begin`, :meth:`add` and :meth:`end` would."""
        crc = zlib.crc32(head)
        size = len(head)
        for piece in pieces:
            crc = zlib.crc32(piece, crc)
            size += memoryview(piece).nbytes
        if size > zipfile.ZIP64_LIMIT - 2**20:  # only with a lowered limit
            self.begin(name, size, head)
            for piece in pieces:
                self.add(piece)
            self.end()
            return
        if name.isascii():
            raw, flags = name.encode("ascii"), _DATA_DESCRIPTOR
        else:
            raw, flags = name.encode("utf-8"), _DATA_DESCRIPTOR | _UTF8_NAME
        offset = self.pos
        self._write(b"".join((
            _LOCAL.pack(b"PK\x03\x04", zipfile.DEFAULT_VERSION, 0, flags, zipfile.ZIP_STORED,
                        0, _NO_DATE_DOS, 0, 0, 0, len(raw), 0),
            raw, head, *pieces, _DESCRIPTOR.pack(b"PK\x07\x08", crc, size, size))))
        self.central.append((raw, flags, _NO_DATE, offset, zipfile.DEFAULT_VERSION, False, crc,
                             size))

    def add(self, data: Any) -> None:  # bytes, or any C-contiguous buffer
        if not isinstance(data, bytes):  # bytearray += array would be numpy's addition
            data = memoryview(data).cast("B")
        if len(data) < _CRC_BESIDE:
            self._crc = zlib.crc32(data, self._crc)
            self._write(data)
            return
        # zlib's CRC-32 (about 2 GB/s) lets go of the GIL, as the write does: on a second core
        # it runs while the bytes are written, not before.
        done: list[int] = []
        worker = threading.Thread(target=lambda: done.append(zlib.crc32(data, self._crc)))
        worker.start()
        try:
            self._write(data)
        finally:
            worker.join()
        self._crc = done[0]

    def end(self) -> None:
        if self._open is None:
            raise ValueError("no member is open")
        raw, flags, date_time, offset, version, zip64 = self._open
        self._open = None
        size = self.pos - self._start
        crc = self._crc
        self._write((_DESCRIPTOR64 if zip64 else _DESCRIPTOR).pack(
            b"PK\x07\x08", crc, size, size))
        self.central.append((raw, flags, date_time, offset, version, zip64, crc, size))

    def finish(self) -> None:
        limit = zipfile.ZIP64_LIMIT
        system = 0 if sys.platform == "win32" else 3
        start_dir = self.pos
        for raw, flags, date_time, offset, version, _, crc, size in self.central:
            dosdate, dostime = _dos(date_time)
            extra = []
            if size > limit:
                extra += [size, size]
            if offset > limit:
                extra.append(offset)
            extra_data = struct.pack("<HH" + "Q" * len(extra), 1, 8 * len(extra), *extra) \
                if extra else b""
            if extra:
                version = max(version, zipfile.ZIP64_VERSION)
            self._write(_CENTRAL.pack(
                b"PK\x01\x02", version, system, version, 0, flags, zipfile.ZIP_STORED,
                dostime, dosdate, crc, 0xFFFFFFFF if size > limit else size,
                0xFFFFFFFF if size > limit else size, len(raw), len(extra_data), 0, 0, 0,
                0o600 << 16, 0xFFFFFFFF if offset > limit else offset) + raw + extra_data)
        end_dir = self.pos
        count, size, offset = len(self.central), end_dir - start_dir, start_dir
        if count > zipfile.ZIP_FILECOUNT_LIMIT or offset > limit or size > limit:
            self._write(_END64.pack(b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size,
                                    offset))
            self._write(_LOCATOR64.pack(b"PK\x06\x07", 0, end_dir, 1))
            count, size, offset = min(count, 0xFFFF), min(size, 0xFFFFFFFF), \
                min(offset, 0xFFFFFFFF)
        self._write(_END.pack(b"PK\x05\x06", 0, 0, count, count, size, offset, 0))
        self.flush()
        self.view.release()
        self.f.flush()


def _dos(date_time: tuple[int, ...]) -> tuple[int, int]:
    """``(date, time)`` in MS-DOS form, as zip headers hold them."""
    return ((date_time[0] - 1980) << 9 | date_time[1] << 5 | date_time[2],
            date_time[3] << 11 | date_time[4] << 5 | date_time[5] // 2)


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
