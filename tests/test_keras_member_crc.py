"""The weights of a ``.keras`` archive are one stored zip member, whose CRC-32 is their only
checksum: Keras (through zipfile) refuses an archive whose member does not match it, and so does
every command that reads the weights, however it reads them. The member is checked once per
file, not once per tensor."""

from __future__ import annotations

import zipfile
import zlib

import google_crc32c
import numpy as np
import pytest

import converter
from converter.cli import main
from converter.errors import CorruptionError
from converter.formats import stream

KERNEL, BIAS = "net/dense/kernel", "net/dense/bias"  # Keras' own paths, in dense.npz


def _flip(src, dst, value: np.ndarray, at: int) -> None:
    """``src`` with one bit flipped in element ``at`` of ``value``'s bytes (found in the file)."""
    data = bytearray(src.read_bytes())
    start = data.index(value.tobytes())
    data[start + at * value.itemsize] ^= 0x04
    dst.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def archives(keras_files, tmp_path_factory):
    root = tmp_path_factory.mktemp("keras_crc")
    values = np.load(keras_files / "dense.npz")
    _flip(keras_files / "dense.keras", root / "kernel.keras", values[KERNEL], 123_456)
    _flip(keras_files / "dense.keras", root / "bias.keras", values[BIAS], 2_000)
    for name in ("kernel.keras", "bias.keras"):  # what Keras' loader does first
        with zipfile.ZipFile(root / name) as z, pytest.raises(zipfile.BadZipFile,
                                                              match="Bad CRC-32"):
            z.read("model.weights.h5")
    return root


def _problem(path) -> str:
    return f"{path}: model.weights.h5: CRC-32 mismatch (data corrupted)"


def _error(path) -> str:
    return f"ckpt: error: {_problem(path)}\n"


@pytest.mark.parametrize("bad", ["kernel.keras", "bias.keras"])
@pytest.mark.parametrize("dst", ["o.safetensors", "o.h5", "o.npz", "o.ckpt"])
def test_a_damaged_archive_is_not_converted(archives, tmp_path, bad, dst, capsys):
    assert main(["convert", str(archives / bad), str(tmp_path / dst)]) == 2
    assert capsys.readouterr().err == _error(archives / bad)
    assert not any(tmp_path.iterdir())  # nothing written, not even a temporary


@pytest.mark.parametrize("name", [KERNEL, BIAS])
def test_reading_any_tensor_of_a_damaged_archive_is_refused(archives, name):
    with converter.read(archives / "bias.keras") as ckpt, \
            pytest.raises(CorruptionError, match="model.weights.h5: CRC-32 mismatch"):
        ckpt[name.removeprefix("net/")].read()


@pytest.mark.parametrize("argv", [["inspect", "{bad}", "--stats"], ["diff", "{bad}", "{good}"]])
def test_a_damaged_archive_is_refused_by_stats_and_diff(archives, keras_files, argv, capsys):
    args = [a.format(bad=archives / "kernel.keras", good=keras_files / "dense.keras")
            for a in argv]
    assert main(args) == 2
    assert capsys.readouterr().err == _error(archives / "kernel.keras")


def test_verify_reports_every_tensor_of_the_damaged_member(archives, capsys, monkeypatch):
    reads = _count_member_reads(monkeypatch)
    assert main(["verify", str(archives / "bias.keras")]) == 1
    out = capsys.readouterr().out.splitlines()
    problem = _problem(archives / "bias.keras")
    assert out[:2] == [f"BAD  dense/kernel: {problem}", f"BAD  dense/bias: {problem}"]
    assert len(reads) == 1  # a damaged member is read once too, not once per tensor


def test_the_member_is_checked_once_per_read(keras_files, tmp_path, monkeypatch):
    reads = _count_member_reads(monkeypatch)
    with converter.read(keras_files / "wrapped.keras") as ckpt:
        assert len(ckpt) > 10
        for t in ckpt.values():
            t.read()
        converter.write(ckpt, tmp_path / "o.safetensors")
    assert len(reads) == 1  # for all its tensors, read and streamed
    converter.convert(keras_files / "wrapped.keras", tmp_path / "p.safetensors").close()
    assert len(reads) == 2  # a new read checks again


