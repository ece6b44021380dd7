"""``ckpt migrate`` on the bundled ``examples/mlp`` as the README shows it, and TF2 checkpoints
that TensorFlow finds and restores as its own (``checkpoint`` state file, ``save_counter``)."""

from __future__ import annotations

import importlib.util
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from converter.cli import main
from tests.helpers import assert_same

EXAMPLE = Path(__file__).parent.parent / "examples" / "mlp"
# The README's line, run as written inside a copy of examples/mlp.
README_LINE = "ckpt migrate model.ckpt-1000 --model models.py:build --preset keras-names " \
              "out.weights.h5"
LAYERS = ("hidden1", "hidden2", "hidden3", "softmax_linear")


@pytest.fixture()
def example(tmp_path, monkeypatch) -> Path:
    work = tmp_path / "mlp"
    shutil.copytree(EXAMPLE, work)
    monkeypatch.chdir(work)
    return work


def _build(example: Path):
    spec = importlib.util.spec_from_file_location("example_models", example / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build()


def _assert_is_the_example(tf, model) -> None:
    reader = tf.train.load_checkpoint(str(EXAMPLE / "model.ckpt-1000"))  # TensorFlow's reading
    for layer, name in zip(model.layers, LAYERS, strict=True):
        assert_same(np.asarray(layer.kernel), reader.get_tensor(f"{name}/weights"), name)
        assert_same(np.asarray(layer.bias), reader.get_tensor(f"{name}/biases"), name)


def test_readme_migrate_line_on_the_example(tf, example, capsys):
    code = main(shlex.split(README_LINE)[1:])
    assert code == 0, capsys.readouterr().err
    assert "8 matched, 0 missing, 0 unexpected" in capsys.readouterr().out
    model = _build(example)
    model.load_weights("out.weights.h5")  # Keras 3 reads what we wrote
    _assert_is_the_example(tf, model)


def test_without_the_preset_the_error_names_it(tf, example, capsys):
    line = README_LINE.replace(" --preset keras-names", "")
    assert main(shlex.split(line)[1:]) == 2
    err = capsys.readouterr().err
    assert "--preset keras-names" in err and err.count("\n") == 1
    assert not (example / "out.weights.h5").exists()


def test_a_load_error_names_the_checkpoint_also_through_rules(tf, example, capsys):
    line = README_LINE.replace(" --preset keras-names", " --preset drop-optimizer")
    assert main(shlex.split(line)[1:]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ckpt: error: loading model.ckpt-1000 into "), err


def test_tf2_checkpoint_is_found_and_restored_by_tensorflow(tf, example, capsys):
    code = main(["migrate", "model.ckpt-1000", "--model", "models.py:build", "--preset",
                 "keras-names", "-q", "tf2/ckpt"])
    assert code == 0, capsys.readouterr().err
    latest = tf.train.latest_checkpoint(str(example / "tf2"))
    assert latest == str(example / "tf2" / "ckpt")
    model = _build(example)
    checkpoint = tf.train.Checkpoint(model=model)
    checkpoint.restore(latest).assert_existing_objects_matched()
    assert int(checkpoint.save_counter.numpy()) == 1
    _assert_is_the_example(tf, model)
    # A second checkpoint beside it becomes the latest; the first stays listed.
    assert main(["migrate", "model.ckpt-1000", "--model", "models.py:build", "--preset",
                 "keras-names", "-q", "tf2/other"]) == 0
    assert tf.train.latest_checkpoint(str(example / "tf2")).endswith("other")
    state = tf.train.get_checkpoint_state(str(example / "tf2"))
    assert [Path(p).name for p in state.all_model_checkpoint_paths] == ["ckpt", "other"]
