"""``--to hf`` for Google ALBERT: checkpoints TensorFlow wrote under the release's names (with
AdamWeightDecay slots and global_step) become directories transformers loads with no missing,
unexpected or mismatched key, each tensor bit-exact what transformers 4.x's
load_tf_weights_in_albert made of it (its renames are transcribed in ``reference_name``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from converter.cli import main
from tests.helpers import tf_available, tf_releases

V, E, H, FF, P, T = 40, 8, 16, 32, 24, 2  # vocab, embedding, hidden, intermediate, positions
GROUPS, INNER, LAYERS, HEADS, LABELS = 2, 2, 4, 2, 3

ALBERT_CONFIG = {  # albert_config.json as the release has it
    "attention_probs_dropout_prob": 0.0, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
    "embedding_size": E, "hidden_size": H, "initializer_range": 0.02, "intermediate_size": FF,
    "max_position_embeddings": P, "num_attention_heads": HEADS, "num_hidden_layers": LAYERS,
    "num_hidden_groups": GROUPS, "net_structure_type": 0, "gap_size": 0,
    "num_memory_blocks": 0, "inner_group_num": INNER, "down_scale_factor": 1,
    "type_vocab_size": T, "vocab_size": V,
}


def _body() -> dict[str, tuple[int, ...]]:
    shapes = {
        "bert/embeddings/word_embeddings": (V, E),
        "bert/embeddings/position_embeddings": (P, E),
        "bert/embeddings/token_type_embeddings": (T, E),
        "bert/embeddings/LayerNorm/gamma": (E,), "bert/embeddings/LayerNorm/beta": (E,),
        "bert/encoder/embedding_hidden_mapping_in/kernel": (E, H),
        "bert/encoder/embedding_hidden_mapping_in/bias": (H,),
        "bert/pooler/dense/kernel": (H, H), "bert/pooler/dense/bias": (H,),
    }
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

CASES = {  # name: (tensors, albert_config.json and spiece model beside it)
    "pretraining": ({**_body(), **MLM, **SOP}, True),
    "masked_lm": ({**_body(), **MLM}, True),
    "classifier": ({**_body(), **CLASSIFIER}, False),
    "model": (_body(), True),
    "bad_head": ({**_body(), **MLM, **SOP, "cls/predictions/output_bias": (V + 1,)}, True),
}


@pytest.fixture(scope="session")
def albert(tmp_path_factory) -> dict[str, tuple]:
    """Each case's checkpoint prefix and the arrays TensorFlow saved in it."""
    if not tf_available():
        pytest.skip("TensorFlow is not installed (pip install 'ckpt-converter[tf]')")
    root = tmp_path_factory.mktemp("albert")

    def beside(d: Path) -> None:
        (d / "albert_config.json").write_text(json.dumps(ALBERT_CONFIG))
        (d / "30k-clean.model").write_bytes(b"\x0a\x05piece" + bytes(range(32)))

    return tf_releases(root, CASES, 7, beside)


def reference_name(name: str) -> list[str]:
    """load_tf_weights_in_albert's renames of a TF name, as the path it then walks."""
    for old, new in [("module/", ""), ("ffn_1", "ffn"), ("bert/", "albert/"),
                     ("attention_1", "attention"), ("transform/", ""),
                     ("LayerNorm_1", "full_layer_layer_norm"),
                     ("LayerNorm", "attention/LayerNorm"), ("transformer/", ""),
                     ("intermediate/dense/", ""),
                     ("ffn/intermediate/output/dense/", "ffn_output/"), ("/output/", "/"),
                     ("/self/", "/"), ("pooler/dense", "pooler"),
                     ("cls/predictions", "predictions"), ("predictions/attention", "predictions"),
                     ("embeddings/attention", "embeddings"),
                     ("inner_group_", "albert_layers/"), ("group_", "albert_layer_groups/")]:
        name = name.replace(old, new)
    if "/" not in name and ("output_bias" in name or "output_weights" in name):
        name = "classifier/" + name
    if "seq_relationship" in name:
        name = name.replace("seq_relationship/output_", "sop_classifier/classifier/")
        name = name.replace("weights", "weight")
    return name.split("/")


