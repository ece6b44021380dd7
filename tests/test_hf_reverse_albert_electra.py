"""``--from hf`` for ALBERT and ELECTRA: a Hugging Face directory back under Google's own names.

The releases are written by TensorFlow (``tf.compat.v1.train.Saver``, with AdamWeightDecay's
slots and ``global_step``, as run_pretraining.py saves them); each goes to transformers' names
and back, and must come back bit for bit, all but the optimizer state and what the class does not
hold. A directory transformers 5 saved itself goes back too, and TensorFlow reads the bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import converter
from converter.cli import main
from converter.tensor import as_checkpoint
from tests.helpers import assert_same

V, P, T, E = 40, 24, 2, 8  # vocab, positions, token types, embedding size
H, FF, GROUPS, INNER, LABELS = 16, 32, 2, 2, 3  # ALBERT: two groups of two inner layers
DH, DFF, GH, GFF, LAYERS = 32, 37, 16, 64, 2  # ELECTRA: discriminator and generator sizes

ALBERT_CONFIG = {
    "attention_probs_dropout_prob": 0.0, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
    "embedding_size": E, "hidden_size": H, "initializer_range": 0.02, "intermediate_size": FF,
    "max_position_embeddings": P, "num_attention_heads": 2, "num_hidden_layers": 4,
    "num_hidden_groups": GROUPS, "net_structure_type": 0, "gap_size": 0,
    "num_memory_blocks": 0, "inner_group_num": INNER, "down_scale_factor": 1,
    "type_vocab_size": T, "vocab_size": V,
}
ELECTRA_HPARAMS = {  # run_pretraining.py --hparams: the generator's sizes follow from them
    "model_size": "small", "vocab_size": V, "embedding_size": E, "generator_hidden_size": 0.5,
    "generator_layers": 1.0, "untied_generator_embeddings": False, "untied_generator": True,
    "model_hparam_overrides": {"hidden_size": DH, "num_hidden_layers": LAYERS,
                               "num_attention_heads": 2, "intermediate_size": DFF,
                               "max_position_embeddings": P},
}


def _albert_body(pooler: bool = True) -> dict[str, tuple[int, ...]]:
    shapes = {
        "bert/embeddings/word_embeddings": (V, E),
        "bert/embeddings/position_embeddings": (P, E),
        "bert/embeddings/token_type_embeddings": (T, E),
        "bert/embeddings/LayerNorm/gamma": (E,), "bert/embeddings/LayerNorm/beta": (E,),
        "bert/encoder/embedding_hidden_mapping_in/kernel": (E, H),
        "bert/encoder/embedding_hidden_mapping_in/bias": (H,),
    }
    if pooler:
        shapes.update({"bert/pooler/dense/kernel": (H, H), "bert/pooler/dense/bias": (H,)})
    for g in range(GROUPS):
        for i in range(INNER):
            at = f"bert/encoder/transformer/group_{g}/inner_group_{i}/"
            for part in ("self/query", "self/key", "self/value", "output/dense"):
                shapes[f"{at}attention_1/{part}/kernel"] = (H, H)
                shapes[f"{at}attention_1/{part}/bias"] = (H,)
            for norm in ("LayerNorm", "LayerNorm_1"):
                shapes[f"{at}{norm}/gamma"] = shapes[f"{at}{norm}/beta"] = (H,)
            shapes[f"{at}ffn_1/intermediate/dense/kernel"] = (H, FF)
            shapes[f"{at}ffn_1/intermediate/dense/bias"] = (FF,)
            shapes[f"{at}ffn_1/intermediate/output/dense/kernel"] = (FF, H)
            shapes[f"{at}ffn_1/intermediate/output/dense/bias"] = (H,)
    return shapes


MLM = {"cls/predictions/transform/dense/kernel": (H, E),
       "cls/predictions/transform/dense/bias": (E,),
       "cls/predictions/transform/LayerNorm/gamma": (E,),
       "cls/predictions/transform/LayerNorm/beta": (E,),
       "cls/predictions/output_bias": (V,)}
SOP = {"cls/seq_relationship/output_weights": (2, H), "cls/seq_relationship/output_bias": (2,)}
CLASSIFIER = {"output_weights": (LABELS, H), "output_bias": (LABELS,)}


def _electra_encoder(scope: str, hidden: int, inter: int) -> dict[str, tuple[int, ...]]:
    shapes = {f"{scope}/embeddings_project/kernel": (E, hidden),
              f"{scope}/embeddings_project/bias": (hidden,)}
    for n in range(LAYERS):
        at = f"{scope}/encoder/layer_{n}/"
        for part in ("attention/self/query", "attention/self/key", "attention/self/value",
                     "attention/output/dense"):
            shapes[f"{at}{part}/kernel"] = (hidden, hidden)
            shapes[f"{at}{part}/bias"] = (hidden,)
        for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes[f"{at}{norm}/gamma"] = shapes[f"{at}{norm}/beta"] = (hidden,)
        shapes[f"{at}intermediate/dense/kernel"] = (hidden, inter)
        shapes[f"{at}intermediate/dense/bias"] = (inter,)
        shapes[f"{at}output/dense/kernel"] = (inter, hidden)
        shapes[f"{at}output/dense/bias"] = (hidden,)
    return shapes


ELECTRA = {  # one pretraining checkpoint: both models around the shared embeddings
    "electra/embeddings/word_embeddings": (V, E),
    "electra/embeddings/position_embeddings": (P, E),
    "electra/embeddings/token_type_embeddings": (T, E),
    "electra/embeddings/LayerNorm/gamma": (E,), "electra/embeddings/LayerNorm/beta": (E,),
    **_electra_encoder("electra", DH, DFF),
    "discriminator_predictions/dense/kernel": (DH, DH),
    "discriminator_predictions/dense/bias": (DH,),
    "discriminator_predictions/dense_1/kernel": (DH, 1),
    "discriminator_predictions/dense_1/bias": (1,),
    **_electra_encoder("generator", GH, GFF),
    "generator_predictions/dense/kernel": (GH, E),
    "generator_predictions/dense/bias": (E,),
    "generator_predictions/LayerNorm/gamma": (E,),
    "generator_predictions/LayerNorm/beta": (E,),
    "generator_predictions/output_bias": (V,),
}

RELEASES = {  # release: its tensors, the file beside it
    "albert_pretraining": ({**_albert_body(), **MLM, **SOP}, ("albert_config.json",
                                                            ALBERT_CONFIG)),
    # transformers' AlbertForMaskedLM has no pooler: a release that has one loses it on the
    # way there, so this one has none.
    "albert_masked_lm": ({**_albert_body(pooler=False), **MLM}, ("albert_config.json",
                                                               ALBERT_CONFIG)),
    "albert_classifier": ({**_albert_body(), **CLASSIFIER}, ("albert_config.json",
                                                           ALBERT_CONFIG)),
    "albert_model": (_albert_body(), ("albert_config.json", ALBERT_CONFIG)),
    "electra": (ELECTRA, ("hparams.json", ELECTRA_HPARAMS)),
}

# case: (release, --family, transformers class, what of the release that class holds)
CASES = {
    "albert_pretraining": ("albert_pretraining", None, "AlbertForPreTraining", None),
    "albert_masked_lm": ("albert_masked_lm", None, "AlbertForMaskedLM", None),
    "albert_classifier": ("albert_classifier", None, "AlbertForSequenceClassification", None),
    "albert_model": ("albert_model", None, "AlbertModel", None),
    "electra_discriminator": ("electra", None, "ElectraForPreTraining", "^(generator)"),
    "electra_generator": ("electra", "electra:generator", "ElectraForMaskedLM",
                          "^(electra/(encoder|embeddings_project)|discriminator_predictions)/"),
}


@pytest.fixture(scope="session")
def releases(tf, tmp_path_factory) -> dict[str, Path]:
    """Each release's checkpoint prefix, written by TensorFlow with the optimizer's state."""
    from tests import tf_hf_writer

    root = tmp_path_factory.mktemp("albert-electra")
    rng = np.random.default_rng(11)
    found = {}
    for name, (shapes, (config_name, config)) in RELEASES.items():
        d = root / name
        d.mkdir()
        arrays = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
        np.savez(d / "arrays.npz", **arrays)
        tf_hf_writer.write(str(d / "arrays.npz"), str(d / "model.ckpt"))
        (d / config_name).write_text(json.dumps(config))
        found[name] = d / "model.ckpt"
    return found


def _expected(src: Path, other_model: str | None) -> dict[str, np.ndarray]:
    """The release's tensors the class holds: no optimizer state, not the other model."""
    import re

    with converter.read(src) as ckpt:
        return {n: t.read() for n, t in ckpt.items()
                if not re.search(r"(/adam_[mv]$|^global_step$)", n)
                and not (other_model and re.search(other_model, n))}


