"""``ckpt plan`` / ``converter.plan``: a restore planned ahead, checked entry by entry against
what ``tf.compat.v1.train.Saver.restore`` then does with graphs and a checkpoint TensorFlow
wrote (tests/tf_fixtures_plan.py): the changed graphs' extra branch, renamed scope, swapped
auto-named variables and partitioned variable."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

import converter
from converter.cli import main
from converter.errors import UsageError
from converter.loaders import LoadReport
from converter.rules import Rules
from tests.helpers import assert_same, tf_available
from tests.tf_fixtures_plan import VARIANTS


@pytest.fixture(scope="session")
def written(tmp_path_factory):
    if not tf_available():
        pytest.skip("TensorFlow is not installed (pip install 'ckpt-converter[tf]')")
    from tests.tf_fixtures_plan import built

    return built(tmp_path_factory)


def _meta(out, name: str) -> str:
    return str(out / ("base.ckpt.meta" if name == "base" else f"{name}.meta"))


@pytest.mark.parametrize("name", ["base", *VARIANTS])
def test_plan_entry_by_entry_is_what_saver_restore_does(written, name):
    out, expected = written
    report = converter.plan(str(out / "base.ckpt"), _meta(out, name))
    assert isinstance(report, LoadReport)
    entries = expected[name]["entries"]
    misfit = {m.variable: m for m in report.shape_mismatch}
    for variable, (outcome, message) in entries.items():
        if outcome == "ok":
            assert variable in report.matched, variable
        elif outcome == "NotFoundError":
            assert variable in report.missing, variable
            assert f"Key {variable} not found in checkpoint" in message
        else:
            assert outcome == "InvalidArgumentError" and variable in misfit, variable
            m = misfit[variable]
            # TF names both shapes; the plan holds the same two.
            assert m.variable_shape != m.tensor_shape
            assert (f"lhs shape= {m.variable_shape} rhs shape= {m.tensor_shape}".replace(
                ", ", ",") in message or
                f"spec {m.variable_shape} does not match the shape stored in checkpoint: "
                f"{m.tensor_shape}".replace(", ", ",") in message), message
    # Every entry is accounted for, and nothing else is.
    assert sorted(report.matched + report.missing + list(misfit)) == sorted(entries)
    base = set(expected["base"]["entries"])
    assert sorted(report.unexpected) == sorted(base - set(entries))
    restores = not (report.missing or report.shape_mismatch)
    assert restores == (expected[name]["restore"] == "ok")
    assert report.ok == (name in ("base", "same", "repartitioned"))


@pytest.mark.parametrize("name", VARIANTS)
def test_cli_exit_status(written, name, capsys):
    out, expected = written
    code = main(["plan", str(out / "base.ckpt"), "--target", _meta(out, name)])
    text = capsys.readouterr().out
    clean = name in ("same", "repartitioned")
    assert code == (0 if clean else 1)
    last = text.strip().splitlines()[-1]
    if clean:
        assert last == "clean restore: all 7 variables restore"
    elif expected[name]["restore"] == "NotFoundError":
        assert "NotFoundError (Key " in last and "not found in checkpoint)" in last
    elif expected[name]["restore"] == "InvalidArgumentError":
        assert "InvalidArgumentError" in last
    else:  # Saver.restore succeeds and leaves a tensor unused
        assert expected[name]["restore"] == "ok" and "unused" in last


def test_partitioned_variable_is_planned_whole(written):
    out, _ = written
    report = converter.plan(str(out / "base.ckpt"), _meta(out, "repartitioned"))
    assert report.ok and "emb" in report.matched
    assert not any(n.startswith("emb/part_") for n in report.matched)
    wider = converter.plan(str(out / "base.ckpt"), _meta(out, "wider"))
    assert [(m.variable, m.variable_shape, m.tensor_shape) for m in wider.shape_mismatch] == [
        ("emb", [12, 4], [10, 4])]


def test_json_report(written, capsys):
    out, _ = written
    assert main(["plan", str(out / "base.ckpt"), "--target", _meta(out, "extra"), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["missing"] == ["head/w"]
    assert {"variable": "emb", "tensor": "emb", "how": "name"} in data["pairings"]


def test_rename_rule_fixes_the_renamed_scope_and_tf_agrees(tf, written, tmp_path, capsys):
    out, _ = written
    target = _meta(out, "renamed")
    argv = ["plan", str(out / "base.ckpt"), "--target", target, "--rename", "^enc/=encoder/"]
    assert main(argv) == 0, capsys.readouterr().out
    capsys.readouterr()
    report = converter.plan(str(out / "base.ckpt"), target, Rules().rename("^enc/", "encoder/"))
    # Tensors go by the names the rules give them, as in every load report.
    assert report.ok and ("encoder/w", "encoder/w") in [(p.variable, p.tensor)
                                                       for p in report.pairings]
    # What the plan promised, TensorFlow does: the renamed checkpoint restores.
    fixed = tmp_path / "fixed.ckpt"
    assert main(["convert", str(out / "base.ckpt"), str(fixed), "--to", "tf",
                 "--rename", "^enc/=encoder/"]) == 0
    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as sess:
        saver = v1.train.import_meta_graph(target)
        saver.restore(sess, str(fixed))
        values = {v.op.name: sess.run(v) for v in v1.global_variables()}
    source = converter.read(str(out / "base.ckpt"))
    assert_same(values["encoder/w"], source["enc/w"].read(), "encoder/w")
    assert_same(np.concatenate([values["emb/part_0"], values["emb/part_1"]]),
                source["emb"].read(), "emb")


def test_converter_pairing_re_pairs_swapped_auto_names(written):
    out, _ = written
    for match in ("name", "order"):
        report = converter.plan(str(out / "base.ckpt"), _meta(out, "swapped"), match=match)
        assert report.ok, report.table()
        assert {(p.variable, p.tensor, str(p.how)) for p in report.pairings} >= {
            ("Variable", "Variable_1", "shape (auto-named variables in another order)"),
            ("Variable_1", "Variable", "shape (auto-named variables in another order)")}


@pytest.mark.parametrize(("target", "clean"), [("sm_tf1", True), ("sm_stripped", True),
                                               ("extra.ckpt", False)])
def test_saved_model_and_checkpoint_targets(written, target, clean, capsys):
    out, _ = written
    code = main(["plan", str(out / "base.ckpt"), "--target", str(out / target)])
    assert code == (0 if clean else 1), capsys.readouterr().out
    report = converter.plan(str(out / "base.ckpt"), str(out / target))
    assert report.missing == ([] if clean else ["head/w"])
    assert len(report.matched) == 7


def test_errors_are_exit_2(written, tmp_path, capsys):
    out, _ = written
    src = str(out / "base.ckpt")
    for argv in (["plan", src, "--target", str(tmp_path / "nothing")],
                 ["plan", str(tmp_path / "nothing"), "--target", _meta(out, "same")],
                 ["plan", src, "--target", _meta(out, "same"), "--tags", "serve"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("ckpt: error: "), err
    with pytest.raises(UsageError, match="match must be one of"):
        converter.plan(src, _meta(out, "same"), match="shape")


MODELS = """
import tensorflow as tf

def build():
    return tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(4, name="fc")],
                               name="m")
"""


def test_keras_factory_target(tf, tmp_path, capsys):
    models = tmp_path / "models.py"
    models.write_text(textwrap.dedent(MODELS))
    good = tmp_path / "good.npz"
    np.savez(good, **{"fc/kernel": np.ones((3, 4), np.float32),
                      "fc/bias": np.zeros(4, np.float32)})
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"fc/kernel": np.ones((4, 4), np.float32)})
    target = f"{models}:build"
    assert main(["plan", str(good), "--target", target]) == 0, capsys.readouterr()
    capsys.readouterr()
    assert main(["plan", str(bad), "--target", target]) == 1
    text = capsys.readouterr().out
    assert "missing (not in the checkpoint): fc/bias" in text
    assert "shape mismatch: fc/kernel" in text
    assert main(["plan", str(good), "--target", target, "--match", "exact"]) == 2
    assert "a Keras model loads by name" in capsys.readouterr().err
