"""Pairings the names alone get wrong, and load failures that say what would fix them: auto
names shifted by a new layer (paired by shape instead), Keras <= 2.2 recurrent weights kept on
the layer, slim ``weights``/``biases`` names; messages spelled for Python or the command line;
``LoadError.report``."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

import converter
from converter.cli import main
from converter.errors import LoadError, UsageError
from tests.helpers import assert_same


def test_model_that_grew_a_layer_pairs_shifted_auto_names_by_shape(tf, tmp_path):
    import keras

    v1 = tf.compat.v1
    with tf.Graph().as_default():  # TF1 auto names: dense, dense_1, dense_2
        h = v1.placeholder(tf.float32, [None, 4])
        for units in (8, 8, 3):
            h = v1.layers.dense(h, units, bias_initializer=v1.random_normal_initializer())
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            prefix = v1.train.Saver().save(sess, str(tmp_path / "old"), write_meta_graph=False)
    old = tf.train.load_checkpoint(prefix)
    # The new model inserted a layer before the output: the old dense_2 is now dense_3.
    model = keras.Sequential([keras.Input((4,))] + [
        keras.layers.Dense(n, name=name) for n, name in
        ((8, "dense"), (8, "dense_1"), (8, "dense_2"), (3, "dense_3"))], name="grown")
    with pytest.raises(LoadError, match="missing: grown/dense_2/kernel, grown/dense_2/bias$|"
                       r"missing: grown/dense_2/kernel, grown/dense_2/bias \("):
        converter.load_into(model, prefix)
    report = converter.load_into(model, prefix, strict=False)
    how = {p.variable: (p.tensor, p.how) for p in report.pairings}
    assert how["grown/dense_3/kernel"] == ("dense_2/kernel", "shape (names misfit)")
    assert how["grown/dense_3/bias"] == ("dense_2/bias", "shape (names misfit)")
    assert how["grown/dense_1/kernel"] == ("dense_1/kernel", "name")
    assert report.missing == ["grown/dense_2/kernel", "grown/dense_2/bias"]
    assert not report.shape_mismatch and not report.unexpected
    assert_same(np.asarray(model.layers[3].kernel), old.get_tensor("dense_2/kernel"))
    assert_same(np.asarray(model.layers[3].bias), old.get_tensor("dense_2/bias"))


def test_misfit_without_a_unique_alternative_stays_a_misfit(tf):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")], name="m")
    weights = {"d/kernel": np.ones((4, 2), np.float32), "d/bias": np.zeros(2, np.float32)}
    report = converter.load_into(model, weights, strict=False)
    assert [m.variable for m in report.shape_mismatch] == ["m/d/kernel"]


def _keras22_h5(path, layers: dict[str, dict[str, np.ndarray]]) -> None:
    """A weights file laid out as Keras <= 2.2's ``save_weights`` wrote it: recurrent weights
    on the layer (``lstm_1/kernel:0``), no cell scope."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer, weights in layers.items():
            g = f.create_group(layer)
            g.attrs["weight_names"] = [f"{layer}/{w}:0".encode() for w in weights]
            for w, value in weights.items():
                g.create_dataset(f"{layer}/{w}:0", data=value)


def test_keras22_rnn_names_pair_with_keras3_cells(tf, tmp_path):
    import keras

    model = keras.Sequential([
        keras.Input((5, 3)),
        keras.layers.LSTM(2, return_sequences=True, name="lstm_1"),
        keras.layers.GRU(2, return_sequences=True, reset_after=False, name="gru_1"),
        keras.layers.SimpleRNN(2, name="simple_rnn_1"),
        keras.layers.Dense(1, name="dense_1")], name="seq")
    rng = np.random.default_rng(0)
    layers: dict[str, dict[str, np.ndarray]] = {}
    for v in model.weights:
        layer, weight = v.path.split("/")[1], v.path.split("/")[-1]
        layers.setdefault(layer, {})[weight] = rng.standard_normal(v.shape).astype(np.float32)
    _keras22_h5(tmp_path / "old.h5", layers)
    report = converter.load_into(model, tmp_path / "old.h5")  # strict
    assert report.ok and {p.how for p in report.pairings} == {"name"}
    assert len(report.pairings) == 11
    for v in model.weights:
        layer, weight = v.path.split("/")[1], v.path.split("/")[-1]
        assert_same(np.asarray(v), layers[layer][weight], v.path)


SLIM = {"hidden/weights": np.ones((3, 2), np.float32), "hidden/biases": np.zeros(2, np.float32)}


def _slim_model():
    import keras

    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="hidden")], name="m")


def test_python_failure_suggests_keras_names_in_python(tf):
    with pytest.raises(LoadError) as info:
        converter.load_into(_slim_model(), SLIM)
    message = str(info.value)
    assert 'rules=Rules().preset("keras-names")' in message and "strict=False" in message
    assert "--" not in message
    assert info.value.report.missing == ["m/hidden/kernel", "m/hidden/bias"]
    assert info.value.report.unexpected == ["hidden/weights", "hidden/biases"]
    from converter.rules import Rules

    report = converter.load_into(_slim_model(), SLIM, rules=Rules().preset("keras-names"))
    assert report.ok  # what the message suggests works


def test_cli_failure_suggests_flags(tf, tmp_path, capsys):
    converter.write(SLIM, tmp_path / "slim.npz")
    (tmp_path / "models.py").write_text(textwrap.dedent('''
        import keras

        def build():
            return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="hidden")])
    '''))
    args = ["migrate", str(tmp_path / "slim.npz"), str(tmp_path / "out.weights.h5"),
            "--model", f"{tmp_path / 'models.py'}:build"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--preset keras-names" in err and "--no-strict" in err and err.count("\n") == 1
    assert "strict=False" not in err and "Rules()" not in err
    assert main(args + ["--preset", "keras-names", "-q"]) == 0
    assert main(args + ["--preset", "keras-names", "-q"]) == 2
    err = capsys.readouterr().err
    assert "already exists (use --force to overwrite)" in err


def test_python_existing_output_names_force_keyword(tmp_path):
    converter.write(SLIM, tmp_path / "w.npz")
    with pytest.raises(UsageError, match=r"use force=True to overwrite"):
        converter.write(SLIM, tmp_path / "w.npz")


def test_with_optimizer_spelled_for_each_caller(tmp_path, capsys):
    with pytest.raises(UsageError, match=r"with_optimizer=True writes the optimizer state"):
        converter.migrate(SLIM, lambda: None, tmp_path / "x.weights.h5", with_optimizer=True)
    (tmp_path / "models.py").write_text("def build():\n    return None\n")
    code = main(["migrate", "in.npz", str(tmp_path / "x.weights.h5"), "--model",
                 f"{tmp_path / 'models.py'}:build", "--with-optimizer"])
    err = capsys.readouterr().err
    assert code == 2 and "--with-optimizer writes the optimizer state" in err
    assert "with_optimizer=True" not in err


def test_misfit_repaired_by_shape_frees_the_tensor_it_gave_up(tf):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")], name="m")
    weights = {"d/kernel": np.ones((4, 2), np.float32), "d/bias": np.zeros(2, np.float32),
               "x/w": np.full((3, 2), 5, np.float32)}
    report = converter.load_into(model, weights, strict=False)
    assert ("m/d/kernel", "x/w", "shape (names misfit)") in {
        (p.variable, p.tensor, p.how) for p in report.pairings}
    assert report.unexpected == ["d/kernel"] and not report.shape_mismatch
    assert_same(np.asarray(model.layers[0].kernel), weights["x/w"])
