"""Writers against hostile tensors built from the same tables as tests/grammar.py: every name,
dtype and shape either round-trips bit-exact through the writer and its reader, or the writer
refuses it in one line naming the tensor, and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import converter
from converter import registry
from tests import grammar
from tests.helpers import assert_same

# Writers that take any checkpoint and read it back (not hf's model mappings).
WRITABLE = [f for f in registry.formats().values() if f.can_write and f.roundtrip]
NAMES = grammar.HOSTILE_NAMES + ["a/../b", "a/..", "./", "con", "x.npy", "x:0", "a\\b",
                                 "\x7f", "\t", " ", "-", "_CHECKPOINTABLE_OBJECT_GRAPH/x"]
ARRAYS = {
    "zero-size with a huge dim": np.zeros((0, 2**40), np.float32),
    "rank 33": np.zeros((1,) * 33, np.float32),
    "rank 64": np.zeros((1,) * 64, np.float32),
    "bytes S": np.array([b"ab", b"c"], dtype="S2"),
    "unicode U": np.array(["ab", "c"], dtype="U2"),
    "void V": np.zeros(2, dtype="V3"),
    "longdouble": np.zeros(2, dtype=np.longdouble),
    "clongdouble": np.zeros(2, dtype=np.clongdouble),
    "structured": np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]),
    "datetime": np.zeros(2, dtype="M8[s]"),
    "big-endian float32": np.arange(3, dtype=">f4"),
    "non-contiguous": np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2],
    "float8": np.arange(4).astype(ml_dtypes.float8_e5m2),
    "bool scalar": np.array(True),
}


def _out(tmp: Path, fmt: registry.Format) -> Path:
    return tmp / ("out_npy" if fmt.name == "npy" else f"out{fmt.suffixes[0]}")


def _round_trip_or_refusal(tmp: Path, fmt: registry.Format, data: dict) -> None:
    out = _out(tmp, fmt)
    try:
        converter.write(data, out, format=fmt.name)
    except converter.ConverterError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert any(repr(n)[1:-1][:40] in message or n[:40] in message for n in data), message
        assert sorted(p.name for p in tmp.iterdir()) == [], "a refused write left files"
        return
    # Nothing outside the output: the output is the only entry in the directory.
    assert sorted(p.name for p in tmp.iterdir()) == sorted(
        p.name for p in tmp.iterdir() if p.name.startswith("out") or p.name == "checkpoint"), list(
        tmp.iterdir())
    if fmt.name == "npy":
        for p in out.rglob("*"):
            assert p.resolve().is_relative_to(out.resolve()), p
    with converter.read(out, format=fmt.name) as back:
        names = [n for n in back if back[n].kind != "object_graph"]
        assert names == list(data), (names, list(data))
        for name, value in data.items():
            got = back[name].read()
            if value.dtype.byteorder == ">":  # stored in the canonical (little-endian) order
                value = value.astype(value.dtype.newbyteorder("<"))
            if value.dtype.kind in "SU" and got.dtype.hasobject:
                value = np.array([v.encode() if isinstance(v, str) else v
                                  for v in value.reshape(-1)], dtype=object).reshape(value.shape)
            assert_same(got, value, name)


@pytest.mark.parametrize("fmt", WRITABLE, ids=lambda f: f.name)
@pytest.mark.parametrize("name", NAMES, ids=lambda n: repr(n[:12]) + f"-{len(n)}")
def test_hostile_names(tmp_path, fmt, name):
    _round_trip_or_refusal(tmp_path, fmt, {name: np.arange(3, dtype=np.float32)})


@pytest.mark.parametrize("fmt", WRITABLE, ids=lambda f: f.name)
def test_names_that_differ_only_in_escaping(tmp_path, fmt):
    _round_trip_or_refusal(tmp_path, fmt, {"a/b": np.zeros(1, np.float32),
                                           "a%2Fb": np.ones(1, np.float32),
                                           "a__b": np.full(1, 2, np.float32)})


@pytest.mark.parametrize("fmt", WRITABLE, ids=lambda f: f.name)
@pytest.mark.parametrize("label", list(ARRAYS))
def test_hostile_arrays(tmp_path, fmt, label):
    _round_trip_or_refusal(tmp_path, fmt, {"w": ARRAYS[label]})
