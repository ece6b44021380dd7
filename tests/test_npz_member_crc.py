"""A stored npz member's CRC-32, its only checksum, is checked however its bytes are streamed:
a conversion, verify, diff or statistics of a damaged archive is refused, as numpy.load
refuses it, and never writes the damaged values."""

from __future__ import annotations

import os
import warnings
import zipfile

import numpy as np
import pytest

import converter
from converter.cli import main
from converter.errors import ConverterWarning, CorruptionError

from .helpers import http_server

VALUES = np.arange(300_000, dtype=np.float32)  # large enough to be streamed, not buffered


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    root = tmp_path_factory.mktemp("npz")
    np.savez(root / "good.npz", w=VALUES, b=np.ones(7, np.int16))  # written by numpy
    data = bytearray((root / "good.npz").read_bytes())
    data[data.index(VALUES[123_456:123_457].tobytes())] ^= 0x01  # one bit of one value
    (root / "bad.npz").write_bytes(bytes(data))
    with pytest.raises(zipfile.BadZipFile, match="Bad CRC-32"):  # numpy itself refuses it
        np.load(root / "bad.npz")["w"]
    return root


@pytest.mark.parametrize("dst", ["o.safetensors", "o.h5", "o.npz", "o.ckpt"])
def test_a_damaged_member_is_not_converted(archives, tmp_path, dst, capsys):
    assert main(["convert", str(archives / "bad.npz"), str(tmp_path / dst)]) == 2
    assert capsys.readouterr().err == (f"ckpt: error: {archives / 'bad.npz'}: tensor 'w': "
                                       "CRC-32 mismatch (data corrupted)\n")
    assert not any(tmp_path.iterdir())  # nothing written, not even a temporary


@pytest.mark.parametrize("argv", [["inspect", "{bad}", "--stats"], ["diff", "{bad}", "{good}"]])
def test_a_damaged_member_is_refused_by_stats_and_diff(archives, argv, capsys):
    args = [a.format(bad=archives / "bad.npz", good=archives / "good.npz") for a in argv]
    assert main(args) == 2
    assert "tensor 'w': CRC-32 mismatch (data corrupted)" in capsys.readouterr().err


def test_verify_names_the_damaged_member(archives, capsys):
    assert main(["verify", str(archives / "bad.npz")]) == 1
    out = capsys.readouterr().out
    assert "BAD  w" in out and "ok   b" in out


def test_a_damaged_member_is_refused_from_a_url(archives, tmp_path):
    server = http_server(archives)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConverterWarning)
            with pytest.raises(CorruptionError, match="tensor 'w': CRC-32 mismatch"):
                converter.convert(server.url("bad.npz"), tmp_path / "o.safetensors")
    finally:
        server.shutdown()


@pytest.mark.parametrize("dst", ["o.safetensors", "o.h5", "o.npz", "o.ckpt"])
def test_an_intact_archive_converts_bit_for_bit(archives, tmp_path, dst):
    converter.convert(archives / "good.npz", tmp_path / dst).close()
    with converter.read(tmp_path / dst) as back:
        assert back["w"].read().tobytes() == VALUES.tobytes()
        assert back["b"].read().tobytes() == np.ones(7, np.int16).tobytes()


def test_a_remote_member_is_checked_in_few_requests(tmp_path):
    big = np.arange(6 << 20, dtype=np.float32)  # a 24 MiB member
    np.savez(tmp_path / "big.npz", w=big)
    server = http_server(tmp_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConverterWarning)
            converter.convert(server.url("big.npz"), tmp_path / "o.safetensors").close()
        requests = len(server.gets)
    finally:
        server.shutdown()
    with converter.read(tmp_path / "o.safetensors") as back:
        assert back["w"].read().tobytes() == big.tobytes()
    # The check and the copy each fetch the 24 MiB in pieces of several MiB, not of one.
    assert requests < 20, requests


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """An npz of 300 small members written by numpy, and a copy with one bit of member 150
    flipped (numpy.load refuses it)."""
    root = tmp_path_factory.mktemp("many")
    values = {f"m{i:03d}": np.full(50 + i, i, np.float32) for i in range(300)}
    np.savez(root / "good.npz", **values)
    data = bytearray((root / "good.npz").read_bytes())
    data[data.index(values["m150"].tobytes()) + 17] ^= 0x02
    (root / "bad.npz").write_bytes(bytes(data))
    with pytest.raises(zipfile.BadZipFile, match="Bad CRC-32"):
        np.load(root / "bad.npz")["m150"]
    return root, values


@pytest.mark.parametrize("dst", ["o.safetensors", "o.h5", "o.npz", "o.ckpt"])
def test_small_members_are_checked_and_copied_from_one_read(many, tmp_path, dst,
                                                            monkeypatch):
    root, values = many
    assert main(["convert", str(root / "bad.npz"), str(tmp_path / "bad" / dst)]) == 2
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
    reads = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, at: reads.append(n) or real(fd, n, at))
    converter.convert(root / "good.npz", tmp_path / dst).close()
    assert len(reads) < 60, len(reads)  # not two per member (its check, then its copy)
    monkeypatch.undo()
    with converter.read(tmp_path / dst) as back:
        assert list(back) == list(values)
        for name, value in values.items():
            assert back[name].read().tobytes() == value.tobytes(), name


def test_a_damaged_small_member_is_named(many, capsys):
    root, _ = many
    assert main(["convert", str(root / "bad.npz"), str(root / "o.safetensors")]) == 2
    assert capsys.readouterr().err == (f"ckpt: error: {root / 'bad.npz'}: tensor 'm150': "
                                       "CRC-32 mismatch (data corrupted)\n")


def test_a_cut_archive_of_small_members_is_refused(many, tmp_path, capsys):
    root, _ = many
    cut = tmp_path / "cut.npz"
    data = (root / "good.npz").read_bytes()
    cut.write_bytes(data[:len(data) // 2] + data[-22:])  # no member past the middle
    assert main(["convert", str(cut), str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ckpt: error: {cut}") and err.count("\n") == 1
