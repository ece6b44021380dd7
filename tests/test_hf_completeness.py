"""--to hf never builds a model with keys left at random and never reads the wrong config:
gaps in the numbered blocks, missing biases or pooler, a batch-wide config over an item's own,
archive members without the files beside them, a SavedModel's config and assets; and the way
back keeps an untied output layer that happens to equal the embeddings."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
from safetensors.numpy import load_file, save_file

import converter
from converter.cli import main
from tests.helpers import assert_same

DATA = Path(__file__).resolve().parent / "data" / "hf"
BERT = DATA / "bert_pretraining"


def _release(root: Path, case: str = "bert_pretraining") -> Path:
    shutil.copytree(DATA / case, root)
    return root / "model.ckpt"


@pytest.mark.parametrize("exclude, message", [
    ("re:/pooler/dense/bias$", "bert\\.pooler\\.dense\\.bias"),
    ("re:/attention/self/key/bias$", "attention\\.self\\.(key)\\.bias"),
    ("re:/LayerNorm/beta$", "LayerNorm\\.bias"),
])
def test_a_missing_block_bias_or_pooler_is_refused(tmp_path, capsys, exclude, message):
    src = _release(tmp_path / "release")
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "hf",
                 "--exclude", exclude]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_a_gap_in_the_numbered_blocks_is_refused(tmp_path, capsys):
    src = _release(tmp_path / "release")
    config = json.loads((src.parent / "bert_config.json").read_text())
    del config["num_hidden_layers"]  # nothing but the count of blocks to go by
    (src.parent / "bert_config.json").write_text(json.dumps(config))
    with converter.read(src) as ckpt:
        tensors = {n: t.read() for n, t in ckpt.items() if "/layer_1/" not in n}
        tensors.update({n.replace("/layer_1/", "/layer_2/"): t.read() for n, t in ckpt.items()
                        if "/layer_1/" in n})
    converter.write(tensors, tmp_path / "gap" / "model.ckpt")
    shutil.copy(src.parent / "bert_config.json", tmp_path / "gap")
    assert main(["convert", str(tmp_path / "gap" / "model.ckpt"), str(tmp_path / "out"),
                 "--to", "hf"]) == 2
    assert "bert.encoder.layer.1." in (err := capsys.readouterr().err)
    assert "the checkpoint has blocks 0, 2, not 0 to 2" in err


def test_batch_config_is_only_for_items_without_their_own(tmp_path, monkeypatch):
    for run, own in (("a", True), ("b", False)):
        (tmp_path / "runs" / run).mkdir(parents=True)
        for f in BERT.glob("model.ckpt.*"):
            shutil.copy(f, tmp_path / "runs" / run)
        if own:
            shutil.copy(BERT / "bert_config.json", tmp_path / "runs" / run)
    fallback = json.loads((BERT / "bert_config.json").read_text())
    fallback["num_attention_heads"] = 2  # what the release in a does not say
    (tmp_path / "fallback.json").write_text(json.dumps(fallback))
    monkeypatch.chdir(tmp_path)
    assert main(["batch", "runs", "--to", "hf", "--out", "conv", "--config", "fallback.json",
                 "-q", "--jobs", "1"]) == 0
    heads = {run: json.loads((tmp_path / "conv" / "runs" / run / "model" / "config.json")
                             .read_text())["num_attention_heads"] for run in ("a", "b")}
    assert heads == {"a": 4, "b": 2}


def test_batch_refuses_hf_from_an_archive_member(tmp_path, capsys):
    with tarfile.open(tmp_path / "release.tar.gz", "w:gz") as tar:
        tar.add(BERT, arcname="bert")
    assert main(["batch", str(tmp_path / "release.tar.gz"), "--to", "hf", "--out",
                 str(tmp_path / "conv"), "-q", "--jobs", "1"]) == 1
    assert "--to hf converts a checkpoint with the files beside it; unpack the archive" in \
        capsys.readouterr().err


def test_a_savedmodel_takes_its_config_and_assets_vocabulary(tmp_path):
    sm = tmp_path / "sm"
    (sm / "variables").mkdir(parents=True)
    (sm / "assets").mkdir()
    for f in BERT.glob("model.ckpt.*"):
        shutil.copy(f, sm / "variables" / f.name.replace("model.ckpt", "variables"))
    (sm / "saved_model.pb").write_bytes(b"")
    shutil.copy(BERT / "bert_config.json", sm)
    shutil.copy(BERT / "vocab.txt", sm / "assets")
    converter.convert(sm, tmp_path / "out", to="hf").close()
    assert (tmp_path / "out" / "vocab.txt").read_bytes() == (BERT / "vocab.txt").read_bytes()
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["num_attention_heads"] == json.loads(
        (BERT / "bert_config.json").read_text())["num_attention_heads"]


def test_the_way_back_keeps_an_untied_output_layer_equal_to_the_embeddings(tmp_path):
    src = _release(tmp_path / "release", "t5_v1_1")
    converter.convert(src, tmp_path / "hf", to="hf").close()
    weights = load_file(tmp_path / "hf" / "model.safetensors")
    weights["lm_head.weight"] = weights["shared.weight"].copy()
    save_file(weights, tmp_path / "hf" / "model.safetensors", metadata={"format": "pt"})
    assert json.loads((tmp_path / "hf" / "config.json").read_text())[
        "tie_word_embeddings"] is False
    with converter.read(tmp_path / "hf", format="hf") as back:
        assert "decoder/logits/kernel" in back
        assert_same(back["decoder/logits/kernel"].read(), weights["shared.weight"].T.copy())


def test_mt5_goes_back(tmp_path):
    src = _release(tmp_path / "release", "t5_v1_1")
    converter.convert(src, tmp_path / "hf", to="hf", family="mt5").close()
    with converter.read(tmp_path / "hf", format="hf") as back, converter.read(src) as release:
        kept = sorted(n for n in release if "_slot_" not in n and n != "global_step")
        assert sorted(back) == kept
        for name in kept:
            assert_same(back[name].read(), release[name].read())