def reference_state(model, arrays: dict) -> dict[str, np.ndarray]:
    """What load_tf_weights_in_albert assigns where: its walk down ``model``'s attributes,
    which passes over a scope the model has no attribute for (``cls``, ``albert`` in an
    AlbertModel) and skips a variable it cannot place."""
    out = {}
    for tf_name, array in arrays.items():
        parts = reference_name(tf_name)
        if any(p in ("adam_m", "adam_v", "global_step") for p in parts):
            continue
        pointer, path = model, []
        try:
            for m_name in parts:
                scope = (re.split(r"_(\d+)", m_name) if re.fullmatch(r"[A-Za-z]+_\d+", m_name)
                         else [m_name])
                attr = {"kernel": "weight", "gamma": "weight", "output_weights": "weight",
                        "output_bias": "bias", "beta": "bias", "squad": "classifier"
                        }.get(scope[0], scope[0])
                if attr == scope[0] and not hasattr(pointer, attr):
                    continue
                pointer = getattr(pointer, attr)
                path.append(attr)
                if len(scope) >= 2:
                    pointer = pointer[int(scope[1])]
                    path.append(scope[1])
            if m_name.endswith("_embeddings"):
                pointer = pointer.weight
                path.append("weight")
            if tuple(pointer.shape) != (array.T if m_name == "kernel" else array).shape:
                raise ValueError(tf_name)
        except AttributeError:
            continue
        out[".".join(path)] = array.T if m_name == "kernel" else array
    return out


def check_output(out, arrays: dict, cls: str) -> dict:
    """Load ``out`` with transformers; every key it wants is there, and bit-exact."""
    transformers = pytest.importorskip("transformers")
    from safetensors.numpy import load_file

    model, info = getattr(transformers, cls).from_pretrained(out, output_loading_info=True)
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        assert not info[kind], (kind, info[kind])
    state = model.state_dict()
    expected = reference_state(model, arrays)
    written = load_file(str(out / "model.safetensors"))
    assert sorted(written) == sorted(expected)
    for name, want in expected.items():
        assert written[name].dtype == want.dtype and written[name].shape == want.shape, name
        assert written[name].tobytes() == np.ascontiguousarray(want).tobytes(), name
        assert state[name].numpy().tobytes() == np.ascontiguousarray(want).tobytes(), name
    assert not any("adam" in n or "global_step" in n for n in written)
    model.eval()
    model(input_ids=__import__("torch").tensor([[1, 2, 3, 4]]))  # the layer groups run
    return json.loads((out / "config.json").read_text())


def test_pretraining_checkpoint_with_the_cli(albert, tmp_path):
    src, arrays = albert["pretraining"]
    out = tmp_path / "hf"
    assert main(["convert", str(src), str(out), "--to", "hf", "-q"]) == 0
    config = check_output(out, arrays, "AlbertForPreTraining")
    assert config["architectures"] == ["AlbertForPreTraining"]
    assert config["model_type"] == "albert"
    for key in ("vocab_size", "embedding_size", "hidden_size", "intermediate_size",
                "num_attention_heads", "num_hidden_layers", "num_hidden_groups",
                "inner_group_num", "max_position_embeddings", "type_vocab_size", "hidden_act"):
        assert config[key] == ALBERT_CONFIG[key], key
    assert not {"net_structure_type", "gap_size", "down_scale_factor"} & set(config)
    assert (out / "spiece.model").read_bytes() == (src.parent / "30k-clean.model").read_bytes()
    # tied: the decoder is the word embeddings, its bias predictions.bias
    import transformers
    model = transformers.AlbertForPreTraining.from_pretrained(out)
    assert (model.predictions.decoder.weight.detach().numpy().tobytes()
            == arrays["bert/embeddings/word_embeddings"].tobytes())


