"""``--to hf`` for transformers' own TF2 weights: ``tf_model.h5`` files that
``TF*Model.save_pretrained`` (transformers 4.57, Keras 2) wrote, committed under
tests/data/hf/tf_model_h5_<case>/ by scripts/hf_reference/make_tf_model_h5.py together with
what transformers 4.57 itself says of them (expected.json: each weight's PyTorch name and
transpose from convert_tf_weight_name_to_pt_weight_name) and the TF model's own output
(logits.npy). The directory we write must hold exactly those names and values, load into
transformers 5 without a missing or unexpected key, and give TF's output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import converter
from converter.cli import main
from tests.helpers import HERE, assert_same

DATA = HERE / "data" / "hf"
CASES = ["bert_tf", "bert_base", "gpt2", "vit", "resnet"]
# apply_transpose(..., pt_to_tf=False) of transformers 4.57.
AXES = {"no": None, "simple": "reverse", "conv1d": (2, 1, 0), "conv2d": (3, 2, 0, 1)}


def _expected(case: str) -> dict:
    return json.loads((DATA / f"tf_model_h5_{case}" / "expected.json").read_text())


def _ours(name: str) -> str:
    # Deliberately beyond transformers 4.x, which loaded parameters only and so left BatchNorm
    # statistics at their initial values: they are written under PyTorch's buffer names.
    return name.replace(".moving_mean", ".running_mean").replace(".moving_variance",
                                                                 ".running_var")


def _h5_values(case: str) -> dict[str, np.ndarray]:
    """Each weight as h5py reads it, by its TF name (``:0`` and all), first copy."""
    h5py = pytest.importorskip("h5py")
    out: dict[str, np.ndarray] = {}
    with h5py.File(DATA / f"tf_model_h5_{case}" / "tf_model.h5", "r") as f:
        for layer in f.attrs["layer_names"]:
            group = f[layer]
            for weight in group.attrs["weight_names"]:
                key = weight.decode() if isinstance(weight, bytes) else weight
                out.setdefault(key, group[key][()])
    return out


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tf-h5")
    out = {}
    for case in CASES:
        out[case] = root / case
        converter.convert(str(DATA / f"tf_model_h5_{case}" / "tf_model.h5"), str(out[case]),
                          to="hf")
    return out


@pytest.mark.parametrize("case", CASES)
def test_names_and_values_are_transformers_457s(case, converted):
    expected = _expected(case)
    values = _h5_values(case)
    got = converter.read(str(converted[case] / "model.safetensors"))
    want = {_ours(w["pt"]): tf_name for tf_name, w in expected["weights"].items()}
    assert sorted(got) == sorted(want)
    for pt_name, tf_name in want.items():
        value = values[tf_name]
        axes = AXES[expected["weights"][tf_name]["transpose"]]
        if axes == "reverse":
            value = value.transpose()
        elif axes is not None:
            value = value.transpose(axes)
        if value.ndim == 2 and value.shape[0] == 1 and pt_name.endswith(".bias"):
            value = value.squeeze(0)  # apply_transpose's squeeze to PyTorch's 1-D bias
        assert_same(got[pt_name].read(), np.ascontiguousarray(value), pt_name)


@pytest.mark.parametrize("case", CASES)
def test_config_is_the_saved_one(case, converted):
    saved = json.loads((DATA / f"tf_model_h5_{case}" / "config.json").read_text())
    written = json.loads((converted[case] / "config.json").read_text())
    assert written == saved
    assert written["architectures"] == [_expected(case)["class"]]


@pytest.mark.parametrize("case", CASES)
def test_transformers_loads_it_and_gives_tfs_output(case, converted):
    transformers = pytest.importorskip("transformers")
    import torch

    expected = _expected(case)
    cls = getattr(transformers, expected["class"])
    model, info = cls.from_pretrained(converted[case], output_loading_info=True)
    missing = set(info["missing_keys"])
    if case == "resnet":
        # BatchNorm's step counter: not in TF, not used to evaluate.
        missing = {k for k in missing if not k.endswith(".num_batches_tracked")}
    assert not missing and not info["unexpected_keys"] and not info["mismatched_keys"]
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor(expected["inputs"]))
    got = next(getattr(out, k) for k in ("logits", "prediction_logits", "last_hidden_state")
               if k in out)
    np.testing.assert_allclose(got.numpy(), np.load(DATA / f"tf_model_h5_{case}" / "logits.npy"),
                               atol=1e-5)


def test_the_second_copy_of_a_shared_embedding_is_dropped(converted, capsys):
    # Keras 2 saves the word embeddings in the bert layer's group and again in mlm___cls's.
    src = DATA / "tf_model_h5_bert_tf" / "tf_model.h5"
    names = list(converter.read(str(src)))
    copies = [n for n in names if n.startswith("mlm___cls/")]
    assert len(copies) == 5
    assert main(["convert", str(src), str(converted["bert_tf"]) + "-dry", "--to", "hf",
                 "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "family tf-h5: BertForPreTraining" in text
    assert "dropped 5:" in text and copies[0] in text


def test_cli_writes_the_same_directory(converted, tmp_path):
    out = tmp_path / "cli"
    assert main(["convert", str(DATA / "tf_model_h5_gpt2" / "tf_model.h5"), str(out), "--to",
                 "hf", "-q"]) == 0
    for name in ("model.safetensors", "config.json"):
        assert (out / name).read_bytes() == (converted["gpt2"] / name).read_bytes(), name


def _refused(args: list[str], out: Path, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert not out.exists()
    return err


def test_refuses_weights_without_their_config(tmp_path, capsys):
    shutil.copy(DATA / "tf_model_h5_gpt2" / "tf_model.h5", tmp_path / "tf_model.h5")
    out = tmp_path / "out"
    err = _refused(["convert", str(tmp_path / "tf_model.h5"), str(out), "--to", "hf"], out,
                   capsys)
    assert "no config.json" in err


def test_refuses_a_config_of_another_class(tmp_path, capsys):
    shutil.copy(DATA / "tf_model_h5_gpt2" / "tf_model.h5", tmp_path / "tf_model.h5")
    shutil.copy(DATA / "tf_model_h5_bert" / "config.json", tmp_path / "config.json")
    out = tmp_path / "out"
    err = _refused(["convert", str(tmp_path / "tf_model.h5"), str(out), "--to", "hf"], out,
                   capsys)
    assert "tfgpt2lm_head_model" in err and "TFBertForPreTraining" in err


def test_refuses_a_config_that_is_not_transformers(tmp_path, capsys):
    shutil.copy(DATA / "tf_model_h5_gpt2" / "tf_model.h5", tmp_path / "tf_model.h5")
    (tmp_path / "config.json").write_text(json.dumps({"n_head": 4}))
    out = tmp_path / "out"
    err = _refused(["convert", str(tmp_path / "tf_model.h5"), str(out), "--to", "hf"], out,
                   capsys)
    assert "not a transformers config" in err


def test_refuses_another_family(tmp_path, capsys):
    out = tmp_path / "out"
    err = _refused(["convert", str(DATA / "tf_model_h5_bert_tf" / "tf_model.h5"), str(out), "--to",
                    "hf", "--family", "bert"], out, capsys)
    assert "not a checkpoint of the bert family" in err


def test_architectures_lose_a_tf_prefix(tmp_path):
    for f in ("tf_model.h5", "config.json"):
        shutil.copy(DATA / "tf_model_h5_bert_base" / f, tmp_path / f)
    config = json.loads((tmp_path / "config.json").read_text())
    config["architectures"] = ["TFBertModel"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    converter.convert(str(tmp_path / "tf_model.h5"), str(tmp_path / "out"), to="hf")
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["architectures"] == ["BertModel"]
    assert "embeddings.word_embeddings.weight" in converter.read(
        str(tmp_path / "out" / "model.safetensors"))


def test_a_family_names_a_known_hook():
    from converter.errors import UsageError
    from converter.hf.family import parse

    fam = parse('name = "x"\nhook = "transformers-tf2"\ndetect = ["a"]\n', "x.toml")
    assert fam.hook == "transformers-tf2" and fam.architectures == ()
    with pytest.raises(UsageError, match="x.toml: unknown hook 'nope'"):
        parse('name = "x"\nhook = "nope"\n', "x.toml")
    with pytest.raises(UsageError, match="needs at least one"):
        parse('name = "x"\nmodel_type = "x"\n', "x.toml")
