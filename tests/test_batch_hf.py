"""``ckpt batch --to hf``: a tree of releases into Hugging Face directories, with the family and
the config given once for all items."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from converter.cli import main

DATA = Path(__file__).resolve().parent / "data" / "hf" / "bert_pretraining"


def test_batch_converts_releases_with_one_config_for_all(tmp_path, monkeypatch, capsys):
    for run in ("a", "b"):
        (tmp_path / "runs" / run).mkdir(parents=True)
        for f in DATA.glob("model.ckpt.*"):
            shutil.copy(f, tmp_path / "runs" / run)
    shutil.copy(DATA / "bert_config.json", tmp_path / "shared_config.json")
    monkeypatch.chdir(tmp_path)
    assert main(["batch", "runs", "--to", "hf", "--out", "conv", "--family", "bert",
                 "--config", "shared_config.json", "-q", "--jobs", "1"]) == 0
    for run in ("a", "b"):
        out = tmp_path / "conv" / "runs" / run / "model"
        config = json.loads((out / "config.json").read_text())
        assert config["architectures"] == ["BertForPreTraining"]
        assert (out / "model.safetensors").is_file()


def test_family_and_config_are_for_hf_only(tmp_path, capsys):
    assert main(["batch", str(tmp_path), "--to", "npz", "--out", str(tmp_path / "o"),
                 "--family", "bert"]) == 2
    assert "--family is for --to hf only" in capsys.readouterr().err
