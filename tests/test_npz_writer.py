"""The npz writer's own zip layout for stored members: byte for byte what zipfile writes to an
output it cannot seek, zip64 records included, and an archive numpy and zipfile read."""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import pytest

import converter
from converter import dtypes
from converter.formats import npz
from tests.helpers import assert_same_checkpoint
from tests.samples import sample


def _both(ckpt: converter.Checkpoint) -> tuple[bytes, bytes]:
    """``ckpt`` written by the stored-member writer and through zipfile (ZIP_STORED)."""
    members = npz._members(ckpt, "x.npz")
    out = []
    for write in (npz._write_stored, npz._write_zipfile):
        buf = io.BytesIO()
        stream = iter(list(ckpt.values()))
        if write is npz._write_stored:
            npz._write_stored(buf, members, ckpt.metadata, stream)
        else:
            npz._write_zipfile(buf, members, ckpt.metadata, zipfile.ZIP_STORED, stream)
        out.append(buf.getvalue())
    return out[0], out[1]


@pytest.fixture
def bundle(tmp_path) -> converter.Checkpoint:
    # Tensors stored back to back (read in runs), one empty, one big enough to be streamed.
    data = {f"s{i // 10}/t{i}": np.full(i % 7, i, np.float32) for i in range(60)}
    data["big"] = np.arange(300_000, dtype=np.int32)
    converter.write(data, tmp_path / "m.ckpt")
    with converter.read(tmp_path / "m.ckpt") as ckpt:
        yield ckpt


@pytest.mark.parametrize("beside", [1, 1 << 62])  # every piece's CRC-32 in a thread, or none
@pytest.mark.parametrize("limits", [None, "zip64 members", "zip64 directory"])
def test_stored_archive_is_zipfiles_byte_for_byte(bundle, monkeypatch, limits, beside):
    monkeypatch.setattr(time, "time", lambda: 1767225600.0)  # the side member's date
    monkeypatch.setattr(npz, "_CRC_BESIDE", beside)
    if limits is not None:  # the zip64 records, without writing 2 GiB
        monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 3000)
    if limits == "zip64 directory":
        monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 10)
    data = dict(sample(dtypes.ALL))  # strings, scalars, dtypes numpy lacks, escaped names
    data["ünï/cöde"] = np.arange(3.0)
    data.update(bundle)
    ckpt = converter.as_checkpoint(data)
    ckpt.metadata["note"] = "ü"
    ours, theirs = _both(ckpt)
    assert ours == theirs
    with zipfile.ZipFile(io.BytesIO(ours)) as zf:
        assert zf.testzip() is None


def test_numpy_reads_a_converted_bundle(bundle, tmp_path):
    converter.write(bundle, tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "m.npz") as zf:
        assert zf.testzip() is None
    with np.load(tmp_path / "m.npz") as theirs:
        assert sorted(theirs.files) == sorted(bundle)
        for name in bundle:
            assert theirs[name].tobytes() == bundle[name].read().tobytes(), name
    with converter.read(tmp_path / "m.npz") as back:
        assert_same_checkpoint(back, bundle)


@pytest.mark.parametrize("compress", [False, True])
def test_the_same_conversion_gives_the_same_bytes_at_any_time(tmp_path, monkeypatch, compress):
    data = dict(sample({"bfloat16", "float32"}))  # bfloat16: the side member is written
    for i, now in enumerate((1767225600.0, 1798761600.0)):
        monkeypatch.setattr(time, "time", lambda now=now: now)
        converter.write(data, tmp_path / f"m{i}.npz", compress=compress)
    with zipfile.ZipFile(tmp_path / "m0.npz") as zf:
        assert npz.SIDE in zf.namelist()
    assert (tmp_path / "m0.npz").read_bytes() == (tmp_path / "m1.npz").read_bytes()
