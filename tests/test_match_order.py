"""``match="order"`` / ``--match order`` pairs in creation order, never in a bundle's sorted key
order: numbered scopes in natural order, a ``.meta``'s variable order, and an error listing the
candidates when nothing orders them. Checkpoints are written by TensorFlow in the test."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

import converter
from converter.cli import main
from converter.errors import LoadError
from tests.helpers import assert_same

UNITS = 4
MODELS = '''
import keras

def eleven():
    return keras.Sequential([keras.Input((4,))] + [keras.layers.Dense(4, name=f"fc{i}")
                                                   for i in range(11)], name="eleven")
'''


def _dense_graph(tf, scopes, *, auto: bool = False):
    v1 = tf.compat.v1
    h = v1.placeholder(tf.float32, [None, UNITS])
    for scope in scopes:
        h = v1.layers.dense(h, UNITS, name=None if auto else scope,
                            bias_initializer=v1.random_normal_initializer())


@pytest.fixture(scope="module")
def written(tf, tmp_path_factory):
    """TF1 checkpoints of same-shape dense layers: ``{case: (prefix, creation order of the
    layers)}``."""
    v1 = tf.compat.v1
    root = tmp_path_factory.mktemp("order")
    cases = {
        "numbered": ([f"layer{i}" for i in range(1, 12)], False, False),
        "auto": ([f"dense{'_' + str(i) if i else ''}" for i in range(11)], True, False),
        "named": (["encoder", "decoder", "head"], False, True),
    }
    out = {}
    for case, (scopes, auto, meta) in cases.items():
        with tf.Graph().as_default():
            v1.set_random_seed(5)
            _dense_graph(tf, scopes, auto=auto)
            with v1.Session() as sess:
                sess.run(v1.global_variables_initializer())
                prefix = v1.train.Saver().save(sess, str(root / case / "model.ckpt"),
                                               write_meta_graph=meta)
        out[case] = (prefix, scopes)
    bare = root / "named-no-meta"
    bare.mkdir()
    for f in (root / "named").glob("model.ckpt.*"):
        if not f.name.endswith(".meta"):
            shutil.copy(f, bare / f.name)
    out["named-no-meta"] = (str(bare / "model.ckpt"), cases["named"][0])
    return out


def _model(n: int):
    import keras

    return keras.Sequential([keras.Input((UNITS,))] + [keras.layers.Dense(UNITS, name=f"fc{i}")
                                                       for i in range(n)], name="m")


def _assert_layers_in_order(tf, model, prefix, scopes):
    reader = tf.train.load_checkpoint(prefix)  # TensorFlow's own reading of its file
    for layer, scope in zip(model.layers, scopes, strict=True):
        assert_same(np.asarray(layer.kernel), reader.get_tensor(f"{scope}/kernel"), scope)
        assert_same(np.asarray(layer.bias), reader.get_tensor(f"{scope}/bias"), scope)


@pytest.mark.parametrize("case", ["numbered", "auto", "named"])
def test_order_follows_creation_order(tf, written, case):
    prefix, scopes = written[case]
    model = _model(len(scopes))
    report = converter.load_into(model, prefix, match="order")
    assert report.ok and {p.how for p in report.pairings} == {"order+shape"}
    _assert_layers_in_order(tf, model, prefix, scopes)


def test_unordered_names_are_refused_listing_candidates(tf, written):
    prefix, _ = written["named-no-meta"]
    with pytest.raises(LoadError, match=r'match="order": 3 checkpoint tensors fit variable '
                       r"'m/fc0/kernel'.*decoder/kernel \[4, 4\], encoder/kernel \[4, 4\], "
                       r"head/kernel \[4, 4\]"):
        converter.load_into(_model(3), prefix, match="order")


def test_cli_match_order_numbered_scopes(tf, written, tmp_path, capsys):
    import keras

    prefix, scopes = written["numbered"]
    models = tmp_path / "models.py"
    models.write_text(textwrap.dedent(MODELS))
    out = tmp_path / "out.weights.h5"
    code = main(["migrate", prefix, str(out), "--model", f"{models}:eleven", "--match", "order",
                 "-q"])
    assert code == 0, capsys.readouterr().err
    model = keras.Sequential([keras.Input((UNITS,))] + [keras.layers.Dense(UNITS, name=f"fc{i}")
                                                        for i in range(11)], name="eleven")
    model.load_weights(str(out))
    _assert_layers_in_order(tf, model, prefix, scopes)


def test_cli_ambiguous_order_names_the_flag(tf, written, tmp_path, capsys):
    prefix, _ = written["named-no-meta"]
    models = tmp_path / "models.py"
    models.write_text(textwrap.dedent(MODELS))
    code = main(["migrate", prefix, str(tmp_path / "o.weights.h5"), "--model",
                 f"{models}:eleven", "--match", "order"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--match order: 3 checkpoint tensors fit" in err and "--rename" in err
    assert not list(tmp_path.glob("o.*"))


def test_meta_variables_in_creation_order(written):
    from converter.loaders.order import meta_variables

    prefix, scopes = written["named"]
    assert meta_variables(Path(prefix + ".meta")) == [
        f"{s}/{w}" for s in scopes for w in ("kernel", "bias")]
    assert meta_variables(Path(prefix + ".missing")) is None


def test_natural_key():
    from converter.tfnames import natural_key

    names = ["dense_10", "dense_2", "dense", "dense_1", "layer10", "layer2", "layer1"]
    assert sorted(names, key=natural_key) == ["dense", "dense_1", "dense_2", "dense_10",
                                              "layer1", "layer2", "layer10"]
    assert sorted(["a/kernel", "a_1/kernel", "a/bias"], key=natural_key) == [
        "a/bias", "a/kernel", "a_1/kernel"]


def test_source_order_of_a_dict_is_kept():
    # A dict (like npz members or a Keras 2 .h5 layer list) keeps the order it was made in.
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="a"),
                              keras.layers.Dense(2, name="b")], name="m")
    first, second = np.ones((2, 2), np.float32), np.full((2, 2), 2, np.float32)
    bias = np.zeros(2, np.float32)
    source = {"zeta/w": first, "zeta/b": bias, "alpha/w": second, "alpha/b": bias}
    converter.load_into(model, source, match="order")
    assert_same(np.asarray(model.layers[0].kernel), first)
    assert_same(np.asarray(model.layers[1].kernel), second)


def test_sorted_bundle_without_order_is_refused(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.BatchNormalization(name="bn")],
                             name="m")
    values = {f"norm/{w}": np.full(2, i, np.float32) for i, w in
              enumerate(("gamma", "beta", "moving_mean", "moving_variance"))}
    converter.write(values, tmp_path / "bn.ckpt", format="tf")
    with pytest.raises(LoadError, match="4 checkpoint tensors fit variable .m/bn/gamma.*"
                       "norm/beta") as info:
        converter.load_into(model, tmp_path / "bn.ckpt", match="order")
    assert info.value.report is None
