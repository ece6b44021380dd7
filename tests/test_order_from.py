"""``order_from=`` / ``--order-from FILE.meta``: ``match="order"`` takes the tensors' creation
order from a ``.meta`` that is not beside the checkpoint. Checkpoints and graphs are written by
TensorFlow in the test; the ``.meta`` is moved away from its checkpoint."""

from __future__ import annotations

import shutil
import textwrap

import numpy as np
import pytest

import converter
from converter.cli import main
from converter.errors import FormatError, LoadError, UsageError
from tests.helpers import assert_same

UNITS = 4
# Created in this order; sorted by name they are decoder, encoder, head.
SCOPES = ["encoder", "decoder", "head"]
TARGET_SCOPES = ["a", "b", "c"]
MODELS = '''
import keras

def three():
    return keras.Sequential([keras.Input((4,))] + [keras.layers.Dense(4, name=f"fc{i}")
                                                   for i in range(3)], name="m")
'''


def _graph(tf, scopes):
    v1 = tf.compat.v1
    h = v1.placeholder(tf.float32, [None, UNITS])
    for scope in scopes:
        h = v1.layers.dense(h, UNITS, name=scope, bias_initializer=v1.random_normal_initializer())


@pytest.fixture(scope="module")
def moved(tf, tmp_path_factory):
    """``(checkpoint prefix without a .meta beside it, the moved .meta, a target graph's .meta
    with other scope names)``."""
    v1 = tf.compat.v1
    root = tmp_path_factory.mktemp("order_from")
    with tf.Graph().as_default():
        v1.set_random_seed(19)
        _graph(tf, SCOPES)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            prefix = v1.train.Saver().save(sess, str(root / "ckpt" / "model.ckpt"))
    graphs = root / "graphs"
    graphs.mkdir()
    meta = graphs / "training.meta"
    shutil.move(prefix + ".meta", meta)
    with tf.Graph().as_default():
        _graph(tf, TARGET_SCOPES)
        target = graphs / "serving.meta"
        v1.train.export_meta_graph(str(target))
    return prefix, meta, target


def _model():
    import keras

    return keras.Sequential([keras.Input((UNITS,))] + [keras.layers.Dense(UNITS, name=f"fc{i}")
                                                       for i in range(3)], name="m")


def _assert_in_creation_order(tf, model, prefix):
    reader = tf.train.load_checkpoint(prefix)  # TensorFlow's own reading of its file
    for layer, scope in zip(model.layers, SCOPES, strict=True):
        assert_same(np.asarray(layer.kernel), reader.get_tensor(f"{scope}/kernel"), scope)
        assert_same(np.asarray(layer.bias), reader.get_tensor(f"{scope}/bias"), scope)


def test_without_the_meta_beside_it_order_is_refused(tf, moved):
    prefix, _, _ = moved
    with pytest.raises(LoadError, match="3 checkpoint tensors fit variable 'm/fc0/kernel'"):
        converter.load_into(_model(), prefix, match="order")


def test_load_into_order_from(tf, moved):
    prefix, meta, _ = moved
    model = _model()
    report = converter.load_into(model, prefix, match="order", order_from=meta)
    assert report.ok and {p.how for p in report.pairings} == {"order+shape"}
    _assert_in_creation_order(tf, model, prefix)


def test_order_from_orders_a_sorted_format(tf, moved, tmp_path):
    # safetensors keeps keys sorted; the graph still tells the order they were created in.
    prefix, meta, _ = moved
    st = tmp_path / "model.safetensors"
    converter.convert(prefix, st)
    model = _model()
    with pytest.raises(LoadError):
        converter.load_into(_model(), st, match="order")
    converter.load_into(model, st, match="order", order_from=str(meta))
    _assert_in_creation_order(tf, model, prefix)


def test_cli_migrate_order_from(tf, moved, tmp_path, capsys):
    import keras

    prefix, meta, _ = moved
    models = tmp_path / "models.py"
    models.write_text(textwrap.dedent(MODELS))
    out = tmp_path / "out.weights.h5"
    args = ["migrate", prefix, str(out), "--model", f"{models}:three", "--match", "order", "-q"]
    assert main(args) == 2 and not out.exists()
    capsys.readouterr()
    assert main(args + ["--order-from", str(meta)]) == 0, capsys.readouterr().err
    model = keras.Sequential([keras.Input((UNITS,))] + [keras.layers.Dense(UNITS, name=f"fc{i}")
                                                        for i in range(3)], name="m")
    model.load_weights(str(out))
    _assert_in_creation_order(tf, model, prefix)


def test_plan_order_from_against_a_graph(moved, capsys):
    # The target graph's scopes a, b, c were created in that order: each takes the layer
    # created in the same place in the training graph, not the one first by name.
    prefix, meta, target = moved
    with pytest.raises(LoadError, match="nothing tells which was created first"):
        converter.plan(prefix, target, match="order")
    report = converter.plan(prefix, target, match="order", order_from=meta)
    assert report.ok
    assert {p.variable: p.tensor for p in report.pairings} == {
        f"{t}/{w}": f"{s}/{w}" for t, s in zip(TARGET_SCOPES, SCOPES, strict=True)
        for w in ("kernel", "bias")}
    code = main(["plan", prefix, "--target", str(target), "--match", "order", "--order-from",
                 str(meta), "--json"])
    assert code == 0
    assert '"encoder/kernel"' in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["missing", "garbage", "checkpoint-index", "directory"])
def test_bad_order_from_is_one_line_exit_2(moved, tmp_path, capsys, bad):
    prefix, _, target = moved
    path = tmp_path / "x.meta"
    if bad == "garbage":
        path.write_bytes(b"\xff" * 64)
    elif bad == "checkpoint-index":
        shutil.copy(prefix + ".index", path)
    elif bad == "directory":
        path.mkdir()
    with pytest.raises(FormatError, match=str(path)):
        converter.plan(prefix, target, match="order", order_from=path)
    capsys.readouterr()
    code = main(["plan", prefix, "--target", str(target), "--match", "order", "--order-from",
                 str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and str(path) in err, err


def test_order_from_without_match_order_is_refused(moved, capsys):
    prefix, meta, target = moved
    with pytest.raises(UsageError, match='order_from= gives the creation order for '
                                         'match="order"'):
        converter.plan(prefix, target, order_from=meta)
    code = main(["plan", prefix, "--target", str(target), "--order-from", str(meta)])
    err = capsys.readouterr().err
    assert code == 2 and "--order-from gives the creation order for --match order" in err
