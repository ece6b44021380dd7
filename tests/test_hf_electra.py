"""``--to hf`` for Google ELECTRA: pretraining checkpoints TensorFlow wrote under the release's
names (discriminator and generator sharing electra/embeddings, AdamWeightDecay slots,
global_step) become directories transformers loads with no missing, unexpected or mismatched
key: the discriminator by default, the generator with ``--family electra:generator``, each
tensor bit-exact what transformers 4.x's load_tf_weights_in_electra made of it (its renames and
attribute walk are transcribed in ``reference_state``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import converter
from converter.cli import main
from tests.helpers import tf_available, tf_releases

V, P, T = 40, 24, 2


def _encoder(scope: str, hidden: int, layers: int, embedding: int) -> dict:
    shapes: dict[str, tuple[int, ...]] = {}
    if embedding != hidden:
        shapes[f"{scope}/embeddings_project/kernel"] = (embedding, hidden)
        shapes[f"{scope}/embeddings_project/bias"] = (hidden,)
    for n in range(layers):
        at = f"{scope}/encoder/layer_{n}/"
        for part in ("attention/self/query", "attention/self/key", "attention/self/value",
                     "attention/output/dense"):
            shapes[f"{at}{part}/kernel"] = (hidden, hidden)
            shapes[f"{at}{part}/bias"] = (hidden,)
        for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes[f"{at}{norm}/gamma"] = shapes[f"{at}{norm}/beta"] = (hidden,)
        shapes[f"{at}intermediate/dense/kernel"] = (hidden, 4 * hidden)
        shapes[f"{at}intermediate/dense/bias"] = (4 * hidden,)
        shapes[f"{at}output/dense/kernel"] = (4 * hidden, hidden)
        shapes[f"{at}output/dense/bias"] = (hidden,)
    return shapes


def _embeddings(e: int) -> dict:
    return {"electra/embeddings/word_embeddings": (V, e),
            "electra/embeddings/position_embeddings": (P, e),
            "electra/embeddings/token_type_embeddings": (T, e),
            "electra/embeddings/LayerNorm/gamma": (e,), "electra/embeddings/LayerNorm/beta": (e,)}


def _discriminator(h: int, e: int, layers: int = 2) -> dict:
    return {**_encoder("electra", h, layers, e),
            "discriminator_predictions/dense/kernel": (h, h),
            "discriminator_predictions/dense/bias": (h,),
            "discriminator_predictions/dense_1/kernel": (h, 1),
            "discriminator_predictions/dense_1/bias": (1,)}


def _generator(h: int, e: int, layers: int = 3) -> dict:
    return {**_encoder("generator", h, layers, e),
            "generator_predictions/dense/kernel": (h, e),
            "generator_predictions/dense/bias": (e,),
            "generator_predictions/LayerNorm/gamma": (e,),
            "generator_predictions/LayerNorm/beta": (e,),
            "generator_predictions/output_bias": (V,)}


HPARAMS = {  # run_pretraining.py --hparams, as configure_pretraining.py reads it
    "model_size": "small", "embedding_size": 8, "vocab_size": V, "max_seq_length": 16,
    "learning_rate": 5e-4, "generator_hidden_size": 0.5, "num_train_steps": 10,
    "model_hparam_overrides": {"hidden_size": 16, "num_hidden_layers": 2,
                               "num_attention_heads": 2, "hidden_act": "gelu"},
}
GENERATOR_CONFIG = {  # a transformers config.json, as the hub's electra-*-generator have
    "model_type": "electra", "architectures": ["ElectraForMaskedLM"], "hidden_size": 8,
    "num_attention_heads": 1, "intermediate_size": 32, "embedding_size": 8,
    "hidden_act": "gelu", "attention_probs_dropout_prob": 0.1,
}

CASES = {  # name: (tensors, files beside the checkpoint)
    # small: embedding 8 < hidden 16 (discriminator), 8 (generator): both project
    "small": ({**_embeddings(8), **_discriminator(16, 8), **_generator(8, 8)}, True),
    # base-like: embedding = discriminator hidden, no electra/embeddings_project
    "base": ({**_embeddings(16), **_discriminator(16, 16), **_generator(8, 16)}, False),
    "generator_only": ({**_embeddings(8), **_generator(8, 8)}, False),
    "bad_head": ({**_embeddings(8), **_discriminator(16, 8), **_generator(8, 8),
                  "discriminator_predictions/dense_1/kernel": (16, 2)}, True),
}


@pytest.fixture(scope="session")
def electra(tmp_path_factory) -> dict[str, tuple]:
    """Each case's checkpoint prefix and the arrays TensorFlow saved in it."""
    if not tf_available():
        pytest.skip("TensorFlow is not installed (pip install 'ckpt-converter[tf]')")
    root = tmp_path_factory.mktemp("electra")

    def beside(d: Path) -> None:
        (d / "hparams.json").write_text(json.dumps(HPARAMS))
        (d / "vocab.txt").write_text("".join(f"tok{i}\n" for i in range(V)))

    return tf_releases(root, CASES, 11, beside)


