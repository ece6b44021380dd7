"""``converter.tensor_stats``: statistics read in pieces match numpy's float64 results on random
and adversarial values (every bit pattern of the 8- and 16-bit floats among them), and
corrupted data is refused."""

from __future__ import annotations

import math
import os

import ml_dtypes
import numpy as np
import pytest

import converter
from converter import tensor_stats
from converter.errors import CorruptionError
from converter.formats import stream

# Pieces of 40,000 bytes and blocks of three lanes and a tail: pieces end inside blocks, and
# every path (stacked dot products, the tail, two passes) is taken on small arrays.
SMALL_PIECES = {"PIECE": 40_000, "BLOCK": 3 * 4096 + 100}


def _all_bits(dtype, bits) -> np.ndarray:
    return np.arange(1 << bits, dtype=np.uint16 if bits == 16 else np.uint8).view(dtype)


def _adversarial() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    n = 100_003
    mixed = rng.standard_normal(n)  # blocks far apart: one near 0, the next near 1e6
    mixed[n // 2:] += 1e6
    data = {
        "normal_f32": rng.standard_normal(n).astype(np.float32),
        "tiny_mean_f32": (rng.standard_normal(n) * 1e-3).astype(np.float32),
        "offset_f32": (1e4 + rng.standard_normal(n) * 1e-2).astype(np.float32),
        "offset_f64": 1e8 + rng.standard_normal(n),
        "mixed_f64": mixed,
        "constant_f32": np.full(n, 0.1, np.float32),
        "zeros_f32": np.zeros(n, np.float32),
        "signed_zeros_f32": np.where(rng.random(n) < 0.5, -0.0, 1.0).astype(np.float32),
        "positive_f32": rng.random(n).astype(np.float32) + 1,
        "huge_f64": rng.standard_normal(n) * 1e300,
        "denormal_f64": rng.standard_normal(n) * 1e-310,
        "bf16": rng.standard_normal(n).astype(ml_dtypes.bfloat16),
        "f16": (rng.standard_normal(n) * 100).astype(np.float16),
        "i32": rng.integers(-2**31, 2**31, size=n, dtype=np.int32),
        "u8": rng.integers(0, 256, size=n, dtype=np.uint8),
        "mask": rng.random(n) < 0.7,
        "all_f16": _all_bits(np.float16, 16),
        "all_bf16": _all_bits(ml_dtypes.bfloat16, 16),
        "all_e4m3": _all_bits(ml_dtypes.float8_e4m3fn, 8),
        "all_e5m2": _all_bits(ml_dtypes.float8_e5m2, 8),
        "complex": (rng.standard_normal(1000) + 1j * rng.standard_normal(1000)).astype(
            np.complex64),
    }
    data["normal_f32"][[5, 77_777]] = [np.nan, -np.inf]
    data["complex"][3] = complex(np.nan, 0)
    return data


@pytest.fixture(scope="module")
def adversarial(tmp_path_factory):
    data = _adversarial()
    prefix = tmp_path_factory.mktemp("stats") / "model.ckpt"
    converter.write(data, prefix, format="tf")
    return prefix, data


def _reference(a: np.ndarray) -> dict:
    """numpy's float64 statistics of the whole array at once."""
    a = a.reshape(-1)
    if a.dtype.kind == "b":
        a = a.view(np.uint8)
    with np.errstate(invalid="ignore"):  # ml_dtypes warns casting NaN
        wide = a.astype(np.float64)
    finite = wide[np.isfinite(wide)]
    exact = a.dtype.kind in "iu"
    with np.errstate(over="ignore"):
        return {"min": int(a.min()) if exact else float(finite.min()),
                "max": int(a.max()) if exact else float(finite.max()),
                "mean": float(finite.mean()), "std": float(finite.std()),
                "zeros": int(np.count_nonzero(wide == 0)),
                "nan": int(np.count_nonzero(np.isnan(wide))),
                "inf": int(np.count_nonzero(np.isinf(wide)))}


def _close(got: tensor_stats.Stats, want: dict, name: str) -> None:
    """Counts, min and max exact; the mean within 1e-12 of max(|mean|, std) (its rounding is
    relative to the values' spread, not to a mean that may be near 0), the std within 1e-12;
    both give or take a subnormal's last digits."""
    assert (got.zeros, got.nan, got.inf) == (want["zeros"], want["nan"], want["inf"]), name
    assert (got.min, got.max) == (want["min"], want["max"]), name
    assert type(got.min) is type(want["min"]), name
    assert got.mean is not None and got.std is not None
    if np.isinf(want["std"]):  # float64's largest values: numpy's std overflows too
        assert got.std == want["std"], name
        return
    scale = max(abs(want["mean"]), want["std"])
    tiny = 4 * math.ulp(0.0)
    assert abs(got.mean - want["mean"]) <= 1e-12 * scale + tiny, (name, got.mean, want["mean"])
    assert abs(got.std - want["std"]) <= 1e-12 * want["std"] + tiny, (name, got.std, want["std"])


@pytest.mark.parametrize("pieces", ["default", "small"])
def test_stats_match_numpy_float64(adversarial, monkeypatch, pieces):
    prefix, data = adversarial
    if pieces == "small":
        for name, value in SMALL_PIECES.items():
            monkeypatch.setattr(stream if name == "PIECE" else tensor_stats, name, value)
    with converter.read(prefix) as ckpt:
        got = tensor_stats.stats_all(ckpt)
    for name, a in data.items():
        if a.dtype.kind == "c":
            s = got[name]
            assert (s.min, s.zeros, s.nan, s.inf) == (None, 0, 1, 0), name
            assert s.note == "complex values: counts only"
        else:
            _close(got[name], _reference(a), name)


def test_in_memory_arrays_are_pieced_too(monkeypatch):
    a = 1e8 + np.random.default_rng(3).standard_normal(300_001)
    for name, value in SMALL_PIECES.items():
        monkeypatch.setattr(stream if name == "PIECE" else tensor_stats, name, value)
    _close(tensor_stats.stats(a), _reference(a), "in memory")


def _bundle(tmp_path, data):
    prefix = tmp_path / "c" / "model.ckpt"
    converter.write(data, prefix, format="tf")
    return prefix, next(prefix.parent.glob("model.ckpt.data-*"))


def test_a_flipped_byte_in_any_piece_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    prefix, data_file = _bundle(tmp_path, {"a": rng.standard_normal(700_000).astype(np.float32),
                                           "b": np.arange(10, dtype=np.int64)})
    raw = bytearray(data_file.read_bytes())
    raw[1_500_000] ^= 1  # the second of three pieces of "a"
    data_file.write_bytes(bytes(raw))
    with converter.read(prefix) as ckpt, pytest.raises(CorruptionError, match="'a'.*checksum"):
        tensor_stats.stats_all(ckpt)


def test_a_truncated_file_is_refused(tmp_path):
    prefix, data_file = _bundle(tmp_path, {"a": np.ones(700_000, np.float32)})
    with converter.read(prefix) as ckpt:
        os.truncate(data_file, 2_000_000)
        with pytest.raises(CorruptionError, match="'a'.*truncated"):
            tensor_stats.stats_all(ckpt)
