"""``--to hf`` for TF Model Garden's BERT encoder (family ``bert-tf2``): TF2 object-based
checkpoints, keys ``<root>/layer_with_weights-N/.../.ATTRIBUTES/VARIABLE_VALUE``.

Two anchors we did not write:

- checkpoints TensorFlow wrote at the object paths transformers 4.57's
  convert_bert_original_tf2_checkpoint_to_pytorch.py walks (tests/tf2_bert_writer.py; with a
  Keras 2 Adam's slots), each tensor compared bit for bit with that script's mapping (transcribed
  in ``reference_state``; the script's own output on such a checkpoint is the ``bert_tf2`` case
  of test_hf_reference.py);
- a checkpoint tf-models-official's own ``BertEncoder`` wrote (tests/data/hf/
  model_garden_bert_encoder, scripts/hf_reference/make_model_garden_bert.py), whose outputs
  transformers 5 must reproduce from our directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

import converter
from converter.cli import main
from converter.errors import UsageError
from converter.hf.family import detect, get
from tests.helpers import HERE, tf_available

V, H, HEADS, FF, P, T, LAYERS = 40, 16, 4, 24, 20, 2, 3
D = H // HEADS
GARDEN = HERE / "data" / "hf" / "model_garden_bert_encoder"
CONFIG = {  # Google's bert_config.json, as Model Garden ships it beside its checkpoints
    "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "hidden_size": H, "initializer_range": 0.02, "intermediate_size": FF,
    "max_position_embeddings": P, "num_attention_heads": HEADS, "num_hidden_layers": LAYERS,
    "type_vocab_size": T, "vocab_size": V,
}


def _encoder() -> dict[str, tuple[int, ...]]:
    """official/nlp/bert's encoder: its layers with weights, as the 4.57 script reads them."""
    shapes: dict[str, tuple[int, ...]] = {
        "layer_with_weights-0/embeddings": (V, H),
        "layer_with_weights-1/embeddings": (P, H),
        "layer_with_weights-2/embeddings": (T, H),
        "layer_with_weights-3/gamma": (H,), "layer_with_weights-3/beta": (H,),
        f"layer_with_weights-{4 + LAYERS}/kernel": (H, H),
        f"layer_with_weights-{4 + LAYERS}/bias": (H,),
    }
    for i in range(LAYERS):
        at = f"layer_with_weights-{4 + i}/"
        for part in ("_query_dense", "_key_dense", "_value_dense"):
            shapes[f"{at}_attention_layer/{part}/kernel"] = (H, HEADS, D)
            shapes[f"{at}_attention_layer/{part}/bias"] = (HEADS, D)
        shapes[f"{at}_attention_output_dense/kernel"] = (HEADS, D, H)
        shapes[f"{at}_attention_output_dense/bias"] = (H,)
        for norm in ("_attention_layer_norm", "_output_layer_norm"):
            shapes[f"{at}{norm}/gamma"] = shapes[f"{at}{norm}/beta"] = (H,)
        shapes[f"{at}_intermediate_dense/kernel"] = (H, FF)
        shapes[f"{at}_intermediate_dense/bias"] = (FF,)
        shapes[f"{at}_output_dense/kernel"] = (FF, H)
        shapes[f"{at}_output_dense/bias"] = (H,)
    return shapes


CASES = {  # name: (tensors, root object, optimizer, bert_config.json beside it)
    "keras_bert": (_encoder(), "model", True, True),
    "rootless": (_encoder(), "", False, False),
    "masked_lm_head": ({**_encoder(), "masked_lm/dense/kernel": (H, H)}, "model", False, True),
    "layer_missing": ({k: s for k, s in _encoder().items()
                       if k != "layer_with_weights-5/_intermediate_dense/bias"}, "model", False,
                      True),
}