def test_a_rewritten_archive_is_checked_again(archives, keras_files, tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes((keras_files / "dense.keras").read_bytes())
    converter.convert(path, tmp_path / "o.safetensors").close()
    path.write_bytes((archives / "kernel.keras").read_bytes())  # same size, new contents
    with pytest.raises(CorruptionError, match="model.weights.h5: CRC-32 mismatch"):
        converter.convert(path, tmp_path / "p.safetensors", force=True)


@pytest.mark.parametrize("dst", ["o.safetensors", "o.h5", "o.npz", "o.ckpt"])
def test_an_intact_archive_converts_bit_for_bit(keras_files, tmp_path, dst):
    values = np.load(keras_files / "dense.npz")
    converter.convert(keras_files / "dense.keras", tmp_path / dst).close()
    with converter.read(tmp_path / dst) as back:
        for name in (KERNEL, BIAS):
            got = back[name.removeprefix("net/")].read()
            assert got.dtype == values[name].dtype and got.tobytes() == values[name].tobytes()


def test_a_damaged_deflated_archive_is_refused_in_one_line(keras_files, tmp_path, capsys):
    # Repacked with deflate (as other tools do), the weights are inflated, and their CRC-32
    # checked, before anything is read.
    kernel = np.load(keras_files / "dense.npz")[KERNEL].tobytes()
    with zipfile.ZipFile(keras_files / "dense.keras") as src, \
            zipfile.ZipFile(tmp_path / "d.keras", "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = bytearray(src.read(info))
            if info.filename == "model.weights.h5":
                data[data.index(kernel) + 4_000] ^= 0x04
            dst.writestr(info.filename, bytes(data))
            dst.getinfo(info.filename).CRC = info.CRC  # the intact bytes' CRC-32
    with zipfile.ZipFile(tmp_path / "d.keras") as z, pytest.raises(zipfile.BadZipFile):
        z.read("model.weights.h5")
    assert main(["convert", str(tmp_path / "d.keras"), str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ckpt: error: {tmp_path / 'd.keras'}: ") and "CRC-32" in err
    assert err.count("\n") == 1 and not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("name", ["dense.keras", "kernel.keras", "bias.keras"])
def test_a_member_checked_in_two_halves_gives_the_same_answer(keras_files, archives, name,
                                                              monkeypatch):
    monkeypatch.setattr(stream, "SPLIT_CRC", 1)  # every member, in two threads
    monkeypatch.setattr(stream, "_cores", lambda: 2)
    stream._CHECKED.clear()
    path = (keras_files if name == "dense.keras" else archives) / name
    with converter.read(path) as ckpt:
        if name == "dense.keras":
            assert ckpt["dense/kernel"].read().tobytes() == \
                np.load(keras_files / "dense.npz")[KERNEL].tobytes()
        else:
            with pytest.raises(CorruptionError, match="model.weights.h5: CRC-32 mismatch"):
                ckpt["dense/kernel"].read()


@pytest.mark.parametrize("poly", ["zlib", "castagnoli"])
def test_crc_combine_joins_the_crcs_of_two_pieces(poly):
    crc, const = (zlib.crc32, stream.ZLIB_POLY) if poly == "zlib" else \
        (google_crc32c.value, stream.CASTAGNOLI_POLY)
    rng = np.random.default_rng(7)
    whole = rng.integers(0, 256, 20_000_003, dtype=np.uint8).tobytes()
    cuts = [0, 1, 2, 3, 4, 1000, 65_537, 10_000_000, len(whole) - 1, len(whole)]
    cuts += rng.integers(0, len(whole), 30).tolist()
    for cut in cuts:
        a, b = whole[:cut], whole[cut:]
        assert stream.crc_combine(crc(a), crc(b), len(b), const) == crc(whole), cut


def _count_member_reads(monkeypatch) -> list:
    reads: list = []
    inner = stream._member_crc

    def counted(*args, **kwargs):
        reads.append(args)
        return inner(*args, **kwargs)

    monkeypatch.setattr(stream, "_member_crc", counted)
    stream._CHECKED.clear()
    return reads


@pytest.mark.parametrize("command", ["convert", "inspect", "diff"])
def test_a_cut_archive_is_named_for_what_it_is(keras_files, tmp_path, command, capsys):
    cut = tmp_path / "cut.keras"
    cut.write_bytes((keras_files / "dense.keras").read_bytes()[:500_000])
    argv = {"convert": [str(cut), str(tmp_path / "o.safetensors")], "inspect": [str(cut)],
            "diff": [str(cut), str(keras_files / "dense.keras")]}[command]
    assert main([command, *argv]) == 2
    assert capsys.readouterr().err == (f"ckpt: error: {cut}: not a readable .keras archive "
                                       "(File is not a zip file)\n")


def test_an_empty_npz_is_named_for_what_it_is(tmp_path, capsys):
    (tmp_path / "e.npz").write_bytes(b"")
    assert main(["inspect", str(tmp_path / "e.npz")]) == 2
    assert capsys.readouterr().err == (f"ckpt: error: {tmp_path / 'e.npz'}: not a valid .npz "
                                       "(zip) file: File is not a zip file\n")
