"""``load_into`` from frozen graphs: Keras models (tf.keras and Keras 3) frozen by TensorFlow
(tests/tf_fixtures_graphs.py), loaded into the same architecture built again, every weight equal
bit for bit to the frozen model's; and the graphs that do not say which constant is which
variable are refused, never paired by a guess."""

from __future__ import annotations

import numpy as np
import pytest

import converter
from converter.errors import LoadError
from converter.loaders.report import How
from converter.rules import Rules
from tests.helpers import assert_same, tf_available

pytestmark = pytest.mark.usefixtures("fresh_tf_keras_names")


@pytest.fixture(scope="session")
def written(tmp_path_factory):
    if not tf_available():
        pytest.skip("TensorFlow is not installed (pip install 'ckpt-converter[tf]')")
    from tests.tf_fixtures_graphs import built

    return built(tmp_path_factory)


def _model(tf, case: str):
    import keras

    from tests.tf_fixtures_graphs import keras_models

    return keras_models(tf.keras, keras)[case]


def _pb(written, case: str):
    out, expected = written
    return out / "keras" / f"{case}.pb", expected[f"keras/{case}"]


def _values(model) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in model.weights]


@pytest.mark.parametrize("case", ["tfk_dense", "tfk_bn", "k3_dense", "k3_same", "k3_bn"])
def test_tf2_frozen_constants_are_named_after_their_readers(written, case):
    path, expected = _pb(written, case)
    with converter.read(path) as ckpt:
        frozen = {n: t for n, t in ckpt.items() if t.kind == "variable"}
        # Every variable's constant, under the name TensorFlow gave it: nothing renamed.
        assert sorted(frozen) == sorted(expected["truth"])
        assert all(t.attrs["named_after"] == "reader" for t in frozen.values())
        for name, variable in expected["truth"].items():
            assert_same(frozen[name].read(), expected["weights"][variable], name)


@pytest.mark.parametrize("case,labels", [
    ("tfk_dense", {"kernel": How.FROZEN_SHAPE, "bias": How.FROZEN_LAYER}),
    ("k3_dense", {"kernel": How.FROZEN_SHAPE, "bias": How.FROZEN_SHAPE})])
def test_frozen_keras_model_loads_bit_for_bit(tf, written, case, labels):
    path, expected = _pb(written, case)
    model = _model(tf, case)
    report = converter.load_into(model, path)
    assert report.ok and len(report.pairings) == len(model.weights)
    truth = {v: c for c, v in expected["truth"].items()}
    for p in report.pairings:
        assert p.tensor == truth[p.variable], p
        # tfk_dense's head bias is the only 2-wide one: its shape decides.
        wanted = How.FROZEN_SHAPE if p.variable.endswith("head/bias") else \
            labels[p.variable.rsplit("/", 1)[1]]
        assert p.how == wanted, p
    for value, (name, frozen) in zip(_values(model), expected["weights"].items(), strict=True):
        assert_same(value, frozen, name)


@pytest.mark.parametrize("flavour", ["tf.keras", "keras"])
def test_tf1_frozen_keras_model_loads_by_name(tf, written, flavour):
    import keras

    path, expected = _pb(written, "tf1")
    k = tf.keras if flavour == "tf.keras" else keras
    model = k.Sequential([k.Input((4,)), k.layers.Dense(3, name="hidden"),
                          k.layers.Dense(2, name="head")], name="net")
    report = converter.load_into(model, path)
    assert report.ok and {p.how for p in report.pairings} <= {How.NAME, How.SCOPE_SUFFIX}
    assert [p.tensor for p in report.pairings] == list(expected["weights"])
    for value, (name, frozen) in zip(_values(model), expected["weights"].items(), strict=True):
        assert_same(value, frozen, name)


def _grown(tf, case: str):
    import keras

    if case == "tfk_dense":  # a 3x3 layer more: three 3-wide biases, two 3x3 kernels
        k, widths = tf.keras, [("hidden", 3), ("mid", 3), ("extra", 3), ("head", 2)]
    else:  # a 2-wide layer after the head: two 2-wide biases
        k, widths = keras, [("hidden", 5), ("mid", 3), ("head", 2), ("extra", 2)]
    return k.Sequential([k.Input((4,))] + [k.layers.Dense(w, name=n) for n, w in widths],
                        name="net")


