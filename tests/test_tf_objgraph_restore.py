"""TF2 checkpoints whose object graph we rebuild, restored by tf.train.Checkpoint itself."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import converter
from converter import inspection
from converter.errors import ConverterWarning
from converter.rules import Rules
from converter.tfnames import escape_local_name, readable_names, unescape_local_name
from tests.helpers import assert_same

GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"
A = "/.ATTRIBUTES/VARIABLE_VALUE"
KERAS3_WEIGHT = "optimizer/_trainable_variables/{}" + A


def _entry(tf_fixtures: dict, name: str) -> tuple[str, dict[str, np.ndarray]]:
    entry = tf_fixtures[name]
    if entry.get("skipped"):
        pytest.skip(entry["notes"])
    with open(entry["expected"], "rb") as f:
        return entry["prefix"], pickle.load(f)


@pytest.mark.parametrize("name", ["layer0/kernel", "a.b", "x..S/y", "..", ".S", "", "S.", "a.Sb"])
def test_escaping_round_trips(name):
    assert unescape_local_name(escape_local_name(name)) == name


def test_readable_names_are_unescaped_unless_two_would_clash():
    entries = [(k, k, {}) for k in (f"m/layer0.Skernel{A}", f"m/a..b{A}", f"m/x/y{A}",
                                    f"m/x.Sy{A}")]
    assert readable_names(entries) == ["m/layer0/kernel", "m/a.b", "m/x/y", "m/x.Sy"]


def _rebuilt(tf_fixtures, tmp_path, via_safetensors: bool):
    src, want = _entry(tf_fixtures, "tf2_escaped_names")
    dst = tmp_path / "out" / "model.ckpt"
    if via_safetensors:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConverterWarning)  # safetensors drops the graph
            converter.convert(src, tmp_path / "m.safetensors").close()
        converter.convert(tmp_path / "m.safetensors", dst, to="tf").close()
    else:
        converter.convert(src, dst, rules=Rules().exclude(GRAPH)).close()
    return dst, want


@pytest.mark.parametrize("via_safetensors", [False, True])
def test_names_with_slash_and_dot_restore_from_a_rebuilt_graph(tf, tf_fixtures, tmp_path,
                                                               via_safetensors):
    from tests.tf_fixtures import EscapedNames

    dst, want = _rebuilt(tf_fixtures, tmp_path, via_safetensors)
    module = EscapedNames(zeros=True)
    tf.train.Checkpoint(m=module).restore(str(dst)).assert_existing_objects_matched()
    assert_same(module.w.numpy(), want[f"m/w{A}"], "w")
    for name, variable in module.v.items():
        key = f"m/v/{escape_local_name(name)}{A}"
        assert_same(variable.numpy(), want[key], key)


def test_inspect_names_escaped_objects_as_tensorflow_does(tf_fixtures):
    src, _ = _entry(tf_fixtures, "tf2_escaped_names")
    with converter.read(src) as ckpt:
        names = inspection.readable_names(ckpt)
    assert names[f"m/v/layer0.Skernel{A}"] == "m/v/layer0/kernel"
    assert names[f"m/v/a..b{A}"] == "m/v/a.b"
    assert names[f"m/v/x....S.Sy{A}"] == "m/v/x..S/y"


def _keras3_model():
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(99)  # other weights than the fixture's
    return keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(8),
                             keras.layers.Dense(2)])


def test_keras3_weights_without_optimizer_restore_into_the_model(tf, tf_fixtures, tmp_path):
    src, want = _entry(tf_fixtures, "keras3_ckpt")
    dst = tmp_path / "out" / "model.ckpt"
    converter.convert(src, dst, rules=Rules().preset("drop-optimizer")).close()
    model = _keras3_model()
    # read, not restore: the fixture was written without a save counter to match.
    tf.train.Checkpoint(model=model).read(str(dst)).assert_existing_objects_matched()
    assert len(model.weights) == 4
    for i, weight in enumerate(model.trainable_weights):
        assert_same(np.asarray(weight), want[KERAS3_WEIGHT.format(i)], weight.path)


def test_keras3_weights_whose_model_paths_were_lost_are_warned_about(tf_fixtures, tmp_path):
    src, _ = _entry(tf_fixtures, "keras3_ckpt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConverterWarning)
        converter.convert(src, tmp_path / "m.safetensors",
                          rules=Rules().preset("drop-optimizer")).close()
    with pytest.warns(ConverterWarning, match=r"4 weights are keyed only as "
                      r"optimizer/_trainable_variables/N .*will not restore them"):
        converter.convert(tmp_path / "m.safetensors", tmp_path / "out" / "model.ckpt",
                          to="tf").close()
