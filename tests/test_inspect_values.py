"""``ckpt inspect --tensor/--all-tensors/--stats`` and ``converter.inspection.stats``, against
TensorFlow's own ``inspect_checkpoint`` output and the values ``tf.train.load_checkpoint`` reads
from checkpoints TensorFlow wrote."""

from __future__ import annotations

import json
import os
import pickle
import pty
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

import converter
from converter import inspection, tensor_stats
from converter.cli import main
from converter.formats import stream
from tests.helpers import HERE
from tests.inspect_tf import PRINT_OPTIONS, PRINTED
from tests.inspect_tf import tf_views as tf_views  # a fixture

OPTS = ["--threshold", str(PRINT_OPTIONS["threshold"]),
        "--precision", str(PRINT_OPTIONS["precision"])]


def _blocks(text: str) -> dict[str, str]:
    """``{name: header and printed values}`` of inspect_checkpoint-style output, without our
    statistics lines and either tool's closing summary."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("tensor: "):
            current = out.setdefault(line.split()[1], [line])
        elif line.startswith(("# Total", "  min ", "  (")) or " of " in line and \
                line.endswith(" values") or "NaN or Inf" in line:
            continue
        elif current is not None:
            current.append(line)
    return {k: "\n".join(v).rstrip("\n") for k, v in out.items()}


def _expected(tf_fixtures, fixture: str) -> dict[str, np.ndarray]:
    with open(tf_fixtures[fixture]["expected"], "rb") as f:
        return pickle.load(f)


@pytest.mark.parametrize("fixture", sorted(PRINTED))
def test_tensor_prints_values_as_tensorflow_does(tf_fixtures, tf_views, fixture, capsys):
    prefix = tf_fixtures[fixture]["prefix"]
    for name, tf_text in tf_views["printed"][fixture].items():
        assert main(["inspect", prefix, "--tensor", name, *OPTS]) == 0
        ours = capsys.readouterr().out
        assert _blocks(ours) == _blocks(tf_text), name
        assert "  min " in ours or "(strings have no statistics)" in ours


@pytest.mark.parametrize("fixture", sorted(PRINTED))
def test_all_tensors_prints_what_tensorflow_prints(tf_fixtures, tf_views, fixture, capsys):
    assert main(["inspect", tf_fixtures[fixture]["prefix"], "--all-tensors", *OPTS]) == 0
    ours = _blocks(capsys.readouterr().out)
    theirs = _blocks(tf_views["all"][fixture])
    assert list(ours) == list(theirs)
    assert ours == theirs


def _numpy_stats(a: np.ndarray) -> dict:
    """What the statistics must be, from the whole array at once."""
    a = np.asarray(a).reshape(-1)
    with np.errstate(over="ignore"):  # float64's largest values: the variance overflows
        return _whole(a)


def _whole(a: np.ndarray) -> dict:
    if a.dtype.kind in "biu":
        wide = a.astype(np.float64)
        return {"min": int(a.min()), "max": int(a.max()), "mean": wide.mean(), "std": wide.std(),
                "zeros": int((a == 0).sum()), "nan": 0, "inf": 0}
    wide = a.astype(np.float64)
    finite = wide[np.isfinite(wide)]
    return {"min": finite.min(), "max": finite.max(), "mean": finite.mean(), "std": finite.std(),
            "zeros": int((wide == 0).sum()), "nan": int(np.isnan(wide).sum()),
            "inf": int(np.isinf(wide).sum())}


def _check(got: inspection.Stats, want: dict, what: str) -> None:
    assert (got.zeros, got.nan, got.inf) == (want["zeros"], want["nan"], want["inf"]), what
    assert got.min == want["min"] and got.max == want["max"], what
    assert type(got.min) is type(want["min"]) or isinstance(want["min"], float), what
    for key in ("mean", "std"):
        value, expected = getattr(got, key), float(want[key])
        if np.isinf(expected):  # float64's largest values: numpy's std overflows too
            assert value == expected, what
        else:
            assert value == pytest.approx(expected, rel=1e-12, abs=1e-300), (what, key)


@pytest.mark.parametrize("fixture", ["all_dtypes", "tf1_adam"])
def test_stats_match_numpy_on_what_tensorflow_reads(tf_fixtures, fixture):
    expected = _expected(tf_fixtures, fixture)
    with converter.read(tf_fixtures[fixture]["prefix"]) as ckpt:
        for name, tensor in ckpt.items():
            got = inspection.stats(tensor)
            a = expected[name]
            assert got.count == a.size, name
            if a.dtype.hasobject:
                assert got.note == "strings have no statistics" and got.min is None
            elif a.dtype.kind == "c":
                assert got.min is None and got.nan == int(np.isnan(a).sum()), name
            elif a.size:
                _check(got, _numpy_stats(a), name)


def test_float_kinds_include_bfloat16_float16_and_float8(tf_fixtures):
    with converter.read(tf_fixtures["all_dtypes"]["prefix"]) as ckpt:
        for name in ("t_bfloat16", "t_float16", "t_float8_e4m3fn", "t_float8_e5m2"):
            if name in ckpt:
                s = inspection.stats(ckpt[name])
                assert s.nan == 1 and s.zeros == 2 and s.min is not None, name


@pytest.fixture
def big(tmp_path):
    """Tensors much larger than the streamed chunk (after the patch below), with NaN and Inf
    scattered, and an ill-conditioned one (a large offset) where a running sum of squares
    would lose the variance."""
    rng = np.random.default_rng(5)
    f32 = rng.standard_normal(300_001).astype(np.float32) * 3 + 1
    f32[[7, 150_000, 300_000]] = [np.nan, np.inf, -np.inf]
    f32[::1000] = 0
    data = {
        "f32": f32,
        "bf16": rng.standard_normal((513, 257)).astype(ml_dtypes.bfloat16),
        "f16": (rng.standard_normal(200_003) * 100).astype(np.float16),
        "offset": 1e8 + rng.standard_normal(250_000),
        "i8": rng.integers(-128, 128, size=90_001, dtype=np.int8),
        "u64": rng.integers(0, 2**64 - 1, size=70_000, dtype=np.uint64),
        "mask": rng.random(100_000) < 0.3,
    }
    data["f16"][[1, 2]] = [np.nan, np.inf]
    prefix = tmp_path / "big" / "model.ckpt"
    converter.write(data, prefix, format="tf")
    return prefix, data


def test_chunked_stats_equal_whole_array_stats(big, monkeypatch):
    prefix, data = big
    monkeypatch.setattr(stream, "PIECE", 4096)
    monkeypatch.setattr(tensor_stats, "BLOCK", 1000)
    pieces = []
    real = stream.SpanReader.read

    def counting(self, tensor, offset, n):
        pieces.append(tensor.name)
        return real(self, tensor, offset, n)

    monkeypatch.setattr(stream.SpanReader, "read", counting)
    with converter.read(prefix) as ckpt:
        for name, array in data.items():
            _check(inspection.stats(ckpt[name]), _numpy_stats(array), name)
    for name, array in data.items():
        assert pieces.count(name) == -(-array.nbytes // 4096), name  # streamed, piece by piece


def test_stats_memory_is_bounded(tmp_path):
    """A 256 MiB tensor costs a few MiB (the child's own peak, from wait4)."""
    prefix = tmp_path / "m" / "model.ckpt"
    converter.write({"w": np.ones((8192, 8192), np.float32)}, prefix, format="tf")
    code = ("import sys, converter; from converter import inspection\n"
            "with converter.read(sys.argv[1]) as c: print(inspection.stats(c['w']).mean)")
    base = ("import converter, numpy; from converter import inspection")
    peaks = []
    for argv in ([sys.executable, "-c", code, str(prefix)], [sys.executable, "-c", base]):
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
        if proc.stdout:
            proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        peaks.append(usage.ru_maxrss / 1024)
    assert peaks[0] - peaks[1] < 48, peaks  # MiB above importing the same modules


def test_unknown_tensor_is_one_line_with_close_matches(tf_fixtures, capsys):
    prefix = tf_fixtures["tf1_adam"]["prefix"]
    assert main(["inspect", prefix, "--tensor", "dense/kernal"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert "\n" not in err and "'dense/kernal'" in err
    assert "close matches: dense/kernel" in err


def test_tensor_globs_and_readable_names(tf_fixtures, capsys):
    prefix = tf_fixtures["tf1_adam"]["prefix"]
    assert main(["inspect", prefix, "--tensor", "dense/*", "--tensor", "global_step"]) == 0
    shown = [line.split()[1] for line in capsys.readouterr().out.splitlines()
             if line.startswith("tensor: ")]
    expected = _expected(tf_fixtures, "tf1_adam")
    assert shown == [n for n in expected if n.startswith("dense/") or n == "global_step"]
    if tf_fixtures["keras3_ckpt"]["skipped"]:
        return
    k3 = tf_fixtures["keras3_ckpt"]["prefix"]
    assert main(["inspect", k3, "--tensor", "sequential/dense/kernel", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["tensors"]
    assert row["readable"] == "sequential/dense/kernel"
    values = _expected(tf_fixtures, "keras3_ckpt")[row["name"]]
    assert row["stats"]["max"] == float(values.max()) and row["shape"] == list(values.shape)


def _nonfinite(tf_fixtures) -> list[str]:
    expected = _expected(tf_fixtures, "all_dtypes")
    wide = {n: a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)
            for n, a in expected.items() if not a.dtype.hasobject}
    return [n for n, a in wide.items() if not np.isfinite(a).all()]


def test_stats_json_and_nonfinite_summary_when_piped(tf_fixtures, capsys, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    prefix = tf_fixtures["all_dtypes"]["prefix"]
    bad = _nonfinite(tf_fixtures)
    assert len(bad) >= 5
    assert main(["inspect", prefix, "--stats"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"{len(bad)} tensors contain NaN or Inf: {', '.join(bad)}"
    assert "\033[" not in out  # capsys is no terminal
    assert main(["inspect", prefix, "--stats", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["tensors"]}
    assert [n for n, r in rows.items() if r["stats"]["nan"] or r["stats"]["inf"]] == bad
    assert rows["t_string"]["stats"]["note"] == "strings have no statistics"
    assert main(["inspect", tf_fixtures["tf1_adam"]["prefix"], "--stats"]) == 0
    assert "NaN or Inf" not in capsys.readouterr().out


def _on_terminal(argv: list[str], env: dict[str, str]) -> str:
    """stdout of ``ckpt ARGV`` run with a pseudo-terminal as its stdout."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "converter", *argv], stdout=follower,
                            stderr=subprocess.PIPE, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait() == 0, proc.stderr.read() if proc.stderr else ""
    return b"".join(chunks).decode()


def test_nonfinite_summary_in_colour_on_a_terminal_unless_no_color(tf_fixtures):
    prefix = tf_fixtures["all_dtypes"]["prefix"]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["PYTHONPATH"] = str(HERE.parent)  # this checkout's converter
    line = f"{len(_nonfinite(tf_fixtures))} tensors contain NaN or Inf"
    coloured = _on_terminal(["inspect", prefix, "--stats"], env)
    assert f"\033[1;31m{line}" in coloured
    plain = _on_terminal(["inspect", prefix, "--stats"], {**env, "NO_COLOR": "1"})
    assert line in plain and "\033[" not in plain
