"""The weights Keras 3 refuses (tf.keras TF-format checkpoints, SavedModels, Keras 2
``.h5``), migrated into Keras 3 models and checked by what Keras itself loads and predicts.

Every source is written by tf-keras in the test; one builder per model makes the tf-keras source
and the Keras 3 target from the same code, so the layers' auto names differ between the two
(both count per process) exactly as they do for users.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import converter
from converter.cli import main
from converter.errors import LoadError
from tests.helpers import assert_same

# tf.keras auto names count per process: reset them for the modules that run after this one.
pytestmark = pytest.mark.usefixtures("fresh_tf_keras_names")

MODELS = '''
import keras

def dense_bn(L=keras):
    return L.Sequential([L.Input((6,)), L.layers.Dense(5, activation="relu"),
                         L.layers.BatchNormalization(), L.layers.Dense(3)])

def conv(L=keras):
    return L.Sequential([L.Input((8, 8, 2)), L.layers.Conv2D(4, 3, activation="relu"),
                         L.layers.MaxPooling2D(), L.layers.Conv2D(3, 2, padding="same"),
                         L.layers.GlobalAveragePooling2D(), L.layers.Dense(2)])

def lstm(L=keras):
    return L.Sequential([L.Input((5, 3)), L.layers.LSTM(4, return_sequences=True),
                         L.layers.LSTM(2)])

def nested(L=keras, names=("dense_a", "dense_b", "shared", "head")):
    inner = L.Sequential([L.layers.Dense(4, activation="tanh", name=names[0]),
                          L.layers.Dense(4, name=names[1])], name=names[0] + "_block")
    x = L.Input((4,))
    shared = L.layers.Dense(4, activation="relu", name=names[2])
    h = shared(shared(x))            # a shared layer, called twice
    h = inner(h)                     # a nested model
    return L.Model(x, L.layers.Dense(2, name=names[3])(h))

def unbuilt():
    return keras.Sequential([keras.layers.Dense(2)])

def narrow():  # dense_bn with 4 units where it has 5
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="relu"),
                             keras.layers.BatchNormalization(), keras.layers.Dense(3)])

def broken():
    raise RuntimeError("cannot build today")
'''
INPUTS = {"dense_bn": (6,), "conv": (8, 8, 2), "lstm": (5, 3), "nested": (4,)}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    path = tmp_path_factory.mktemp("migrate_models") / "migrate_models.py"
    path.write_text(textwrap.dedent(MODELS))
    spec = importlib.util.spec_from_file_location("migrate_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.path = path
    return module


def _randomize(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for w in model.weights:  # away from initial values; variances stay positive
        values = rng.uniform(0.5, 1.5, w.shape) if "variance" in w.name else \
            rng.normal(0, 0.5, w.shape)
        w.assign(values.astype(np.float32))


@pytest.fixture(scope="module")
def sources(tf, models, tmp_path_factory):
    """Each tf-keras model saved with ``save_weights`` (TF format) and as a SavedModel, with
    its weights and its predictions on a fixed batch."""
    root = tmp_path_factory.mktemp("migrate_sources")
    out = {}
    for i, name in enumerate(INPUTS):
        model = getattr(models, name)(tf.keras)
        _randomize(model, i)
        x = np.random.default_rng(10 + i).standard_normal((3, *INPUTS[name])).astype(np.float32)
        model.save_weights(str(root / name / "ckpt"))
        model.save(str(root / f"{name}_savedmodel"), include_optimizer=False)
        out[name] = {"tf": root / name / "ckpt", "savedmodel": root / f"{name}_savedmodel",
                     "x": x, "want": model(x, training=False).numpy(),
                     "weights": [w.numpy() for w in model.weights], "model": model}
    return out


@pytest.mark.parametrize("layout", ["tf", "savedmodel"])
@pytest.mark.parametrize("name", list(INPUTS))
def test_tf_keras_into_keras3(tf, models, sources, tmp_path, capsys, name, layout):
    src = sources[name]
    out = tmp_path / "out.weights.h5"
    code = main(["migrate", str(src[layout]), str(out), "--model", f"{models.path}:{name}",
                 "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"], report
    assert {p["how"] for p in report["pairings"]} <= {"object graph", "layer structure"}
    again = getattr(models, name)()
    again.load_weights(str(out))  # Keras 3 itself reads what was written
    for got, want in zip(again.weights, src["weights"], strict=True):
        assert_same(np.asarray(got), want, got.path)
    np.testing.assert_allclose(np.asarray(again(src["x"], training=False)), src["want"],
                               rtol=1e-6, atol=1e-6)


def test_renamed_nested_and_shared_layers_paired_by_structure(tf, models, sources):
    src = sources["nested"]
    target = models.nested(names=("enc", "dec", "stem", "out"))  # no name in common
    report = converter.load_into(target, src["tf"])
    assert report.ok and len(report.pairings) == 8
    assert {p.how for p in report.pairings} == {"layer structure"}
    table = report.table()
    assert "stem/kernel" in table and "layer_with_weights-0/kernel" in table
    assert "enc_block/enc/kernel" in table
    for got, want in zip(target.weights, src["weights"], strict=True):
        assert_same(np.asarray(got), want, got.path)
    np.testing.assert_allclose(np.asarray(target(src["x"])), src["want"], rtol=1e-6, atol=1e-6)


def test_structure_reports_what_does_not_fit(tf, models, sources):
    model = models.narrow()
    before = [np.asarray(v).copy() for v in model.weights]
    report = converter.load_into(model, sources["dense_bn"]["tf"], strict=False)
    assert [p.variable for p in report.pairings] == [model.weights[-1].path]  # the last bias
    assert len(report.shape_mismatch) == 7 and not report.missing and not report.unexpected
    kernel = report.shape_mismatch[0]
    assert kernel.variable_shape == [6, 4] and kernel.tensor_shape == [6, 5]
    assert kernel.tensor == "layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    for v, old in zip(model.weights[:-1], before, strict=False):  # misfits are not assigned
        assert_same(np.asarray(v), old)


def test_tf_module_savedmodel_after_rules(tf, tmp_path):
    import keras

    class Affine(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.arange(6, dtype=np.float32).reshape(3, 2) / 7, name="w")
            self.b = tf.Variable(np.array([0.5, -1.0], np.float32), name="b")

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def __call__(self, x):
            return x @ self.w + self.b

    module = Affine()
    tf.saved_model.save(module, str(tmp_path / "module"))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="affine")])
    report = converter.load_into(model, tmp_path / "module", rules=converter.rules.Rules().map(
        {"w/.ATTRIBUTES/VARIABLE_VALUE": "affine/kernel",
         "b/.ATTRIBUTES/VARIABLE_VALUE": "affine/bias"}))
    assert report.ok and {p.how for p in report.pairings} == {"name"}
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(np.asarray(model(x)), module(x).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("full_model", [False, True], ids=["weights", "full-model"])
def test_keras2_h5_with_other_names_by_order(tf, models, sources, tmp_path, capsys, full_model):
    src = sources["dense_bn"]
    path = tmp_path / "old.h5"
    if full_model:
        src["model"].save(str(path))
    else:
        src["model"].save_weights(str(path))
    import keras

    target = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="relu",
                                                                     name="first"),
                               keras.layers.BatchNormalization(name="norm"),
                               keras.layers.Dense(3, name="last")], name="renamed")
    out = tmp_path / "new.weights.h5"
    report = converter.migrate(path, target, out, match="order")
    assert report.ok and {p.how for p in report.pairings} == {"order+shape"}
    table = report.table()
    for p in report.pairings:  # each pairing is shown
        assert p.variable in table and p.tensor in table
    fresh = models.dense_bn()
    fresh.load_weights(str(out))
    np.testing.assert_allclose(np.asarray(fresh(src["x"], training=False)), src["want"],
                               rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def keras3_files(tf, models, tmp_path_factory):
    """A Keras 3 model (named layers) saved as .keras and .weights.h5."""
    import keras

    root = tmp_path_factory.mktemp("keras3")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="enc"),
                              keras.layers.LayerNormalization(name="norm"),
                              keras.layers.Dense(2, name="dec")], name="ae")
    _randomize(model, 7)
    model.save(root / "ae.keras")
    model.save_weights(root / "ae.weights.h5")
    return {"keras": root / "ae.keras", "weights.h5": root / "ae.weights.h5",
            "weights": {v.path.split("/", 1)[1]: np.asarray(v) for v in model.weights}}


def test_read_keras_archive_without_keras(keras3_files, tmp_path, capsys):
    with converter.read(keras3_files["keras"]) as ckpt:
        assert ckpt.source.format == "keras" and ckpt.source.facts["model_name"] == "ae"
        assert list(ckpt) == ["enc/kernel", "enc/bias", "norm/gamma", "norm/beta",
                              "dec/kernel", "dec/bias"]
        for name, want in keras3_files["weights"].items():
            assert_same(ckpt[name].read(), want, name)
    assert main(["inspect", str(keras3_files["keras"])]) == 0
    assert "norm/gamma" in capsys.readouterr().out
    probe = ("import sys, converter; c = converter.read(sys.argv[1]); list(c); c.close(); "
             "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", probe, str(keras3_files["keras"])], check=True)


@pytest.mark.parametrize("layout", ["keras", "weights.h5"])
def test_keras3_file_into_a_changed_model(tf, keras3_files, layout):
    import keras

    grown = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="enc"),
                              keras.layers.Dense(5, name="extra"),
                              keras.layers.LayerNormalization(name="norm"),
                              keras.layers.Dense(2, name="dec")], name="grown")
    report = converter.load_into(grown, keras3_files[layout], strict=False)
    assert report.missing == ["grown/extra/kernel", "grown/extra/bias"]
    assert not report.unexpected and not report.shape_mismatch
    assert {p.how for p in report.pairings} == {"name"}
    for v in grown.weights:
        short = v.path.split("/", 1)[1]
        if not short.startswith("extra"):
            assert_same(np.asarray(v), keras3_files["weights"][short], v.path)


def test_model_from_keras_file(tf, models, sources, keras3_files, tmp_path, capsys):
    import keras

    arch = tmp_path / "arch.keras"
    models.dense_bn().save(arch)
    out = tmp_path / "out.keras"
    code = main(["migrate", str(sources["dense_bn"]["savedmodel"]), str(out), "--model",
                 str(arch), "-q"])
    assert code == 0, capsys.readouterr().err
    model = keras.saving.load_model(out)
    np.testing.assert_allclose(np.asarray(model(sources["dense_bn"]["x"], training=False)),
                               sources["dense_bn"]["want"], rtol=1e-6, atol=1e-6)


def _fails(capsys, argv: list[str], *needles: str) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and err.startswith("ckpt: error: "), err
    for needle in needles:
        assert needle in err, err
    return err


def test_clean_errors_and_nothing_written(tf, models, sources, tmp_path, capsys):
    out = tmp_path / "out.weights.h5"
    src = str(sources["dense_bn"]["tf"])
    model = f"{models.path}:narrow"
    _fails(capsys, ["migrate", src, str(out), "--model", model], "shape mismatch", "[6, 4]",
           "[6, 5]")
    _fails(capsys, ["migrate", src, str(out), "--model", f"{models.path}:unbuilt"],
           "not built")
    _fails(capsys, ["migrate", src, str(out), "--model", f"{models.path}:broken"],
           "broken() failed", "cannot build today")
    bad = tmp_path / "bad_models.py"
    bad.write_text("import no_such_module_for_ckpt\n")
    _fails(capsys, ["migrate", src, str(out), "--model", f"{bad}:build"], "cannot import",
           "no_such_module_for_ckpt")
    _fails(capsys, ["migrate", src, str(out), "--model", "no_such_pkg_ckpt.models:build"],
           "cannot import")
    _fails(capsys, ["migrate", src, str(out), "--model", f"{models.path}:dense_bn",
                    "--with-optimizer"], ".keras")
    _fails(capsys, ["migrate", src, str(out), "--model", str(tmp_path / "none.keras")],
           "no such file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_models.py"]


def test_ambiguous_pairing_lists_candidates(tf):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="dense")], name="m")
    ckpt = {"a/dense/kernel": np.zeros((2, 2), np.float32),
            "b/dense/kernel": np.ones((2, 2), np.float32), "dense/bias": np.zeros(2, np.float32)}
    with pytest.raises(LoadError, match="a/dense/kernel, b/dense/kernel"):
        converter.load_into(model, ckpt)


def test_only_candidate_left_is_paired_by_shape(tf):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")], name="m")
    ckpt = {"d/kernel": np.ones((3, 2), np.float32), "old_bias": np.full(2, 3, np.float32)}
    report = converter.load_into(model, ckpt)
    assert [p.how for p in report.pairings] == ["name", "shape (only candidate)"]
    assert_same(np.asarray(model.weights[1]), ckpt["old_bias"])


def test_savedmodel_metrics_are_ignored(tf, models, tmp_path):
    src = models.dense_bn(tf.keras)
    src.compile("sgd", "mse", metrics=["mae"])
    src.fit(np.ones((4, 6), np.float32), np.ones((4, 3), np.float32), verbose=0)
    src.save(str(tmp_path / "sm"))
    report = converter.load_into(models.dense_bn(), tmp_path / "sm")
    assert report.ok
    assert any("keras_api/metrics" in name for name in report.ignored)
