"""The LevelDB table format that TensorFlow uses for ``.index`` files.

Spec: LevelDB ``doc/table_format.md``; TensorFlow's copy lives in ``tensorflow/core/lib/io/``
(``table_builder.cc``, ``block.cc``, ``format.cc``). TF writes tables uncompressed with a
restart interval of 16; we read any restart interval and refuse compressed blocks.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from ...crc32c import extend, mask, masked_crc
from ...errors import CorruptionError, FormatError
from ...proto import ProtoError, read_varint, varint

MAGIC = 0xDB4775248B80FB57
FOOTER = 48
TRAILER = 5  # compression type byte + masked crc32c
BLOCK_SIZE = 256 * 1024  # TF's table::Options default
RESTART_INTERVAL = 16


def has_magic(data: bytes) -> bool:
    return len(data) >= FOOTER and struct.unpack_from("<Q", data, len(data) - 8)[0] == MAGIC


def _handle(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    offset, pos = read_varint(buf, pos, end)
    size, pos = read_varint(buf, pos, end)
    return offset, size, pos


def _block(data: bytes, offset: int, size: int, where: str, verify: bool) -> bytes:
    if offset + size + TRAILER > len(data):
        raise CorruptionError(f"{where}: block at {offset} (+{size}) runs past the end of the file")
    if data[offset + size] != 0:
        raise FormatError(f"{where}: compressed index blocks are not supported "
                          f"(type {data[offset + size]})")
    # A copy, once per block: slicing bytes is cheaper per entry than slicing a memoryview.
    block = data[offset:offset + size]
    if verify:
        (stored,) = struct.unpack_from("<I", data, offset + size + 1)
        if mask(extend(extend(0, block), b"\x00")) != stored:  # the type byte is covered too
            raise CorruptionError(f"{where}: index block at offset {offset} fails its checksum")
    return block


def _entries(block: bytes, where: str, out: list[tuple[bytes, bytes]] | None = None,
             last: bytes | None = None) -> list[tuple[bytes, bytes]]:
    """A block's ``(key, value)`` pairs appended to ``out`` (a new list if None), refused
    unless each key is greater than the one before it (``last``, from an earlier block)."""
    if out is None:
        out = []
    n = len(block)
    if n < 4:
        raise CorruptionError(f"{where}: index block too small")
    (num_restarts,) = struct.unpack_from("<I", block, n - 4)
    limit = n - 4 - 4 * num_restarts
    if num_restarts > n // 4 or limit < 0:
        raise CorruptionError(f"{where}: bad restart count {num_restarts}")
    pos = 0
    key = b""
    append = out.append
    while pos < limit:
        if pos + 3 <= limit and not (block[pos] | block[pos + 1] | block[pos + 2]) & 0x80:
            # Keys under 128 bytes and values under 128 bytes: three one-byte varints.
            shared, unshared, vlen = block[pos], block[pos + 1], block[pos + 2]
            pos += 3
        else:
            shared, pos = read_varint(block, pos, limit)
            unshared, pos = read_varint(block, pos, limit)
            vlen, pos = read_varint(block, pos, limit)
        if shared > len(key) or unshared + vlen > limit - pos:
            raise CorruptionError(f"{where}: bad index entry at offset {pos}")
        key = key[:shared] + block[pos:pos + unshared]
        if last is not None and key <= last:
            raise CorruptionError(f"{where}: index keys out of order near {key[:40]!r}")
        last = key
        pos += unshared
        append((key, block[pos:pos + vlen]))
        pos += vlen
    return out


def read_table(data: bytes, where: str, verify: bool = True) -> list[tuple[bytes, bytes]]:
    """All ``(key, value)`` pairs of a table held in ``data``, in key order."""
    if len(data) < FOOTER:
        raise CorruptionError(f"{where}: too short for an index ({len(data)} bytes)")
    if not has_magic(data):
        raise FormatError(f"{where}: not a TensorFlow index (bad table magic)")
    foot = len(data) - FOOTER
    try:
        _, _, pos = _handle(data, foot, len(data) - 8)
        idx_off, idx_size, _ = _handle(data, pos, len(data) - 8)
        if idx_off + idx_size + TRAILER > foot:
            raise CorruptionError(f"{where}: index block handle points past the file")
        out: list[tuple[bytes, bytes]] = []
        for _, handle in _entries(_block(data, idx_off, idx_size, where, verify), where):
            off, size, _ = _handle(handle, 0, len(handle))
            if off + size + TRAILER > foot:
                raise CorruptionError(f"{where}: data block handle points past the file")
            _entries(_block(data, off, size, where, verify), where, out,
                     out[-1][0] if out else None)
        return out
    except ProtoError as exc:
        raise CorruptionError(f"{where}: malformed index ({exc})") from None


class BlockBuilder:
    """Entries with shared-prefix compression and a restart point every ``interval`` keys."""

    def __init__(self, interval: int) -> None:
        self.interval = interval
        self.buf = bytearray()
        self.restarts = [0]
        self.count = 0
        self.last = b""

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.count < self.interval:
            limit = min(len(key), len(self.last))
            while shared < limit and key[shared] == self.last[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buf))
            self.count = 0
        self.buf += varint(shared) + varint(len(key) - shared) + varint(len(value))
        self.buf += key[shared:] + value
        self.count += 1
        self.last = key

    def finish(self) -> bytes:
        restarts = b"".join(struct.pack("<I", r) for r in self.restarts)
        return bytes(self.buf) + restarts + struct.pack("<I", len(self.restarts))


class TableWriter:
    """Build a table in memory from keys added in strictly increasing order."""

    def __init__(self, block_size: int = BLOCK_SIZE) -> None:
        self.block_size = block_size
        self.out = bytearray()
        self.index = BlockBuilder(1)
        self.block = BlockBuilder(RESTART_INTERVAL)
        self.pending = False

    def add(self, key: bytes, value: bytes) -> None:
        if self.pending and key <= self.block.last or not self.pending and self.index.count \
                and key <= self.index.last:
            raise ValueError(f"keys must be added in increasing order: {key!r}")
        self.block.add(key, value)
        self.pending = True
        if len(self.block.buf) >= self.block_size:
            self._flush()

    def _write_block(self, body: bytes) -> bytes:
        handle = varint(len(self.out)) + varint(len(body))
        self.out += body + b"\x00" + struct.pack("<I", masked_crc(body + b"\x00"))
        return handle

    def _flush(self) -> None:
        if not self.pending:
            return
        last = self.block.last
        self.index.add(last, self._write_block(self.block.finish()))
        self.block = BlockBuilder(RESTART_INTERVAL)
        self.block.last = b""
        self.pending = False

    def finish(self) -> bytes:
        self._flush()
        meta = self._write_block(BlockBuilder(RESTART_INTERVAL).finish())
        idx = self._write_block(self.index.finish())
        footer = meta + idx
        self.out += footer + b"\x00" * (40 - len(footer)) + struct.pack("<Q", MAGIC)
        return bytes(self.out)


def build_table(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    writer = TableWriter()
    for key, value in items:
        writer.add(key, value)
    return writer.finish()
