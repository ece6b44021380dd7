"""Pickled .npy files (--allow-pickle): dicts of arrays become tensors, anything else is refused
in one line."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

import converter
from converter.errors import FormatError
from tests.helpers import assert_same


def _mtcnn_like() -> dict:
    rng = np.random.default_rng(0)
    return {"conv1": {"weights": rng.standard_normal((3, 3, 3, 10)).astype(np.float32),
                      "biases": rng.standard_normal(10).astype(np.float32)},
            "prelu1": {"alpha": np.float32([0.25, -1.5])}}


def test_nested_dict_becomes_tensors(tmp_path):
    data = _mtcnn_like()
    np.save(tmp_path / "det1.npy", data)
    with converter.read(tmp_path / "det1.npy", allow_pickle=True) as ckpt:
        assert list(ckpt) == ["conv1/weights", "conv1/biases", "prelu1/alpha"]
        assert_same(ckpt["conv1/weights"], data["conv1"]["weights"])
        assert_same(ckpt["prelu1/alpha"], data["prelu1"]["alpha"])
    converter.convert(tmp_path / "det1.npy", tmp_path / "det1.safetensors",
                      read_options={"allow_pickle": True})
    with converter.read(tmp_path / "det1.safetensors") as back:
        assert_same(back["conv1/biases"], data["conv1"]["biases"])


def test_dict_in_a_directory_is_prefixed_by_its_file(tmp_path):
    (tmp_path / "d").mkdir()
    np.save(tmp_path / "d" / "det1.npy", _mtcnn_like())
    with converter.read(tmp_path / "d", format="npy", allow_pickle=True) as ckpt:
        assert list(ckpt)[0] == "det1/conv1/weights"


class _Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` (SHORT_BINSTRING/BINSTRING), as Python 2 numpy did."""

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + n.to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_py2_str


def test_python2_pickle_needs_latin1(tmp_path):
    w = np.arange(-3, 3, dtype=np.float32) * np.float32(1.7)  # bytes that are not ASCII
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump({b"conv1": {b"weights": w}})
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|O", "fortran_order": False, "shape": ()})
    (tmp_path / "py2.npy").write_bytes(b"\x93NUMPY\x01\x00" + header.getvalue()[8:]
                                       + buf.getvalue())
    with pytest.raises(UnicodeError):  # what numpy.load does by default
        np.load(tmp_path / "py2.npy", allow_pickle=True)
    with converter.read(tmp_path / "py2.npy", allow_pickle=True) as ckpt:
        assert list(ckpt) == ["conv1/weights"]
        assert_same(ckpt["conv1/weights"], w)


@pytest.mark.parametrize("value,match", [
    ({"conv1": {"weights": np.ones(2), "stride": 2}},
     "key 'conv1/stride' holds a value of type int"),
    ({"a": [1, 2]}, "key 'a' holds a value of type list"),
    ({}, "empty dict"),
    ({1: np.ones(2)}, "not a string"),
])
def test_non_array_leaves_are_refused(tmp_path, value, match):
    np.save(tmp_path / "x.npy", value)
    with pytest.raises(FormatError, match=match):
        converter.read(tmp_path / "x.npy", allow_pickle=True)


def test_object_array_of_strings_is_a_string_tensor(tmp_path):
    np.save(tmp_path / "s.npy", np.array([b"ab", "cé"], dtype=object))
    with converter.read(tmp_path / "s.npy", allow_pickle=True) as ckpt:
        assert [bytes(x) for x in ckpt["s"].read()] == [b"ab", "cé".encode()]


def test_cli_inspect_dict(tmp_path, capsys):
    from converter.cli import main

    np.save(tmp_path / "det1.npy", _mtcnn_like())
    assert main(["inspect", "--allow-pickle", str(tmp_path / "det1.npy")]) == 0
    assert "conv1/weights" in capsys.readouterr().out


def test_npz_member_holding_a_dict(tmp_path):
    data = _mtcnn_like()
    np.savez(tmp_path / "p.npz", det1=np.array(data, dtype=object), plain=np.arange(3))
    with converter.read(tmp_path / "p.npz", allow_pickle=True) as ckpt:
        assert list(ckpt) == ["det1/conv1/weights", "det1/conv1/biases", "det1/prelu1/alpha",
                              "plain"]
        assert_same(ckpt["det1/conv1/weights"], data["conv1"]["weights"])
    np.savez(tmp_path / "bad.npz", d=np.array({"a": 1.5}, dtype=object))
    with pytest.raises(FormatError, match="key 'a' holds a value of type float"):
        converter.read(tmp_path / "bad.npz", allow_pickle=True)