def reference_state(model, arrays: dict, generator: bool) -> dict[str, np.ndarray]:
    """What load_tf_weights_in_electra(model, ..., "generator" if generator else
    "discriminator") assigns where; a variable it cannot place it skips."""
    out = {}
    masked_lm = type(model).__name__ == "ElectraForMaskedLM"
    for tf_name, array in arrays.items():
        name = tf_name
        if masked_lm:
            name = name.replace("electra/embeddings/", "generator/embeddings/")
        if generator:
            name = name.replace("electra/", "discriminator/").replace("generator/", "electra/")
        name = name.replace("dense_1", "dense_prediction")
        name = name.replace("generator_predictions/output_bias", "generator_lm_head/bias")
        parts = name.split("/")
        if any(p in ("global_step", "temperature") for p in parts):
            continue
        pointer, path = model, []
        try:
            for m_name in parts:
                scope = (re.split(r"_(\d+)", m_name) if re.fullmatch(r"[A-Za-z]+_\d+", m_name)
                         else [m_name])
                attr = {"kernel": "weight", "gamma": "weight", "output_weights": "weight",
                        "output_bias": "bias", "beta": "bias", "squad": "classifier"
                        }.get(scope[0], scope[0])
                pointer = getattr(pointer, attr)
                path.append(attr)
                if len(scope) >= 2:
                    pointer = pointer[int(scope[1])]
                    path.append(scope[1])
            if m_name.endswith("_embeddings"):
                pointer = pointer.weight
                path.append("weight")
        except AttributeError:
            continue
        value = array.T if m_name == "kernel" else array
        assert tuple(pointer.shape) == value.shape, tf_name
        out[".".join(path)] = value
    return out


def check_output(out, arrays: dict, cls: str) -> dict:
    """Load ``out`` with transformers; every key it wants is there, and bit-exact."""
    transformers = pytest.importorskip("transformers")
    import torch
    from safetensors.numpy import load_file

    model, info = getattr(transformers, cls).from_pretrained(out, output_loading_info=True)
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        assert not info[kind], (kind, info[kind])
    state = model.state_dict()
    expected = reference_state(model, arrays, generator=cls == "ElectraForMaskedLM")
    written = load_file(str(out / "model.safetensors"))
    assert sorted(written) == sorted(expected)
    for name, want in expected.items():
        assert written[name].dtype == want.dtype and written[name].shape == want.shape, name
        assert written[name].tobytes() == np.ascontiguousarray(want).tobytes(), name
        assert state[name].numpy().tobytes() == np.ascontiguousarray(want).tobytes(), name
    assert not any("adam" in n or "global_step" in n for n in written)
    model.eval()
    model(input_ids=torch.tensor([[1, 2, 3, 4]]))
    return json.loads((out / "config.json").read_text())


def test_discriminator_is_the_default(electra, tmp_path):
    src, arrays = electra["small"]
    out = tmp_path / "hf"
    assert main(["convert", str(src), str(out), "--to", "hf", "-q"]) == 0
    config = check_output(out, arrays, "ElectraForPreTraining")
    assert config["architectures"] == ["ElectraForPreTraining"]
    assert config["model_type"] == "electra"
    assert {k: config[k] for k in ("vocab_size", "embedding_size", "hidden_size",
                                   "num_hidden_layers", "num_attention_heads",
                                   "intermediate_size", "max_position_embeddings",
                                   "type_vocab_size", "hidden_act")} == {
        "vocab_size": V, "embedding_size": 8, "hidden_size": 16, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": P,
        "type_vocab_size": T, "hidden_act": "gelu"}
    assert not {"model_size", "max_seq_length", "learning_rate", "generator_hidden_size",
                "num_train_steps", "model_hparam_overrides"} & set(config)
    assert (out / "vocab.txt").read_bytes() == (src.parent / "vocab.txt").read_bytes()


