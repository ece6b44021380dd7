"""Tensor names that are not plain paths: they never become paths outside the output, round-trip
through our readers, and names a format cannot store are refused in one line."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import converter
from converter.errors import FormatError
from tests.helpers import assert_same

HOSTILE = ["../up", "/abs", "a/../../b", "a\\b", "c:d", "x\x00y", "%41", "..", ".", "", "a//b"]
WRITERS = [("npy", ""), ("npz", ".npz"), ("hdf5", ".h5"), ("safetensors", ".safetensors")]


@pytest.mark.parametrize("fmt,suffix", [("npy", ""), ("npz", ".npz")])
def test_names_round_trip_and_stay_inside(tmp_path, fmt, suffix):
    data = {n: np.full(2, i, np.int32) for i, n in enumerate(HOSTILE)}
    out = tmp_path / "sub" / f"x{suffix}"
    out.parent.mkdir()
    converter.write(data, out, format=fmt)
    assert sorted(os.listdir(tmp_path)) == ["sub"]  # nothing beside or above the output
    if fmt == "npz":
        with zipfile.ZipFile(out) as zf:
            for member in zf.namelist():
                parts = member.split("/")
                assert not member.startswith("/") and ".." not in parts and "." not in parts \
                    and "" not in parts and "\\" not in member and "\0" not in member, member
    else:
        for root, _, files in os.walk(out):
            for f in files:
                assert os.path.realpath(os.path.join(root, f)).startswith(str(out) + os.sep)
    with converter.read(out) as back:
        assert list(back) == list(data)
        for name, value in data.items():
            assert_same(back[name], value, name)


def test_npz_plain_names_stay_numpy_keys(tmp_path):
    converter.write({"dense/kernel": np.ones(2), "é/b": np.zeros(1)}, tmp_path / "x.npz")
    with np.load(tmp_path / "x.npz") as theirs:
        assert sorted(theirs.files) == ["dense/kernel", "é/b"]


def test_npy_directory_without_index_unescapes(tmp_path):
    names = ["../up", "a:b", "A.NPY/b", "c.npy/d"]
    converter.write({n: np.ones(1) for n in names}, tmp_path / "d", format="npy")
    (tmp_path / "d" / "converter-index.json").unlink()
    with converter.read(tmp_path / "d", format="npy") as back:
        assert sorted(back) == sorted(names)


@pytest.mark.parametrize("fmt,suffix", WRITERS)
def test_name_not_utf8_is_refused(tmp_path, fmt, suffix):
    # TF bundle keys are bytes; a key that is not UTF-8 reads as a name with lone surrogates.
    out = tmp_path / f"x{suffix}"
    with pytest.raises(FormatError, match=r"tensor 'a\\udcffb'.*not valid UTF-8"):
        converter.write({"a\udcffb": np.ones(2)}, out, format=fmt)
    assert not out.exists()


def test_hdf5_refuses_nul_in_names(tmp_path):
    with pytest.raises(FormatError, match=r"tensor 'x\\x00y'.*NUL.*HDF5"):
        converter.write({"x\x00y": np.ones(2)}, tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("fmt,suffix", [("npz", ".npz"), ("safetensors", ".safetensors")])
def test_nul_in_names_round_trips(tmp_path, fmt, suffix):
    converter.write({"x\x00y": np.ones(2)}, tmp_path / f"x{suffix}")
    with converter.read(tmp_path / f"x{suffix}") as back:
        assert list(back) == ["x\x00y"]


def test_cli_refusal_is_one_line(tmp_path, capsys):
    from converter.cli import main

    converter.write({"x\x00y": np.ones(2)}, tmp_path / "x.safetensors")
    assert main(["convert", str(tmp_path / "x.safetensors"), str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "NUL" in err


def test_npy_directory_refuses_links_out_without_index(tmp_path):
    outside = tmp_path / "secret.npy"
    np.save(outside, np.arange(3))
    d = tmp_path / "d"
    d.mkdir()
    np.save(d / "a.npy", np.ones(2))
    os.symlink(outside, d / "b.npy")
    with pytest.raises(FormatError, match="outside the directory"):
        converter.read(d, format="npy")


def test_npy_directory_refuses_linked_scopes_out(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    np.save(outside / "k.npy", np.arange(3))
    d = tmp_path / "d"
    d.mkdir()
    np.save(d / "a.npy", np.ones(2))
    os.symlink(outside, d / "scope")
    try:
        with converter.read(d, format="npy") as back:
            assert list(back) == ["a"]  # the linked scope is not walked into
    except FormatError as exc:
        assert "outside the directory" in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "B", ".", "..", "", "x.npy", "X.NPY", "é", ":", "%",
                                 "\x00", ".ATTRIBUTES", "k" * 120]), min_size=1, max_size=4))
def test_npz_member_fast_path_agrees_with_escaping_each_part(parts):
    from converter.formats import _common

    name = "/".join(parts)
    slow = "/".join([_common._escape_part(p, scope=True, portable=False) for p in parts[:-1]]
                    + [_common._escape_part(parts[-1], scope=False, portable=False) + ".npy"])
    assert _common.name_to_path(name, portable=False) == slow