@pytest.fixture(scope="session")
def tf2(tmp_path_factory) -> dict[str, tuple]:
    """Each case's checkpoint prefix and the arrays TensorFlow saved in it (by object path)."""
    if not tf_available():
        pytest.skip("TensorFlow is not installed (pip install 'ckpt-converter[tf]')")
    root = tmp_path_factory.mktemp("bert_tf2")
    rng = np.random.default_rng(5)
    jobs, found = [], {}
    for case, (shapes, top, optimizer, beside) in CASES.items():
        d = root / case
        d.mkdir()
        arrays = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
        np.savez(d / "arrays.npz", **arrays)
        if beside:
            (d / "bert_config.json").write_text(json.dumps(CONFIG))
            (d / "vocab.txt").write_text("\n".join(f"w{i}" for i in range(V)) + "\n")
        jobs.append({"npz": str(d / "arrays.npz"), "prefix": str(d / "bert_model.ckpt"),
                     "root": top, "optimizer": optimizer})
        found[case] = (d / "bert_model.ckpt", arrays)
    (root / "jobs.json").write_text(json.dumps(jobs))
    subprocess.run([sys.executable, str(HERE / "tf2_bert_writer.py"), str(root / "jobs.json")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return found


def reference_state(arrays: dict[str, np.ndarray], layers: int) -> dict[str, np.ndarray]:
    """convert_bert_original_tf2_checkpoint_to_pytorch.py's load_tf2_weights_in_bert,
    transcribed: layer 0-2 the embeddings, 3 their LayerNorm, 4..4+L-1 the blocks, 4+L the
    pooler; q/k/v and the attention output reshaped to the PyTorch shape, kernels transposed."""
    parts = {"_attention_layer": "attention.self", "_attention_layer_norm":
             "attention.output.LayerNorm", "_attention_output_dense": "attention.output.dense",
             "_output_dense": "output.dense", "_output_layer_norm": "output.LayerNorm",
             "_key_dense": "key", "_query_dense": "query", "_value_dense": "value",
             "_intermediate_dense": "intermediate.dense", "bias": "bias", "beta": "bias",
             "kernel": "weight", "gamma": "weight"}
    out = {}
    for path, array in arrays.items():
        head, *rest = path.split("/")
        n = int(head.split("-")[-1])
        if n <= 2:
            trace = ["embeddings", ("word", "position", "token_type")[n] + "_embeddings",
                     "weight"]
        else:
            trace = (["embeddings.LayerNorm"] if n == 3 else
                     [f"encoder.layer.{n - 4}"] if n < layers + 4 else ["pooler.dense"])
            trace += [parts[m] for m in rest]
        name = ".".join(trace)
        if ".attention.self." in name or name.endswith("attention.output.dense.weight"):
            array = array.reshape((H, H) if name.endswith("weight") else (H,))
        if path.endswith("kernel"):
            array = array.T
        out[name] = np.ascontiguousarray(array)
    return out


def _check_loads(out, cls: str = "BertModel"):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    model, info = getattr(transformers, cls).from_pretrained(out, output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}, info
    return model


def _assert_reference(out, arrays: dict[str, np.ndarray]) -> None:
    want = reference_state(arrays, LAYERS)
    with converter.read(out) as ours:
        assert sorted(ours) == sorted(want)
        for name, expected in want.items():
            got = ours[name].read()
            assert got.dtype == expected.dtype and got.shape == expected.shape, name
            assert got.tobytes() == expected.tobytes(), name


def test_keras_bert_checkpoint_with_the_cli(tf2, tmp_path, capsys):
    src, arrays = tf2["keras_bert"]
    out = tmp_path / "hf"
    assert main(["convert", str(src), str(out), "--to", "hf"]) == 0
    err = capsys.readouterr().err
    assert "bert-tf2: BertModel" in err and "object graph" not in err, err
    _assert_reference(out, arrays)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertModel"] and config["model_type"] == "bert"
    for key in ("hidden_size", "intermediate_size", "max_position_embeddings",
                "num_attention_heads", "num_hidden_layers", "type_vocab_size", "vocab_size"):
        assert config[key] == CONFIG[key], key
    assert (out / "vocab.txt").read_text() == (src.parent / "vocab.txt").read_text()
    _check_loads(out)


def test_rootless_checkpoint_with_the_api_settles_the_config_from_the_shapes(tf2, tmp_path):
    # No bert_config.json: the heads are the EinsumDense kernels' axis 1.
    src, arrays = tf2["rootless"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no word of the object graph, which hf has no use for
        warnings.filterwarnings("ignore", "bert-tf2: no tokenizer file")  # none written here
        converter.convert(src, tmp_path / "hf", to="hf").close()
    _assert_reference(tmp_path / "hf", arrays)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (config["num_attention_heads"], config["num_hidden_layers"],
            config["intermediate_size"], config["max_position_embeddings"]) == (HEADS, LAYERS,
                                                                                 FF, P)
    _check_loads(tmp_path / "hf")


def test_model_garden_bert_encoder_reproduces_its_outputs(tmp_path):
    """tf-models-official's BertEncoder (``encoder/`` root, the attention output inside
    MultiHeadAttention): transformers 5 computes what Model Garden computed."""
    torch = pytest.importorskip("torch")
    expected = json.loads((GARDEN / "expected.json").read_text())
    with converter.read(GARDEN / "bert_model.ckpt") as ckpt:
        assert sorted(ckpt) == expected["keys"]
        assert detect(list(ckpt)).name == "bert-tf2"
    converter.convert(GARDEN / "bert_model.ckpt", tmp_path / "hf", to="hf").close()
    model = _check_loads(tmp_path / "hf")
    model.eval()
    with torch.no_grad():
        result = model(**{k: torch.tensor(v) for k, v in expected["inputs"].items()})
    for file, attr in expected["outputs"].items():
        np.testing.assert_allclose(getattr(result, attr).numpy(), np.load(GARDEN / file),
                                   rtol=0, atol=1e-5)


def test_detection_does_not_collide_with_bert_or_tf_h5(tf2):
    src, _ = tf2["keras_bert"]
    with converter.read(src) as ckpt:
        names = list(ckpt)
    assert detect(names).name == "bert-tf2"
    assert not get("bert").matches(names) and not get("tf-h5").matches(names)
    data = HERE / "data" / "hf"
    for case, family in (("bert_pretraining", "bert"), ("tf_model_h5_bert", "tf-h5")):
        path = data / case / ("tf_model.h5" if family == "tf-h5" else "model.ckpt")
        with converter.read(path) as ckpt:
            assert detect(list(ckpt)).name == family
            assert not get("bert-tf2").matches(list(ckpt))


@pytest.mark.parametrize("case, args, message", [
    ("masked_lm_head", [], "bert-tf2: 'model/masked_lm/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE' "
                           "has no place in BertModel"),
    ("layer_missing", [], "bert-tf2: encoder.layer.1.intermediate.dense.bias is missing"),
    ("keras_bert", ["--family", "bert"], "not a checkpoint of the bert family"),
])
def test_refusals_are_one_line_and_write_nothing(tf2, tmp_path, capsys, case, args, message):
    src, _ = tf2[case]
    out = tmp_path / "hf"
    assert main(["convert", str(src), str(out), "--to", "hf", "-q", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_config_that_disagrees_with_the_shapes(tf2, tmp_path, capsys):
    src, _ = tf2["keras_bert"]
    wrong = tmp_path / "bert_config.json"
    wrong.write_text(json.dumps({**CONFIG, "num_attention_heads": 2}))
    assert main(["convert", str(src), str(tmp_path / "hf"), "--to", "hf", "-q",
                 "--config", str(wrong)]) == 2
    err = capsys.readouterr().err
    assert "num_attention_heads is 2" in err and err.count("\n") == 1, err


def test_the_family_is_listed_and_refuses_nothing_else_silently():
    fam = get("bert-tf2")
    assert fam.model_type == "bert" and fam.reverse_for(fam.architectures[0]) is None
    with pytest.raises(UsageError, match="not a checkpoint of the bert-tf2 family"):
        from converter.hf import prepare

        prepare(converter.read(HERE / "data" / "hf" / "bert_pretraining" / "model.ckpt"),
                family="bert-tf2")
