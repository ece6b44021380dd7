"""scripts/bench_fixtures.py: the bundles the benchmark measures, the same whichever writer
makes them (TensorFlow's SaveV2 or converter's)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from math import prod
from pathlib import Path

import pytest

import converter
from tests.helpers import assert_same, assert_same_checkpoint

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_fixtures.py"


@pytest.fixture(scope="module")
def fixtures():
    spec = importlib.util.spec_from_file_location("bench_fixtures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind, tensors, mib", [("many", 20000, 78.125), ("big", 16, 1408.17),
                                                ("bert", 598, 1252.92), ("quick", 201, 2.78)])
def test_kinds_hold_what_the_benchmark_says(fixtures, kind, tensors, mib):
    entries = fixtures.layout(kind)
    names = [name for entry in entries for name in entry.names]
    nbytes = sum(prod(e.shape) * 4 * len(e.names) if e.dtype == "float32" else 8 * len(e.names)
                 for e in entries)
    assert len(names) == len(set(names)) == tensors
    assert nbytes / 2**20 == pytest.approx(mib, abs=0.01)


def test_bert_keeps_adam_slots_and_a_step(fixtures):
    names = [name for entry in fixtures.layout("bert") for name in entry.names]
    assert "bert/encoder/layer_11/output/dense/kernel/adam_v" in names
    assert names[-1] == "global_step"


def test_tensorflow_and_converter_write_the_same_bundle(tf, fixtures, tmp_path):
    for writer in ("tf", "converter"):
        subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / writer / "model.ckpt"),
                        "quick", "--writer", writer], check=True, stdout=subprocess.DEVNULL)
    expected = dict(fixtures.tensors("quick"))
    with converter.read(tmp_path / "tf" / "model.ckpt") as by_tf, \
            converter.read(tmp_path / "converter" / "model.ckpt") as ours:
        assert_same_checkpoint(by_tf, expected, ordered=False)
        assert_same_checkpoint(ours, expected, ordered=False)
    reader = tf.train.load_checkpoint(str(tmp_path / "converter" / "model.ckpt"))
    for name, array in expected.items():
        assert_same(reader.get_tensor(name), array, name)
