"""The streamed copy: chunks read in pieces, crc32c per tensor across piece boundaries, direct
``copy_file_range`` into plain files, and the fallbacks when the kernel refuses it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

import converter
from converter.errors import CorruptionError
from converter.formats import stream
from tests.helpers import assert_same_checkpoint

OUTPUTS = ["out.safetensors", "out.ckpt", "out.h5", "out.npz", "out-npy"]


def _source(tmp_path: Path) -> Path:
    # Odd sizes, so tensors straddle the (shrunken) chunk boundaries; an empty one in the middle.
    rng = np.random.default_rng(0)
    data = {f"t{i:02d}": rng.integers(0, 2**31, size=n, dtype=np.int32)
            for i, n in enumerate([1, 999, 0, 1500, 3, 4097, 2, 777])}
    prefix = tmp_path / "src" / "m.ckpt"
    converter.write(data, prefix)
    return prefix


@pytest.fixture(params=["written", "copied", "copied-odd-pieces"])
def small_chunks(request, monkeypatch):
    monkeypatch.setattr(stream, "CHUNK", 4096)
    # Runs from DIRECT_MIN bytes go to plain files by copy_file_range, CHUNK at a time, smaller
    # ones through the file's buffer; either way they are read PIECE at a time.
    monkeypatch.setattr(stream, "DIRECT_MIN", 1 << 20 if request.param == "written" else 0)
    if request.param == "copied-odd-pieces":  # pieces that straddle tensors and chunks
        monkeypatch.setattr(stream, "PIECE", 1000)


def _convert_and_compare(src: Path, dst: Path) -> None:
    fmt = "npy" if dst.name == "out-npy" else None
    converter.convert(src, dst, to=fmt).close()
    with converter.read(src) as a, converter.read(dst, format=fmt) as b:
        assert_same_checkpoint(a, b)


@pytest.mark.parametrize("out", OUTPUTS)
def test_chunked_copy_is_bit_exact(tmp_path, small_chunks, out):
    _convert_and_compare(_source(tmp_path), tmp_path / out)


@pytest.mark.parametrize("copied", [0, 1000, 5000])
@pytest.mark.parametrize("out", ["out.safetensors", "out.ckpt", "out.h5"])
def test_refused_direct_copy_falls_back_to_writes(tmp_path, small_chunks, monkeypatch, out,
                                                  copied):
    # The kernel copies `copied` bytes, then refuses (EXDEV: another file system on older
    # kernels): the rest goes through write() at the right place.
    monkeypatch.setattr(os, "copy_file_range", _refusing_after(copied))
    _convert_and_compare(_source(tmp_path), tmp_path / out)


def _refusing_after(copied: int):
    """copy_file_range that copies ``copied`` bytes, then refuses as another file system
    would."""
    real = os.copy_file_range
    budget = [copied]

    def refusing(src, dst, count, offset_src=None, offset_dst=None):
        if budget[0] <= 0:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        n = real(src, dst, min(count, budget[0]), offset_src, offset_dst)
        budget[0] -= n
        return n

    return refusing


def test_without_copy_file_range(tmp_path, small_chunks, monkeypatch):
    monkeypatch.delattr(os, "copy_file_range")
    _convert_and_compare(_source(tmp_path), tmp_path / "out.safetensors")


def test_other_copy_errors_are_not_swallowed(tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "DIRECT_MIN", 0)

    def failing(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "copy_file_range", failing)
    with pytest.raises(OSError, match="Input/output"):
        converter.convert(_source(tmp_path), tmp_path / "out.safetensors")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_mixed_sources_keep_the_file_position(tmp_path, small_chunks):
    # Copied spans and in-memory tensors alternate in one output file.
    src = _source(tmp_path)
    with converter.read(src) as ckpt:
        mixed = {}
        for i, (name, tensor) in enumerate(ckpt.items()):
            mixed[name] = tensor
            mixed[f"mem{i}"] = np.full(i + 3, i, np.float64)
        for out in ("out.safetensors", "out.ckpt"):
            converter.write(mixed, tmp_path / out)
            with converter.read(tmp_path / out) as back:
                assert list(back) == list(mixed)  # TF bundles keep the write order too
                for name, value in mixed.items():
                    assert back[name].read().tobytes() == np.asarray(value).tobytes(), name


def test_corruption_straddling_a_chunk_is_named(tmp_path, small_chunks):
    src = _source(tmp_path)
    with converter.read(src) as ckpt:
        _, offset, size = ckpt["t05"].span  # 4097 int32s: crosses several 4 KiB chunks
    data = src.with_name("m.ckpt.data-00000-of-00001")
    raw = bytearray(data.read_bytes())
    raw[offset + size // 2] ^= 0x40
    data.write_bytes(bytes(raw))
    for out in ("out.safetensors", "out.npz"):
        with pytest.raises(CorruptionError, match="'t05'.*checksum"):
            converter.convert(src, tmp_path / out)
        assert not (tmp_path / out).exists()


def test_early_writeback_of_big_outputs(tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "CHUNK", 4096)
    monkeypatch.setattr(stream, "DIRECT_MIN", 0)
    calls = []
    real = stream.start_writeback
    monkeypatch.setattr(stream, "EARLY_WRITEBACK", 8192)
    monkeypatch.setattr(stream, "start_writeback",
                        lambda fd, offset, n: calls.append((offset, n)) or real(fd, offset, n))
    _convert_and_compare(_source(tmp_path), tmp_path / "out.safetensors")
    assert calls, "no writeback was started"
    # Consecutive ranges of the output, chunk by chunk.
    assert all(a + n == b for (a, n), (b, _) in zip(calls, calls[1:], strict=False))


@pytest.mark.parametrize("out", ["out.safetensors", "out.npz", "out.ckpt"])
def test_span_that_does_not_hold_the_shape_is_refused(tmp_path, out):
    # Tensor(span=...) is public: a span shorter than its shape must not make a short file.
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.arange(4, dtype="<f4").tobytes())
    tensors = {
        "ok": converter.Tensor("ok", np.float32, (2,), lambda: np.zeros(2, np.float32),
                               span=(str(raw), 0, 8)),
        "w": converter.Tensor("w", np.float32, (4,), lambda: np.zeros(4, np.float32),
                              span=(str(raw), 8, 8)),
    }
    with pytest.raises(CorruptionError, match="'w': 8 bytes, 16 expected"):
        converter.write(converter.Checkpoint(tensors), tmp_path / out)
    assert not (tmp_path / out).exists()


def test_placed_copy_writes_each_tensor_at_its_offset(tmp_path, small_chunks):
    # Back-to-back placements go as one run, gaps are left as they are, an in-memory tensor
    # between copied ones lands at its own offset, and every copied tensor is still checked.
    src = _source(tmp_path)
    with converter.read(src) as ckpt:
        tensors = list(ckpt.values())
        memory = converter.Tensor.from_array("mem", np.arange(5, dtype=np.int64))
        placed, at = [], 16
        for i, t in enumerate([*tensors[:4], memory, *tensors[4:]]):
            placed.append((at, t))
            at += t.nbytes + (100 if i % 3 == 2 else 0)
        out = tmp_path / "placed.bin"
        out.write_bytes(b"\xee" * at)
        with open(out, "r+b") as f:
            done = list(stream.copy_placed(f, placed))
        assert done == [t for _, t in placed]
        raw = out.read_bytes()
        written = bytearray(b"\xee" * at)
        for offset, t in placed:
            value = np.ascontiguousarray(t.read()).tobytes()
            assert raw[offset:offset + len(value)] == value, t.name
            written[offset:offset + len(value)] = value
        assert raw == bytes(written)  # nothing outside the placements

        _, offset, size = ckpt["t05"].span
    data = src.with_name("m.ckpt.data-00000-of-00001")
    damaged = bytearray(data.read_bytes())
    damaged[offset + size - 1] ^= 1
    data.write_bytes(bytes(damaged))
    with converter.read(src) as ckpt, open(tmp_path / "placed.bin", "r+b") as f:
        with pytest.raises(CorruptionError, match="'t05'.*checksum"):
            list(stream.copy_placed(f, [(0, t) for t in ckpt.values()][5:6]))


@pytest.mark.parametrize("size", [1000, 4096, 1 << 20])
def test_chunks_in_small_pieces_are_checked_whole(tmp_path, small_chunks, size):
    src = _source(tmp_path)
    with converter.read(src) as ckpt:
        t = ckpt["t05"]
        pieces = [bytes(p) for p in stream.chunks(t, size)]
        assert max(map(len, pieces)) <= min(size, stream.CHUNK)
        assert b"".join(pieces) == t.read().tobytes()
        _, offset, nbytes = t.span
    data = src.with_name("m.ckpt.data-00000-of-00001")
    raw = bytearray(data.read_bytes())
    raw[offset + nbytes - 1] ^= 0x01  # the last byte: caught after the last piece
    data.write_bytes(bytes(raw))
    with converter.read(src) as ckpt, pytest.raises(CorruptionError, match="'t05'.*checksum"):
        for _ in stream.chunks(ckpt["t05"], size):
            pass


def test_large_npz_archives_are_sent_to_disk_as_they_are_written(tmp_path, monkeypatch):
    from converter.formats import npz

    calls = []
    real = npz.start_writeback
    monkeypatch.setattr(npz, "CHUNK", 1 << 20)
    monkeypatch.setattr(npz, "start_writeback",
                        lambda fd, offset, n: calls.append((offset, n)) or real(fd, offset, n))
    rng = np.random.default_rng(3)
    data = {f"big{i}": rng.standard_normal(3 << 18, dtype=np.float32) for i in range(2)}  # 3 MiB
    converter.write(data, tmp_path / "src.ckpt")
    _convert_and_compare(tmp_path / "src.ckpt", tmp_path / "out.npz")
    assert len(calls) >= 2, calls
    assert all(a + n == b for (a, n), (b, _) in zip(calls, calls[1:], strict=False))
    assert calls[-1][0] + calls[-1][1] <= (tmp_path / "out.npz").stat().st_size


def _unchecked_source(tmp_path: Path) -> Path:
    """A safetensors file: bytes with no checksum to take on the way."""
    rng = np.random.default_rng(1)
    src = tmp_path / "src.safetensors"
    converter.write({"a": rng.integers(0, 2**31, size=300_001, dtype=np.int32),
                     "b": np.arange(7, dtype=np.int16)}, src)
    return src


def test_bytes_no_checksum_needs_are_copied_unread(tmp_path, monkeypatch):
    src = _unchecked_source(tmp_path)
    read = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, at: read.append(n) or real(fd, n, at))
    _convert_and_compare(src, tmp_path / "out.safetensors")
    assert sum(read) < 1 << 20  # the headers and the comparison's own reads, not the copy


@pytest.mark.parametrize("copied", [0, 1000, 5000])
def test_unchecked_bytes_are_written_when_the_kernel_refuses(tmp_path, small_chunks,
                                                             monkeypatch, copied):
    monkeypatch.setattr(os, "copy_file_range", _refusing_after(copied))
    _convert_and_compare(_unchecked_source(tmp_path), tmp_path / "out.safetensors")


def test_unchecked_tensors_are_handed_on_as_each_is_written(tmp_path, monkeypatch):
    # A progress bar advances tensor by tensor, not once the whole run is copied.
    monkeypatch.setattr(stream, "CHUNK", 1 << 16)
    src = tmp_path / "src.safetensors"
    converter.write({f"t{i}": np.full(1 << 15, i, np.int32) for i in range(4)}, src)  # 128 KiB
    with converter.read(src) as ckpt, open(tmp_path / "out.bin", "wb") as f:
        held = [(t.name, f.tell()) for t, _, _ in stream.copy_all(f, list(ckpt.values()))]
    assert held == [("t0", 1 << 17), ("t1", 2 << 17), ("t2", 3 << 17), ("t3", 4 << 17)]
