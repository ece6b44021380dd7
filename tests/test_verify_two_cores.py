"""``ckpt verify`` reads a large tensor in two halves at once and joins their crc32c, and
``ckpt diff`` reads each side on a thread of its own, taking the second side's crc32c from the
first while the two are identical: the answers are the ones reading each tensor whole gives,
against the checksums TensorFlow wrote, wherever in the tensor a bit flips or the file ends."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

import converter
from converter.cli import main
from converter.formats import stream

MiB = 1 << 20


@pytest.fixture(scope="module")
def large(tf_fixtures) -> dict:
    """The bundle TensorFlow wrote, and where its large tensor lies in the data file."""
    prefix = tf_fixtures["tf1_large"]["prefix"]
    with converter.read(prefix) as ckpt:
        path, offset, nbytes = ckpt["large"].span
    assert nbytes == 3 * MiB and nbytes >= stream.SPLIT_SPAN
    return {"prefix": prefix, "data": Path(path), "offset": offset, "nbytes": nbytes}


@pytest.fixture(params=[2, 1], ids=["two-cores", "one-core"])
def cores(request, monkeypatch) -> int:
    monkeypatch.setattr(stream, "_cores", lambda: request.param)
    return request.param


def _copy(large: dict, tmp_path: Path) -> tuple[str, Path]:
    src = Path(large["prefix"])
    for f in src.parent.iterdir():
        if f.name.startswith(src.name + "."):
            shutil.copy(f, tmp_path / f.name)
    return str(tmp_path / src.name), tmp_path / large["data"].name


def test_an_intact_bundle_verifies(large, cores, capsys):
    assert main(["verify", large["prefix"]]) == 0
    assert capsys.readouterr().out.splitlines() == ["ok   large", "ok   small",
                                                    "2 tensors, 3.0 MiB; 0 bad"]


# The first byte, both sides of the point the halves meet (1 MiB of 3) and the last byte.
@pytest.mark.parametrize("at", [0, MiB - 1, MiB, 3 * MiB - 1])
def test_a_flipped_bit_anywhere_is_found(large, cores, tmp_path, at, capsys):
    prefix, data = _copy(large, tmp_path)
    raw = bytearray(data.read_bytes())
    raw[large["offset"] + at] ^= 0x10
    data.write_bytes(bytes(raw))
    assert main(["verify", prefix]) == 1
    assert capsys.readouterr().out.splitlines()[:2] == [
        f"BAD  large: {data}: tensor 'large': checksum mismatch (data corrupted)", "ok   small"]


@pytest.mark.parametrize("keep", [MiB // 2, 2 * MiB + 5])  # cut in the first half, the second
def test_a_file_cut_inside_the_tensor_is_found(large, cores, tmp_path, keep, capsys):
    prefix, data = _copy(large, tmp_path)
    data.write_bytes(data.read_bytes()[:large["offset"] + keep])
    assert main(["verify", prefix]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"BAD  large: {data}: tensor 'large': data ends at byte ")
    assert out[0].endswith("the file is truncated")


def _flipped(large: dict, tmp_path: Path, at: int) -> str:
    prefix, data = _copy(large, tmp_path)
    raw = bytearray(data.read_bytes())
    raw[large["offset"] + at] ^= 0x10
    data.write_bytes(bytes(raw))
    return prefix


def test_a_bundle_and_its_copy_are_equal(large, tmp_path, capsys):
    copy, _ = _copy(large, tmp_path)
    assert main(["diff", large["prefix"], copy]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 equal, 0 differ, 0 only in A, 0 only in B"


@pytest.mark.parametrize("side", ["A", "B"])
@pytest.mark.parametrize("at", [0, MiB + 7, 3 * MiB - 1])  # in the first, middle, last piece
def test_a_damaged_side_is_refused_by_diff(large, tmp_path, side, at, capsys):
    damaged = _flipped(large, tmp_path, at)
    before = threading.active_count()
    args = [damaged, large["prefix"]] if side == "A" else [large["prefix"], damaged]
    assert main(["diff", *args]) == 2
    data = Path(damaged).parent / large["data"].name
    assert capsys.readouterr().err == (f"ckpt: error: {data}: tensor 'large': checksum "
                                       "mismatch (data corrupted)\n")
    assert threading.active_count() == before  # the readers stopped


def _rewritten(large: dict, tmp_path: Path, edit) -> tuple[str, np.ndarray]:
    """The bundle with ``large`` edited, written anew (its crc32c that of the new values)."""
    with converter.read(large["prefix"]) as ckpt:
        values = {n: t.read().copy() for n, t in ckpt.items()}
    edit(values["large"])
    out = tmp_path / "b" / "model.ckpt"
    converter.write(values, out, format="tf")
    return str(out), values["large"]


def test_values_that_differ_are_measured_and_the_rest_still_checked(large, tmp_path, capsys):
    def edit(v: np.ndarray) -> None:  # the first piece differs; the last is damaged below
        v[0, 0] += np.float32(0.5)

    with converter.read(large["prefix"]) as ckpt:
        was = float(ckpt["large"].read()[0, 0])
    b, values = _rewritten(large, tmp_path, edit)
    assert main(["diff", large["prefix"], b, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    row = next(t for t in report["tensors"] if t["name"] == "large")
    assert row["equal"] is False and row["max_abs"] == abs(float(values[0, 0]) - was) > 0.49
    with converter.read(b) as ckpt:
        path, offset, nbytes = ckpt["large"].span
    raw = bytearray(Path(path).read_bytes())
    raw[offset + nbytes - 1] ^= 0x01  # B no longer matches its own crc32c
    Path(path).write_bytes(bytes(raw))
    assert main(["diff", large["prefix"], b]) == 2
    assert "tensor 'large': checksum mismatch" in capsys.readouterr().err