def test_masked_lm_drops_the_pooler(albert, tmp_path):
    src, arrays = albert["masked_lm"]
    out = tmp_path / "hf"
    assert main(["convert", str(src), str(out), "--to", "hf", "-q"]) == 0
    assert check_output(out, arrays, "AlbertForMaskedLM")["architectures"] == [
        "AlbertForMaskedLM"]


def test_classifier_with_the_api_and_a_config_given(albert, tmp_path):
    import converter

    src, arrays = albert["classifier"]
    cfg = tmp_path / "given.json"
    cfg.write_text(json.dumps(ALBERT_CONFIG))
    converter.convert(src, tmp_path / "hf", to="hf", config=cfg).close()
    config = check_output(tmp_path / "hf", arrays, "AlbertForSequenceClassification")
    assert config["num_labels"] == LABELS
    assert not (tmp_path / "hf" / "spiece.model").exists()


def test_model_variant_and_no_head(albert, tmp_path):
    src, arrays = albert["model"]
    assert main(["convert", str(src), str(tmp_path / "a"), "--to", "hf", "-q"]) == 0
    check_output(tmp_path / "a", arrays, "AlbertModel")
    # a pretraining checkpoint, asked for its encoder only
    src, arrays = albert["pretraining"]
    assert main(["convert", str(src), str(tmp_path / "b"), "--to", "hf", "-q",
                 "--family", "albert:model"]) == 0
    check_output(tmp_path / "b", arrays, "AlbertModel")


def test_dry_run_table(albert, capsys):
    src, _ = albert["pretraining"]
    assert main(["convert", str(src), "unused", "--to", "hf", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "family albert: AlbertForPreTraining" in text
    assert ("bert/encoder/transformer/group_1/inner_group_0/LayerNorm_1/gamma -> "
            "albert.encoder.albert_layer_groups.1.albert_layers.0.full_layer_layer_norm.weight"
            in " ".join(text.split()))


@pytest.mark.parametrize("case, args, message", [
    ("pretraining", ["--family", "bert"], "not a checkpoint of the bert family"),
    ("pretraining", ["--family", "gpt9"], "unknown model family 'gpt9'"),
    ("pretraining", ["--family", "albert:generator"], "albert has no variant 'generator'"),
    ("classifier", [], "no config gives num_attention_heads, num_hidden_layers"),
    ("bad_head", [], "cls/predictions/output_bias has shape (41,), but AlbertForPreTraining "
                     "needs (40,) (vocab_size=40)"),
])
def test_refusals_are_one_line_and_write_nothing(albert, tmp_path, capsys, case, args,
                                                 message):
    src, _ = albert[case]
    out = tmp_path / "hf"
    assert main(["convert", str(src), str(out), "--to", "hf", "-q", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_config_that_disagrees_with_the_shapes(albert, tmp_path, capsys):
    src, _ = albert["pretraining"]
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({**ALBERT_CONFIG, "num_hidden_groups": 1}))
    assert main(["convert", str(src), str(tmp_path / "hf"), "--to", "hf", "-q",
                 "--config", str(cfg)]) == 2
    assert "num_hidden_groups is 1, but the checkpoint's shapes say 2" in capsys.readouterr().err
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("exclude, missing", [
    # one group's inner layer lacks a tensor the other group's has
    ("re:^bert/encoder/transformer/group_1/inner_group_1/LayerNorm_1/",
     "albert.encoder.albert_layer_groups.1.albert_layers.1.full_layer_layer_norm.bias"),
    # every group's second inner layer lacks it: only the inner numbering shows it
    ("re:/inner_group_1/LayerNorm_1/",
     "albert.encoder.albert_layer_groups.0.albert_layers.1.full_layer_layer_norm.bias"),
])
def test_shared_layers_must_be_alike_along_both_numbers(albert, tmp_path, capsys, exclude,
                                                        missing):
    src, _ = albert["pretraining"]
    out = tmp_path / "hf"
    assert main(["convert", str(src), str(out), "--to", "hf", "-q", "--exclude", exclude]) == 2
    err = capsys.readouterr().err
    assert err == f"ckpt: error: albert: {missing} is missing, while other layers have it\n"
    assert not out.exists()