@pytest.mark.parametrize("case,missing", [
    ("tfk_dense", ["mid/kernel", "extra/kernel", "hidden/bias", "mid/bias", "extra/bias"]),
    ("k3_dense", ["net/head/bias", "net/extra/kernel", "net/extra/bias"])])
def test_a_model_with_an_extra_layer_is_refused_with_nothing_assigned(tf, written, case,
                                                                     missing):
    path, expected = _pb(written, case)
    grown = _grown(tf, case)
    before = _values(grown)
    with pytest.raises(LoadError, match="missing: ") as caught:
        converter.load_into(grown, path)
    report = caught.value.report
    assert sorted(report.missing) == sorted(missing)
    assert report.unexpected and not report.shape_mismatch
    for value, old in zip(_values(grown), before, strict=True):
        assert_same(value, old)  # strict: nothing assigned
    # Not strict: what the shapes decide is assigned, and only that.
    report = converter.load_into(grown, path, strict=False)
    assert sorted(report.missing) == sorted(missing) and report.pairings
    truth = {v: c for c, v in expected["truth"].items()}
    weights = {(getattr(v, "path", None) or v.name).removesuffix(":0"): v for v in grown.weights}
    for p in report.pairings:
        assert p.tensor == truth[p.variable]
        assert_same(np.asarray(weights[p.variable].numpy()),
                    expected["weights"][p.variable], p.variable)


def test_keras3_scopes_never_pair_one_layer_with_another(tf, written):
    # Keras 3 reads layer hidden's weights under the scope hidden_1, and hidden_1's under
    # hidden_1_2: by their scopes, hidden_1 would take hidden's weights.
    path, expected = _pb(written, "k3_same")
    assert "net_1/hidden_1/Cast/ReadVariableOp/resource" in expected["truth"]
    model = _model(tf, "k3_same")
    before = _values(model)
    with pytest.raises(LoadError, match="missing: "):
        converter.load_into(model, path)
    report = converter.load_into(model, path, strict=False)
    assert not report.pairings and len(report.missing) == 4
    for value, old in zip(_values(model), before, strict=True):
        assert_same(value, old)
    with pytest.raises(LoadError, match="frozen graph.*no creation order"):
        converter.load_into(model, path, match="order")


@pytest.mark.parametrize("case", ["tfk_bn", "k3_bn"])
def test_batch_norm_of_a_frozen_graph_is_refused_not_guessed(tf, written, case):
    # Four 3-wide vectors in one layer, read in another order than they were created in
    # (tf.keras: variance, gamma, mean, beta; their nodes: variance, gamma, beta, mean; Keras 3
    # numbers its reads Cast to Cast_3: mean, variance, gamma, beta): taking either order for
    # the creation order gave every one of the four another's values.
    path, expected = _pb(written, case)
    model = _model(tf, case)
    before = _values(model)
    for strict in (True, False):
        with pytest.raises(LoadError, match="frozen graph.*no creation order.*rename"):
            converter.load_into(model, path, match="order", strict=strict)
    for value, old in zip(_values(model), before, strict=True):
        assert_same(value, old)
    report = converter.load_into(model, path, strict=False)
    # The kernels and the one 2-wide bias; the five 3-wide vectors stay missing.
    assert [p.variable.split("/", 1)[-1] if case == "k3_bn" else p.variable
            for p in report.pairings] == ["hidden/kernel", "head/kernel", "head/bias"]
    assert sorted(m.rsplit("/", 1)[1] for m in report.missing) == \
        ["beta", "bias", "gamma", "moving_mean", "moving_variance"]
    # Rename rules that say which constant is which load it.
    truth = expected["truth"]
    rules = Rules().map({c: v for c, v in truth.items()})
    report = converter.load_into(model, path, rules=rules)
    assert report.ok and {p.how for p in report.pairings} == {How.NAME}
    for value, (name, frozen) in zip(_values(model), expected["weights"].items(), strict=True):
        assert_same(value, frozen, name)
