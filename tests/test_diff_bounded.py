"""``diff`` compares values a chunk at a time: bounded memory for big files, the same answers
as comparing whole arrays (checked against the whole-array comparison on random values, NaN,
infinities and -0.0 included), and tensors without elements compared without reading."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import warnings

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import converter
from converter.cli import main
from converter.diff import diff
from converter.errors import CorruptionError, FormatError, UsageError
from converter.formats import stream
from converter.tensor import Checkpoint, Tensor
from tests.helpers import need_disk

diff_module = sys.modules["converter.diff"]  # the name converter.diff is the function

MiB = 2**20

LAUNCHER = """
import os, subprocess, sys
p = subprocess.Popen([sys.executable, "-m", "converter", *sys.argv[1:]],
                     stdout=subprocess.PIPE, text=True)
out = p.stdout.read()
_, status, usage = os.wait4(p.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)
print(out, end="")
"""

SHAPE = (2048, 9600)  # 75 MiB of float32


def _big(i: int, changed: str) -> np.ndarray:
    a = np.full(SHAPE, i + 0.5, np.float32)
    if changed == "all" and i == 0:
        a *= np.float32(1 + 2**-20)  # every value differs, by less than rtol 1e-6
    elif changed == "last":
        a[-1, -1] += 1
    return a


def _lazy(changed: str) -> Checkpoint:
    return Checkpoint({f"layer_{i}/kernel": Tensor(f"layer_{i}/kernel", np.float32, SHAPE,
                                                   lambda i=i: _big(i, changed))
                       for i in range(4)})


@pytest.fixture(scope="module")
def big_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("big_diff")
    need_disk(root, 2 * 4 * SHAPE[0] * SHAPE[1] * 4)
    converter.write(_lazy(""), root / "a.safetensors")  # 300 MiB
    converter.write(_lazy("all"), root / "b.ckpt", format="tf")
    yield root / "a.safetensors", root / "b.ckpt"
    shutil.rmtree(root)  # not kept to the end of the session: a small disk fills up


@pytest.mark.parametrize("flags, code", [([], 1), (["--rtol", "1e-6"], 0)])
def test_diff_of_two_300_mib_files_stays_under_150_mib(big_pair, flags, code):
    a, b = big_pair
    assert a.stat().st_size > 300 * MiB
    result = subprocess.run([sys.executable, "-c", LAUNCHER, "diff", str(a), str(b), *flags],
                            capture_output=True, text=True, check=True)
    first, *lines = result.stdout.splitlines()
    status, peak = map(int, first.split())
    assert status == code, result.stdout
    assert peak < 150 * MiB, f"peak RSS {peak / MiB:.0f} MiB"
    if code:  # the one tensor whose every value changed, with its largest differences
        assert lines[0].startswith("differs: layer_0/kernel: max abs 4.76837e-07, max rel")
        assert lines[-1] == "3 equal, 1 differ, 0 only in A, 0 only in B"


# ----------------------------------------------------------------------------- semantics


def _reference(x: np.ndarray, y: np.ndarray, rtol: float, atol: float):
    """What comparing whole arrays gives: (equal, max_abs, max_rel) as diff reported them
    before it streamed."""
    same_dtype = x.dtype == y.dtype
    if same_dtype and rtol == 0 and atol == 0 and x.tobytes() == y.tobytes():
        return True, None, None
    equal = same_dtype and bool(rtol or atol)
    wide = np.complex128 if x.dtype.kind == "c" or y.dtype.kind == "c" else np.float64
    xf, yf = x.astype(wide), y.astype(wide)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN differences
        delta = np.abs(xf - yf)
        delta = np.where((np.isnan(xf) & np.isnan(yf)) | (np.isinf(xf) & (xf == yf)), 0.0,
                         delta)
        rel = np.where(delta == 0, 0.0, delta / np.abs(yf))
        max_abs, max_rel = float(np.nanmax(delta)), float(np.nanmax(rel))
        if rtol or atol:
            # numpy's own notion of close: |x - y| <= atol + rtol * |y|, NaN equal to NaN
            equal = equal and bool(np.all(np.isclose(x.astype(wide), yf, rtol, atol,
                                                     equal_nan=True)))
    return equal, max_abs, max_rel


def _same_float(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or a == b


SPECIAL = [0.0, -0.0, 1.0, -1.5, 1e-7, 3e38, float("inf"), float("-inf"), float("nan")]
DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16, np.int32, np.uint8,
          np.complex64, np.bool_]


@st.composite
def pairs(draw):
    n = draw(st.integers(1, 40))
    values = st.lists(st.sampled_from(SPECIAL) | st.floats(-4, 4, width=32), min_size=n,
                      max_size=n)
    da, db = draw(st.sampled_from(DTYPES)), draw(st.sampled_from(DTYPES))
    if draw(st.booleans()):
        db = da
    with warnings.catch_warnings(), np.errstate(invalid="ignore", over="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN/inf to integers
        x = np.asarray(draw(values)).astype(da)
        y = x.copy().astype(db) if draw(st.booleans()) else np.asarray(draw(values)).astype(db)
        if db == da and draw(st.booleans()):  # equal apart from a few positions
            y = x.copy()
            for i in draw(st.lists(st.integers(0, n - 1), max_size=3)):
                y[i] = np.asarray(draw(st.sampled_from(SPECIAL))).astype(db)
    tol = draw(st.sampled_from([(0.0, 0.0), (1e-3, 0.0), (0.0, 0.5), (0.1, 1e-6)]))
    return x, y, tol


@settings(max_examples=150, deadline=None)
@given(pairs())
def test_blockwise_comparison_matches_whole_arrays(monkeypatch_blocks, case):
    x, y, (rtol, atol) = case
    got = diff({"t": x}, {"t": y}, rtol=rtol, atol=atol).tensors[0]
    equal, max_abs, max_rel = _reference(x, y, rtol, atol)
    assert got.equal == equal
    assert _same_float(got.max_abs, max_abs), (got.max_abs, max_abs)
    assert _same_float(got.max_rel, max_rel), (got.max_rel, max_rel)


@pytest.fixture(scope="module")
def monkeypatch_blocks():
    # Blocks of a few elements, so every run of values above spans several of them
    # (raising=False: the test holds for a comparison without blocks just as well).
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(diff_module, "BLOCK", 3, raising=False)
        mp.setattr(diff_module, "_STEP", 16, raising=False)
        yield


def test_streamed_spans_in_small_chunks_match_whole_arrays(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    a = {"x": rng.normal(size=(37, 5)).astype(np.float32), "y": np.arange(50, dtype=np.int64),
         "z": rng.normal(size=7).astype(np.float16)}
    b = {k: v.copy() for k, v in a.items()}
    b["x"][36, 4] = np.nan
    b["y"][3] = 7
    converter.write(a, tmp_path / "a.safetensors")
    converter.write(b, tmp_path / "b.ckpt", format="tf")
    monkeypatch.setattr(stream, "CHUNK", 64)
    monkeypatch.setattr(stream, "PIECE", 64)  # both sides read 64 bytes at a time
    monkeypatch.setattr(diff_module, "_STEP", 64, raising=False)
    monkeypatch.setattr(diff_module, "BLOCK", 5, raising=False)
    with converter.read(tmp_path / "a.safetensors") as ca, \
            converter.read(tmp_path / "b.ckpt") as cb:
        assert all(t.span for t in [*ca.values(), *cb.values()])
        for rtol in (0.0, 1e-3):
            got = {t.name: t for t in diff(ca, cb, rtol=rtol).tensors}
            for name in a:
                equal, max_abs, max_rel = _reference(a[name], b[name], rtol, 0.0)
                assert got[name].equal == equal, name
                assert _same_float(got[name].max_abs, max_abs), name
                assert _same_float(got[name].max_rel, max_rel), name
    assert not got["x"].equal and not got["y"].equal and got["z"].equal


def test_corrupt_data_is_found_while_streaming(tmp_path):
    converter.write({"a": np.arange(4096, dtype=np.float32)}, tmp_path / "m.ckpt")
    shard = tmp_path / "m.ckpt.data-00000-of-00001"
    raw = bytearray(shard.read_bytes())
    raw[-1] ^= 1
    shard.write_bytes(bytes(raw))
    with converter.read(tmp_path / "m.ckpt") as c, pytest.raises(CorruptionError,
                                                                 match="'a'.*checksum"):
        diff(c, {"a": np.arange(4096, dtype=np.float32)})


@pytest.mark.parametrize("rtol, atol", [(-1e-3, 0.0), (0.0, float("nan")), (float("inf"), 0)])
def test_tolerances_must_be_finite_and_not_negative(rtol, atol, tmp_path, capsys):
    with pytest.raises(UsageError, match="must be a finite number >= 0"):
        diff({"a": np.zeros(2)}, {"a": np.zeros(2)}, rtol=rtol, atol=atol)
    converter.write({"a": np.zeros(2)}, tmp_path / "a.npz")
    assert main(["diff", str(tmp_path / "a.npz"), str(tmp_path / "a.npz"),
                 "--rtol", str(rtol), "--atol", str(atol)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# ----------------------------------------------------------------------------- no elements


def test_zero_size_tensor_from_tensorflow(optimizer_fixtures, capsys):
    entry = optimizer_fixtures["zero_size"]
    assert entry["shapes"]["empty"] == [0, 2**61]
    with converter.read(entry["prefix"]) as ckpt:
        assert ckpt["empty"].shape == (0, 2**61) and ckpt["empty"].nbytes == 0
        with pytest.raises(FormatError, match=r"'empty': shape \[0, 2305843009213693952\] "
                                              "holds no values, but is too large"):
            ckpt["empty"].read()
        with pytest.raises(FormatError, match="too large"):
            np.asarray(ckpt["empty"])
    assert main(["diff", entry["prefix"], entry["prefix"]]) == 0
    assert capsys.readouterr().out.endswith("2 equal, 0 differ, 0 only in A, 0 only in B\n")


def test_zero_size_tensors_are_compared_without_reading():
    def refuse():
        raise AssertionError("read")

    big = {"e": Tensor("e", np.float32, (0, 2**61), refuse)}
    report = diff(Checkpoint(big), Checkpoint(big), rtol=1e-3)
    assert report.equal and report.tensors[0].max_abs is None
    other = {"e": Tensor("e", np.float32, (2**61, 0), refuse)}
    assert diff(Checkpoint(big), Checkpoint(other)).tensors[0].shape == ([0, 2**61],
                                                                          [2**61, 0])
    # Shapes numpy can hold still read, as empty arrays.
    assert Tensor.from_array("s", np.zeros((0, 2**40), np.float32)).read().shape == (0, 2**40)
