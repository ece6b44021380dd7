"""``--from hf``: a Hugging Face directory back under the original release's names, so old
TensorFlow code can restore fine-tuned weights; proven by TensorFlow reading the bundle and by
directories transformers 5 saved itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import converter
from converter.cli import main
from converter.tensor import as_checkpoint
from tests.helpers import assert_same, bert_tensors

H, LAYERS, INTER, VOCAB = 16, 2, 24, 40
CONFIG = {"hidden_size": H, "num_hidden_layers": LAYERS, "num_attention_heads": 2,
          "intermediate_size": INTER, "vocab_size": VOCAB, "max_position_embeddings": 32,
          "type_vocab_size": 2}


def _release(root: Path, heads: bool = True) -> Path:
    t = bert_tensors(hidden=H, layers=LAYERS, inter=INTER, vocab=VOCAB, positions=32,
                     heads="pretraining" if heads else "none", seed=7, scale=1.0, slots=False)
    root.mkdir(parents=True)
    converter.write(t, root / "bert_model.ckpt")
    (root / "bert_config.json").write_text(json.dumps(CONFIG))
    return root / "bert_model.ckpt"


@pytest.fixture
def hf_dir(tmp_path) -> tuple[Path, Path]:
    src = _release(tmp_path / "release")
    converter.convert(src, tmp_path / "hf", to="hf").close()
    return src, tmp_path / "hf"


def test_back_to_googles_names_bit_exact_and_tensorflow_reads_it(hf_dir, tmp_path, tf):
    src, hf = hf_dir
    assert main(["convert", str(hf), str(tmp_path / "back" / "bert_model.ckpt"),
                 "--from", "hf", "-q"]) == 0
    with converter.read(src) as a, converter.read(tmp_path / "back" / "bert_model.ckpt") as b:
        assert sorted(a) == sorted(b)
        for name in a:
            assert_same(b[name].read(), a[name].read())
    reader = tf.train.load_checkpoint(str(tmp_path / "back" / "bert_model.ckpt"))
    with converter.read(src) as a:
        for name in a:
            assert_same(reader.get_tensor(name), a[name].read())


@pytest.mark.parametrize("cls, heads", [("BertForPreTraining", True), ("BertModel", False)])
def test_a_directory_transformers_saved_goes_back(tmp_path, cls, heads):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    src = _release(tmp_path / "release", heads=heads)
    converter.convert(src, tmp_path / "ours", to="hf").close()
    getattr(transformers, cls).from_pretrained(tmp_path / "ours").save_pretrained(
        tmp_path / "saved")
    converter.convert(tmp_path / "saved", tmp_path / "back.ckpt", source_format="hf").close()
    with converter.read(src) as a, converter.read(tmp_path / "back.ckpt") as b:
        assert sorted(a) == sorted(b)
        for name in a:
            assert_same(b[name].read(), a[name].read())


def test_read_as_safetensors_keeps_transformers_names(hf_dir):
    _, hf = hf_dir
    with converter.read(hf) as ckpt:
        assert "bert.encoder.layer.0.attention.self.query.weight" in ckpt
    with converter.read(hf, format="hf") as ckpt:
        assert "bert/encoder/layer_0/attention/self/query/kernel" in ckpt
        assert ckpt.metadata == {} and ckpt.source.format == "hf"


def test_a_tensor_without_an_original_name_is_refused(hf_dir, tmp_path, capsys):
    _, hf = hf_dir
    weights = load_file(hf / "model.safetensors")
    weights["bert.encoder.layer.0.attention.self.extra.weight"] = np.ones((H, H), np.float32)
    save_file(weights, hf / "model.safetensors", metadata={"format": "pt"})
    assert main(["convert", str(hf), str(tmp_path / "back.ckpt"), "--from", "hf"]) == 2
    err = capsys.readouterr().err
    assert "hf: 'bert.encoder.layer.0.attention.self.extra.weight' has no place in bert's " \
           "BertForPreTraining, so it has no original name" in err
    assert not list(tmp_path.glob("back.ckpt*"))


@pytest.mark.parametrize("change, message", [
    ({"model_type": "flaubert"}, "no model family makes model_type 'flaubert'"),
    ({"architectures": ["BertForQuestionAnswering"]},
     "bert has no way back from BertForQuestionAnswering (known: "),
])
def test_a_config_the_families_do_not_know_is_refused(hf_dir, tmp_path, capsys, change,
                                                      message):
    _, hf = hf_dir
    config = json.loads((hf / "config.json").read_text())
    (hf / "config.json").write_text(json.dumps({**config, **change}))
    assert main(["convert", str(hf), str(tmp_path / "back.ckpt"), "--from", "hf"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_reverse_checks_the_names_round_trip_not_just_rename():
    from converter.hf import original

    weights = {"bert.embeddings.word_embeddings.weight": np.zeros((VOCAB, H), np.float32)}
    with pytest.raises(converter.errors.UsageError,
                       match="the checkpoint has nothing for .*position_embeddings"):
        original(as_checkpoint(weights), {"model_type": "bert", "architectures": ["BertModel"]})


def test_a_tied_copy_that_differs_is_refused_not_dropped(hf_dir, tmp_path, capsys):
    _, hf = hf_dir
    weights = load_file(hf / "model.safetensors")
    weights["cls.predictions.decoder.weight"] = weights[
        "bert.embeddings.word_embeddings.weight"] + 1
    save_file(weights, hf / "model.safetensors", metadata={"format": "pt"})
    assert main(["convert", str(hf), str(tmp_path / "back.ckpt"), "--from", "hf"]) == 2
    assert "cls.predictions.decoder.weight differs from bert.embeddings.word_embeddings.weight, " \
           "so the model is not the BertForPreTraining whose weights are tied" in \
        capsys.readouterr().err


@pytest.mark.parametrize("case, logits", [("t5", False), ("t5_v1_1", True)])
def test_t5_saved_by_transformers_goes_back_to_its_variant(tmp_path, case, logits):
    """transformers 5 saves T5 v1.1 with tie_word_embeddings true and its own lm_head: the
    tensors, not the config, tell the variants apart."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    src = Path(__file__).resolve().parent / "data" / "hf" / case / "model.ckpt"
    converter.convert(src, tmp_path / "ours", to="hf").close()
    transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "ours").save_pretrained(
        tmp_path / "saved")
    with converter.read(tmp_path / "saved", format="hf") as back, converter.read(src) as release:
        assert ("decoder/logits/kernel" in back) is logits
        for name, tensor in back.items():
            assert_same(tensor.read(), release[name].read().astype(np.float32))