def test_generator_by_variant_with_its_own_config(electra, tmp_path):
    import converter

    src, arrays = electra["small"]
    cfg = tmp_path / "generator.json"
    cfg.write_text(json.dumps(GENERATOR_CONFIG))
    out = tmp_path / "hf"
    converter.convert(src, out, to="hf", family="electra:generator", config=cfg).close()
    config = check_output(out, arrays, "ElectraForMaskedLM")
    assert config["architectures"] == ["ElectraForMaskedLM"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["intermediate_size"]) == (8, 3, 1, 32)
    import transformers
    model = transformers.ElectraForMaskedLM.from_pretrained(out)  # tied to the shared table
    assert (model.generator_lm_head.weight.detach().numpy().tobytes()
            == arrays["electra/embeddings/word_embeddings"].tobytes())


def test_base_without_embeddings_project(electra, tmp_path):
    src, arrays = electra["base"]
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"num_attention_heads": 2}))
    assert main(["convert", str(src), str(tmp_path / "d"), "--to", "hf", "-q",
                 "--config", str(cfg)]) == 0
    config = check_output(tmp_path / "d", arrays, "ElectraForPreTraining")
    assert config["embedding_size"] == config["hidden_size"] == 16
    assert main(["convert", str(src), str(tmp_path / "g"), "--to", "hf", "-q",
                 "--config", str(cfg), "--family", "electra:generator"]) == 0
    config = check_output(tmp_path / "g", arrays, "ElectraForMaskedLM")
    assert (config["embedding_size"], config["hidden_size"]) == (16, 8)


def test_generator_only_checkpoint_is_detected(electra, tmp_path):
    src, arrays = electra["generator_only"]
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(GENERATOR_CONFIG))
    assert main(["convert", str(src), str(tmp_path / "g"), "--to", "hf", "-q",
                 "--config", str(cfg)]) == 0
    check_output(tmp_path / "g", arrays, "ElectraForMaskedLM")


@pytest.mark.parametrize("case, args, message", [
    ("small", ["--family", "albert"], "not a checkpoint of the albert family"),
    ("small", ["--family", "electra:classifier"],
     "electra has no variant 'classifier' (variants: discriminator, generator)"),
    ("generator_only", ["--family", "electra:discriminator"],
     "electra: the checkpoint fits none of ElectraForPreTraining"),
    ("base", [], "electra: no config gives num_attention_heads"),
    ("bad_head", [], "discriminator_predictions/dense_1/kernel has shape (16, 2), but "
                     "ElectraForPreTraining needs (16, 1) (hidden_size=16)"),
])
def test_refusals_are_one_line_and_write_nothing(electra, tmp_path, capsys, case, args,
                                                 message):
    src, _ = electra[case]
    out = tmp_path / "hf"
    assert main(["convert", str(src), str(out), "--to", "hf", "-q", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_the_generator_config_follows_from_pretraining_hparams(electra, tmp_path):
    """run_pretraining's hparams give the discriminator's sizes; the generator's follow from
    them as ELECTRA's get_generator_config derives them (heads = max(1, hidden // 64))."""
    src, _ = electra["small"]
    converter.convert(src, tmp_path / "hf", to="hf", family="electra:generator").close()
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (config["hidden_size"], config["num_attention_heads"]) == (8, 1)
    assert config["architectures"] == ["ElectraForMaskedLM"]


def test_a_generator_config_of_other_sizes_is_refused(electra, tmp_path, capsys):
    src, _ = electra["small"]
    other = tmp_path / "config.json"
    other.write_text(json.dumps({"model_type": "electra", "hidden_size": 16,
                                 "num_attention_heads": 1}))
    assert main(["convert", str(src), str(tmp_path / "hf"), "--to", "hf", "-q",
                 "--family", "electra:generator", "--config", str(other)]) == 2
    assert "config.json: hidden_size is 16, but the checkpoint's shapes say 8" in \
        capsys.readouterr().err
