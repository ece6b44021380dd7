"""``--to hf``: the directory, its config and its refusals, proven by transformers 5 loading it.

The BERT checkpoints here carry Google's names (modeling.py's variables, AdamWeightDecay's
``adam_m``/``adam_v`` slots, ``global_step``); the family files are checked against
transformers 4.57's own loaders in test_hf_reference.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import converter
from converter.cli import main
from converter.errors import UsageError
from converter.hf import families, prepare
from tests.helpers import bert_tensors

H, LAYERS, INTER, VOCAB, POS, TYPES, HEADS = 32, 2, 37, 99, 64, 2, 4


def _bert(heads: str = "pretraining") -> dict[str, np.ndarray]:
    return bert_tensors(hidden=H, layers=LAYERS, inter=INTER, vocab=VOCAB, positions=POS,
                        heads=heads)


CONFIG = {"hidden_size": H, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
          "intermediate_size": INTER, "vocab_size": VOCAB, "max_position_embeddings": POS,
          "type_vocab_size": TYPES, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
          "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02}


def _release(root: Path, heads: str = "pretraining", config: dict | None = CONFIG) -> Path:
    """A directory laid out as Google's BERT zips are: bert_model.ckpt.*, bert_config.json,
    vocab.txt."""
    root.mkdir(parents=True, exist_ok=True)
    converter.write(_bert(heads), root / "bert_model.ckpt", format="tf")
    if config is not None:
        (root / "bert_config.json").write_text(json.dumps(config))
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(VOCAB - 5)]
    (root / "vocab.txt").write_text("\n".join(words) + "\n")
    return root / "bert_model.ckpt"


@pytest.fixture(scope="module")
def transformers():
    pytest.importorskip("torch")
    return pytest.importorskip("transformers")


def _load(transformers, cls: str, out: Path):
    model, info = getattr(transformers, cls).from_pretrained(out, output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}, info
    return {k: v.numpy() for k, v in model.state_dict().items()}


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def test_bert_pretraining_loads_with_no_missing_or_unexpected_key(tmp_path, transformers,
                                                                  capsys):
    src = _release(tmp_path / "release")
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "hf"]) == 0
    assert "dropped 93" in capsys.readouterr().err  # 46 tensors' two slots, global_step
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt"]
    state = _load(transformers, "BertForPreTraining", tmp_path / "out")
    tf = _bert()
    _same(state["bert.encoder.layer.1.attention.self.query.weight"],
          tf["bert/encoder/layer_1/attention/self/query/kernel"].T)
    _same(state["bert.encoder.layer.0.output.LayerNorm.weight"],
          tf["bert/encoder/layer_0/output/LayerNorm/gamma"])
    _same(state["cls.seq_relationship.weight"], tf["cls/seq_relationship/output_weights"])
    # transformers ties the decoder to the embeddings and its bias to cls.predictions.bias.
    _same(state["cls.predictions.decoder.weight"], tf["bert/embeddings/word_embeddings"])
    _same(state["cls.predictions.decoder.bias"], tf["cls/predictions/output_bias"])
    with converter.read(tmp_path / "out" / "model.safetensors") as written:
        assert written.metadata == {"format": "pt"}
        assert not [n for n in written if "adam" in n or "global_step" in n]
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architectures"] == ["BertForPreTraining"] and config["model_type"] == "bert"
    assert (config["num_attention_heads"], config["intermediate_size"]) == (HEADS, INTER)


def test_bert_classifier_head_becomes_sequence_classification(tmp_path, transformers):
    src = _release(tmp_path / "release", heads="classifier")
    converter.convert(src, tmp_path / "out", to="hf").close()
    state = _load(transformers, "BertForSequenceClassification", tmp_path / "out")
    _same(state["classifier.weight"], _bert("classifier")["output_weights"])
    assert json.loads((tmp_path / "out" / "config.json").read_text())["num_labels"] == 3
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert model.config.num_labels == 3


def test_encoder_alone_becomes_bert_model(tmp_path, transformers):
    src = _release(tmp_path / "release", heads="none")
    converter.convert(src, tmp_path / "out", to="hf").close()
    state = _load(transformers, "BertModel", tmp_path / "out")
    _same(state["pooler.dense.weight"], _bert("none")["bert/pooler/dense/kernel"].T)


def test_sharded_output_has_transformers_names_and_loads(tmp_path, transformers):
    src = _release(tmp_path / "release")
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "hf",
                 "--max-shard-size", "40KB", "-q"]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    shards = [n for n in names if n.startswith("model-")]
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    assert index["metadata"]["total_size"] == sum(
        t.nbytes for t in converter.read(tmp_path / "out").values())
    for shard in shards:
        assert (tmp_path / "out" / shard).stat().st_size <= 40_000 + 8_192  # + its header
    _load(transformers, "BertForPreTraining", tmp_path / "out")


def test_dry_run_prints_the_table_and_writes_nothing(tmp_path, capsys):
    src = _release(tmp_path / "release")
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "hf", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("family bert: BertForPreTraining, config from ")
    assert re.search(r"\n  bert/encoder/layer_0/attention/self/query/kernel +-> "
                     r"bert\.encoder\.layer\.0\.attention\.self\.query\.weight  "
                     r"\(transpose \[1, 0\]\)\n", out)
    assert "dropped 93:" in out and "tokenizer vocab.txt -> vocab.txt" in out
    assert not (tmp_path / "out").exists()
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "hf", "--dry-run",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["class"] == "BertForPreTraining" and len(doc["dropped"]) == 93
    assert doc["dropped"][0] == {"name": "bert/embeddings/word_embeddings/adam_m",
                                 "rule": "rule 1 (preset drop-optimizer)"}
    query = next(t for t in doc["tensors"]
                 if t["name"] == "bert.encoder.layer.0.attention.self.query.weight")
    assert query == {"name": "bert.encoder.layer.0.attention.self.query.weight",
                     "source": ["bert/encoder/layer_0/attention/self/query/kernel"],
                     "shape": [H, H], "dtype": "float32", "transform": "transpose [1, 0]"}


def test_config_from_flag_when_not_beside(tmp_path):
    src = _release(tmp_path / "release", config=None)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(CONFIG))
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "hf",
                 "--config", str(elsewhere), "-q"]) == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["hidden_size"] == H


@pytest.mark.parametrize("config, message", [
    (None, "bert: no config gives num_attention_heads, which the shapes do not settle; "
           "pass --config FILE with it"),
    ({**CONFIG, "hidden_size": 768},
     "bert_config.json: hidden_size is 768, but the checkpoint's shapes say 32"),
    ({**CONFIG, "num_hidden_layers": 12},
     "bert_config.json: num_hidden_layers is 12, but the checkpoint's shapes say 2"),
])
def test_config_that_does_not_fit_is_refused_in_one_line(tmp_path, capsys, config, message):
    src = _release(tmp_path / "release", config=config)
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "hf"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_unknown_or_wrong_family_is_refused(tmp_path, capsys):
    src = _release(tmp_path / "release")
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "hf",
                 "--family", "nope"]) == 2
    assert "unknown model family 'nope' (known: " in capsys.readouterr().err
    other = tmp_path / "other.safetensors"
    converter.write({"dense/kernel": np.ones((2, 2), np.float32)}, other)
    assert main(["convert", str(other), str(tmp_path / "out"), "--to", "hf"]) == 2
    assert "cannot tell the model family from the tensor names (dense/kernel, ...)" in \
        capsys.readouterr().err
    assert main(["convert", str(other), str(tmp_path / "out"), "--to", "hf",
                 "--family", "bert"]) == 2
    assert "not a checkpoint of the bert family" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_tensor_with_no_place_in_the_model_is_refused(tmp_path, capsys):
    tensors = _bert()
    tensors["bert/encoder/layer_0/attention/self/extra/kernel"] = np.ones((H, H), np.float32)
    converter.write(tensors, tmp_path / "m.ckpt")
    (tmp_path / "bert_config.json").write_text(json.dumps(CONFIG))
    assert main(["convert", str(tmp_path / "m.ckpt"), str(tmp_path / "out"), "--to", "hf"]) == 2
    err = capsys.readouterr().err
    assert "'bert/encoder/layer_0/attention/self/extra/kernel' has no place in " \
           "BertForPreTraining" in err
    # The user's own rules run first: excluding it makes the rest convert.
    assert main(["convert", str(tmp_path / "m.ckpt"), str(tmp_path / "out"), "--to", "hf",
                 "--exclude", "*/extra/*", "-q"]) == 0


def test_a_layer_short_of_a_tensor_is_refused(tmp_path, capsys):
    tensors = _bert()
    del tensors["bert/encoder/layer_1/intermediate/dense/bias"]
    converter.write(tensors, tmp_path / "m.ckpt")
    (tmp_path / "bert_config.json").write_text(json.dumps(CONFIG))
    assert main(["convert", str(tmp_path / "m.ckpt"), str(tmp_path / "out"), "--to", "hf"]) == 2
    assert "bert.encoder.layer.1.intermediate.dense.bias is missing, while other layers " \
           "have it" in capsys.readouterr().err


def test_existing_output_needs_force(tmp_path, capsys):
    src = _release(tmp_path / "release")
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "hf", "-q"]) == 0
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "hf"]) == 2
    assert "already exists (use --force to overwrite)" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "hf", "--force", "-q"]) == 0


def test_family_flags_are_for_hf_only(tmp_path, capsys):
    src = _release(tmp_path / "release")
    assert main(["convert", str(src), str(tmp_path / "x.npz"), "--family", "bert"]) == 2
    assert "--family is for --to hf or --from hf only" in capsys.readouterr().err


def test_families_are_listed(capsys):
    assert main(["formats", "--families"]) == 0
    out = capsys.readouterr().out
    for fam in families().values():
        assert fam.name in out
        assert all(a.cls in out for a in fam.architectures)


def test_prepare_detects_the_family_and_reports_what_it_drops(tmp_path):
    src = _release(tmp_path / "release")
    with converter.read(src) as ckpt:
        prepared = prepare(ckpt)
        assert (prepared.family.name, prepared.architecture.cls) == ("bert", "BertForPreTraining")
        assert "global_step" in prepared.dropped and len(prepared.checkpoint) == 46
        with pytest.raises(UsageError, match="unknown model family"):
            prepare(ckpt, family="gpt-17")


def test_a_head_whose_shapes_do_not_fit_is_refused(tmp_path, capsys):
    tensors = _bert("classifier")
    tensors["output_weights"] = np.ones((3, H + 1), np.float32)  # a head of another model
    converter.write(tensors, tmp_path / "m.ckpt")
    (tmp_path / "bert_config.json").write_text(json.dumps(CONFIG))
    assert main(["convert", str(tmp_path / "m.ckpt"), str(tmp_path / "out"), "--to", "hf"]) == 2
    err = capsys.readouterr().err
    assert "'output_weights' becomes classifier.weight of shape [3, 33], but " \
           "BertForSequenceClassification with num_labels=3, hidden_size=32 needs [3, 32]" in err
    assert not (tmp_path / "out").exists()


def test_a_layer_of_another_width_is_refused(tmp_path, capsys):
    tensors = _bert()
    tensors["bert/encoder/layer_1/intermediate/dense/kernel"] = np.ones((H, 40), np.float32)
    converter.write(tensors, tmp_path / "m.ckpt")
    (tmp_path / "bert_config.json").write_text(json.dumps(CONFIG))
    assert main(["convert", str(tmp_path / "m.ckpt"), str(tmp_path / "out"), "--to", "hf"]) == 2
    assert "bert.encoder.layer.1.intermediate.dense.weight of shape [40, 32], but " \
           "BertForPreTraining with intermediate_size=37, hidden_size=32 needs [37, 32]" in \
        capsys.readouterr().err


@pytest.mark.parametrize("cased", [False, True])
def test_a_cased_vocabulary_makes_a_cased_tokenizer(tmp_path, transformers, cased):
    """transformers' BertTokenizer lower-cases by default: a cased release (upper-case pieces
    in vocab.txt, as Google's cased models have) would be tokenized wrong without saying so."""
    src = _release(tmp_path / "release")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]
    words += ["Hello"] if cased else []
    words += [f"w{i}" for i in range(VOCAB - len(words))]
    (tmp_path / "release" / "vocab.txt").write_text("\n".join(words) + "\n")
    converter.convert(src, tmp_path / "out", to="hf").close()
    config = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert config == {"do_lower_case": not cased}
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    ids = tok("Hello world", add_special_tokens=False)["input_ids"]
    assert ids == [words.index("Hello" if cased else "hello"), words.index("world")]