def _to_hf(releases: dict[str, Path], case: str, out: Path) -> Path:
    release, family, _, _ = CASES[case]
    converter.convert(releases[release], out, to="hf", family=family).close()
    return out


def _assert_release(back: Path, expected: dict[str, np.ndarray]) -> None:
    with converter.read(back) as got:
        assert sorted(got) == sorted(expected)
        for name, value in expected.items():
            assert_same(got[name].read(), value, name)


@pytest.mark.parametrize("case", CASES)
def test_release_to_hf_and_back_is_the_release_and_tensorflow_reads_it(releases, case, tmp_path,
                                                                      tf):
    release, _, cls, other = CASES[case]
    hf = _to_hf(releases, case, tmp_path / "hf")
    assert json.loads((hf / "config.json").read_text())["architectures"] == [cls]
    back = tmp_path / "back" / "model.ckpt"
    assert main(["convert", str(hf), str(back), "--from", "hf", "-q"]) == 0
    expected = _expected(releases[release], other)
    _assert_release(back, expected)
    reader = tf.train.load_checkpoint(str(back))
    assert sorted(reader.get_variable_to_shape_map()) == sorted(expected)
    for name, value in expected.items():
        assert_same(reader.get_tensor(name), value, name)


@pytest.mark.parametrize("case", CASES)
def test_a_directory_transformers_saved_goes_back(releases, case, tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    release, _, cls, other = CASES[case]
    hf = _to_hf(releases, case, tmp_path / "ours")
    model, info = getattr(transformers, cls).from_pretrained(hf, output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}, info
    model.save_pretrained(tmp_path / "saved")
    converter.convert(tmp_path / "saved", tmp_path / "back.ckpt", source_format="hf").close()
    _assert_release(tmp_path / "back.ckpt", _expected(releases[release], other))


@pytest.mark.parametrize("case, copy, original", [
    ("albert_pretraining", "predictions.decoder.weight",
     "albert.embeddings.word_embeddings.weight"),
    ("albert_masked_lm", "predictions.decoder.bias", "predictions.bias"),
    ("electra_generator", "generator_lm_head.weight",
     "electra.embeddings.word_embeddings.weight"),
])
def test_tied_copies_go_back_only_when_they_are_copies(releases, case, copy, original, tmp_path,
                                                       capsys):
    release, _, cls, other = CASES[case]
    hf = _to_hf(releases, case, tmp_path / "hf")
    weights = load_file(hf / "model.safetensors")
    weights[copy] = weights[original].copy()  # as transformers 4.x saved them
    save_file(weights, hf / "model.safetensors", metadata={"format": "pt"})
    with converter.read(hf, format="hf") as back:
        assert sorted(back) == sorted(_expected(releases[release], other))
    weights[copy] = weights[original] + 1
    save_file(weights, hf / "model.safetensors", metadata={"format": "pt"})
    assert main(["convert", str(hf), str(tmp_path / "back.ckpt"), "--from", "hf"]) == 2
    assert f"{copy} differs from {original}, so the model is not the {cls} whose weights are " \
           "tied" in capsys.readouterr().err
    assert not list(tmp_path.glob("back.ckpt*"))


def _edited(hf: Path, edit) -> Path:
    weights = load_file(hf / "model.safetensors")
    edit(weights)
    save_file(weights, hf / "model.safetensors", metadata={"format": "pt"})
    return hf


def test_a_tensor_with_no_original_name_is_refused(releases, tmp_path, capsys):
    name = "albert.encoder.albert_layer_groups.1.albert_layers.0.attention.extra.weight"
    hf = _edited(_to_hf(releases, "albert_pretraining", tmp_path / "hf"),
                 lambda w: w.__setitem__(name, np.ones((H, H), np.float32)))
    assert main(["convert", str(hf), str(tmp_path / "back.ckpt"), "--from", "hf"]) == 2
    err = capsys.readouterr().err
    assert f"{name!r} has no place in albert's AlbertForPreTraining, so it has no original " \
           "name" in err and err.count("\n") == 1


def test_an_inner_layer_missing_from_one_group_is_refused(releases, tmp_path, capsys):
    name = "albert.encoder.albert_layer_groups.1.albert_layers.1.ffn.weight"
    hf = _edited(_to_hf(releases, "albert_pretraining", tmp_path / "hf"),
                 lambda w: w.pop(name))
    assert main(["convert", str(hf), str(tmp_path / "back.ckpt"), "--from", "hf"]) == 2
    err = capsys.readouterr().err
    assert "albert: albert.encoder.albert_layer_groups.1.albert_layers.1.ffn.weight is " \
           "missing, while other layers have it" in err
    assert not list(tmp_path.glob("back.ckpt*"))


DO_NOT_MAKE = "the tensors do not make the {} they are named for"


@pytest.mark.parametrize("case, cls, message", [
    ("electra_discriminator", "ElectraForMaskedLM", DO_NOT_MAKE.format("ElectraForMaskedLM")),
    ("electra_generator", "ElectraForPreTraining", DO_NOT_MAKE.format("ElectraForPreTraining")),
    ("albert_model", "AlbertForPreTraining", DO_NOT_MAKE.format("AlbertForPreTraining")),
    ("albert_pretraining", "AlbertModel",
     "'albert.pooler.bias' has no place in albert's AlbertModel, so it has no original name"),
])
def test_tensors_of_another_class_than_the_config_names_are_refused(releases, case, cls, message,
                                                                    tmp_path, capsys):
    hf = _to_hf(releases, case, tmp_path / "hf")
    config = json.loads((hf / "config.json").read_text())
    (hf / "config.json").write_text(json.dumps({**config, "architectures": [cls]}))
    assert main(["convert", str(hf), str(tmp_path / "back.ckpt"), "--from", "hf"]) == 2
    assert capsys.readouterr().err == f"ckpt: error: {hf}: {message}\n"
    assert not list(tmp_path.glob("back.ckpt*"))


def test_original_names_the_directory_when_no_architecture_fits():
    """The way back of one class giving tensors no architecture takes is that class's problem,
    said of the directory, not a forward-conversion message."""
    from converter.hf import original

    weights = {"electra.encoder.layer.0.attention.self.query.weight": np.zeros((4, 4),
                                                                              np.float32)}
    with pytest.raises(converter.errors.UsageError) as e:
        original(as_checkpoint(weights), {"model_type": "electra",
                                          "architectures": ["ElectraForMaskedLM"]},
                 where="dir")
    assert str(e.value) == "dir: the tensors do not make the ElectraForMaskedLM they are " \
                           "named for"
