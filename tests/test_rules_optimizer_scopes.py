"""Optimizer state that Keras optimizers keep under a scope named for the optimizer class
(``training/Adam/...`` in Estimator checkpoints, ``Adam/...`` and ``iteration`` in Keras 2
``.h5`` files) is kind ``slot``/``counter``, so ``drop-optimizer`` drops it; files written by
TensorFlow and tf-keras."""

from __future__ import annotations

import numpy as np
import pytest

import converter
from converter.cli import main
from converter.kinds import tf1_kind
from converter.rules import Rules
from tests.helpers import assert_same

MODEL = ["dnn/hiddenlayer_0/bias", "dnn/hiddenlayer_0/kernel"]


@pytest.mark.parametrize("optimizer", ["Adagrad", "Ftrl", "Adam", "RMSprop", "SGD"])
def test_drop_optimizer_keeps_only_the_model_of_an_estimator_checkpoint(
        tf, optimizer_fixtures, optimizer):
    entry = optimizer_fixtures["estimator"][optimizer]
    assert any(n.startswith(f"training/{optimizer}/") for n in entry["names"])
    reader = tf.train.load_checkpoint(entry["prefix"])
    with converter.read(entry["prefix"]) as ckpt:
        assert sorted(ckpt) == sorted(entry["names"])
        kinds = {n: t.kind for n, t in ckpt.items()}
        out = Rules().preset("drop-optimizer").apply(ckpt)
        assert sorted(out) == MODEL
        for name in MODEL:
            assert_same(out[name].read(), reader.get_tensor(name), name)
    assert kinds[f"training/{optimizer}/iter"] == "counter"
    assert kinds["global_step"] == "counter"
    assert {kinds[n] for n in entry["names"] if n.startswith("training/")
            and not n.endswith("/iter")} == {"slot"}


def test_estimator_hyperparameters_and_slots_are_slots(optimizer_fixtures):
    names = optimizer_fixtures["estimator"]["Adam"]["names"]
    for leaf in ("beta_1", "beta_2", "decay", "learning_rate",
                 "dnn/hiddenlayer_0/kernel/m", "dnn/hiddenlayer_0/kernel/v"):
        assert f"training/Adam/{leaf}" in names
        assert tf1_kind(f"training/Adam/{leaf}") == "slot"
    rms = optimizer_fixtures["estimator"]["RMSprop"]["names"]
    assert {tf1_kind(n) for n in rms if n.endswith(("/rho", "/momentum", "/rms"))} == {"slot"}


def test_cli_drop_optimizer_on_an_estimator_checkpoint(optimizer_fixtures, tmp_path):
    entry = optimizer_fixtures["estimator"]["Adagrad"]
    out = tmp_path / "out.safetensors"
    assert main(["convert", entry["prefix"], str(out), "--preset", "drop-optimizer", "-q"]) == 0
    with converter.read(out) as back:
        assert sorted(back) == MODEL


@pytest.mark.parametrize("key", ["Adam", "Adam_legacy", "SGD_legacy"])
def test_keras2_h5_optimizer_weights_are_read_as_optimizer_state(optimizer_fixtures, key):
    entry = optimizer_fixtures["h5"][key]
    optimizer = {w.removesuffix(":0"): v for w, v in entry["optimizer_weights"].items()}
    model = {w.removesuffix(":0"): v for w, v in entry["model_weights"].items()}
    with converter.read(entry["path"]) as ckpt:
        assert list(ckpt) == list(model) + list(optimizer)
        for name, values in {**model, **optimizer}.items():
            got = ckpt[name].read()
            assert_same(got, np.asarray(values, dtype=got.dtype), name)
        kinds = {n: ckpt[n].kind for n in optimizer}
        steps = [n for n in optimizer if n.rpartition("/")[2] in ("iter", "iteration")]
        assert len(steps) == 1 and kinds.pop(steps[0]) == "counter"
        assert set(kinds.values()) == {"slot"}
        assert {ckpt[n].kind for n in model} == {"variable"}
        assert list(Rules().preset("drop-optimizer").apply(ckpt)) == list(model)


@pytest.mark.parametrize("name, kind", [
    # Keras 1 in graph mode: slots as training/<Optimizer>/Variable, state under <Optimizer>/.
    ("training/Adam/Variable", "slot"), ("training/Adam/Variable_3", "slot"),
    ("Adam/iterations", "counter"), ("Adam/lr", "slot"), ("RMSprop/rho", "slot"),
    ("training_1/SGD/momentum", "slot"), ("Nadam/momentum_cache", "slot"),
    ("Adamax/iter", "counter"), ("Adadelta/dense/kernel/accum_grad", "slot"),
    ("Adam_1/m/dense/kernel", "slot"),
    # Model weights, and keys that merely contain an optimizer's name.
    ("dense/kernel", "variable"), ("training/dense/kernel", "variable"),
    ("adam_model/dense/kernel", "variable"), ("model/Adam", "slot"),
    ("optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE", "variable"), ("Adamx/w", "variable"),
    ("encoder/SGD/w", "variable"),
])
def test_keras_optimizer_scopes_by_name(name, kind):
    assert tf1_kind(name) == kind


def test_kind_is_what_the_name_patterns_say():
    # tf1_kind skips patterns by a name's first and last characters: it must judge every name
    # as the patterns alone do, trailing newlines ($ matches before one) included.
    import random

    from converter.kinds import (
        COUNTERS,
        MESH_SLOT,
        OPTIMIZER_SCALARS,
        SLOT_SUFFIX,
        keras_optimizer_kind,
    )

    def by_patterns(name: str) -> str:
        if COUNTERS.search(name):
            return "counter"
        if SLOT_SUFFIX.search(name) or OPTIMIZER_SCALARS.search(name) or MESH_SLOT.search(name):
            return "slot"
        return keras_optimizer_kind(name) or "variable"

    words = ["Adam", "Adam_1", "adam_m", "adam_v", "Momentum", "RMSProp_2", "AdagradDA",
             "AdagradDAx_y", "Ftrl", "ProximalAdagrad", "LazyAdam_1", "Nadam", "AdamW_3",
             "beta1_power", "beta2_power_1", "global_step", "save_counter", "q_slot_v",
             "x_slot_vr", "e_slot_vc", "m_slot_m", "training", "training_1", "SGD_1", "Lion",
             "LossScaleOptimizer", "Adafactor", "Adamax", "RMSprop", "iter", "iterations",
             "kernel", "bias", "", "a", "b", "_", "1", "Adam ", "é", "\n", "/\n"]
    rng = random.Random(0)
    for _ in range(20000):
        name = "/".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
        name = rng.choice(["", rng.choice(words)]) + name + rng.choice(["", rng.choice(words)])
        assert tf1_kind(name) == by_patterns(name), name
