"""What a new user runs into with --to hf / --from hf: sizes given as text in Python, an output
that is a file, a wrong --family, a family with no way back, a release without its tokenizer,
and Mesh TensorFlow's Adafactor state, which --preset drop-optimizer drops like any other."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

import converter
from converter.cli import main
from converter.errors import ConverterWarning, UsageError

DATA = Path(__file__).resolve().parent / "data" / "hf"


def _case(tmp_path: Path, case: str) -> Path:
    shutil.copytree(DATA / case, tmp_path / case)
    return tmp_path / case / "model.ckpt"


def test_a_size_as_text_works_in_python_and_a_bad_one_is_a_usage_error(tmp_path):
    src = _case(tmp_path, "bert_pretraining")
    converter.convert(src, tmp_path / "out", to="hf", max_shard_size="40KB").close()
    assert len(list((tmp_path / "out").glob("model-*-of-*.safetensors"))) > 1
    converter.convert(src, tmp_path / "x.safetensors", max_shard_size="40KB").close()
    assert (tmp_path / "x.safetensors.index.json").is_file()
    with pytest.raises(UsageError, match=r"max_shard_size=: not a size: 'lots'"):
        converter.convert(src, tmp_path / "y.safetensors", max_shard_size="lots")


def test_an_output_that_is_a_file_is_refused_naming_it(tmp_path, capsys):
    src = _case(tmp_path, "bert_pretraining")
    (tmp_path / "afile").write_text("keep me")
    assert main(["convert", str(src), str(tmp_path / "afile"), "--to", "hf"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'afile'}: exists and is not a directory" in err and ".tmp-" not in err
    assert (tmp_path / "afile").read_text() == "keep me"


def test_a_wrong_family_names_the_file_and_what_it_looks_like(tmp_path, capsys):
    src = _case(tmp_path, "gpt2")
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "hf",
                 "--family", "bert"]) == 2
    err = capsys.readouterr().err
    assert f"{src}: not a checkpoint of the bert family" in err
    assert err.rstrip().endswith("; it looks like gpt2")


def test_a_family_without_a_way_back_says_so(tmp_path, capsys):
    src = _case(tmp_path, "tf_model_h5_bert").with_name("tf_model.h5")
    converter.convert(src, tmp_path / "hf", to="hf").close()
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "back.ckpt"), "--from", "hf",
                 "--family", "tf-h5"]) == 2
    assert "the tf-h5 family has no way back to the original names; read it as safetensors" \
        in capsys.readouterr().err


def test_a_release_without_its_tokenizer_file_is_warned_about(tmp_path):
    src = _case(tmp_path, "t5")
    (src.parent / "spiece.model").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converter.convert(src, tmp_path / "out", to="hf").close()
    said = [str(w.message) for w in caught if issubclass(w.category, ConverterWarning)]
    assert any("t5: no tokenizer file (spiece.model or sentencepiece.model)" in m for m in said)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "t5"


def test_drop_optimizer_drops_adafactor_slots(tmp_path):
    src = _case(tmp_path, "t5_v1_1")
    with converter.read(src) as ckpt:
        slots = [n for n in ckpt if "_slot_" in n]
        assert slots and {ckpt[n].kind for n in slots} == {"slot"}
    out = converter.convert(src, tmp_path / "w.safetensors",
                            rules=converter.rules.Rules().preset("drop-optimizer"))
    assert not [n for n in out if "_slot_" in n or n == "global_step"]
    out.close()


def test_force_over_another_familys_output_leaves_none_of_its_tokenizer(tmp_path):
    converter.convert(_case(tmp_path, "bert_pretraining"), tmp_path / "out", to="hf").close()
    assert (tmp_path / "out" / "vocab.txt").is_file()
    converter.convert(_case(tmp_path, "gpt2"), tmp_path / "out", to="hf", force=True).close()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "config.json", "merges.txt", "model.safetensors", "vocab.json"]


def test_every_tokenizer_file_a_family_writes_is_swept_on_rewrite():
    from converter.hf import families
    from converter.hf.writer import TOKENIZER_FILES

    for fam in families().values():
        for tok in fam.tokenizers:
            assert tok.to in TOKENIZER_FILES, (fam.name, tok.to)


def test_convert_returns_what_it_wrote(tmp_path):
    with converter.convert(_case(tmp_path, "bert_pretraining"), tmp_path / "out",
                           to="hf") as written:
        assert "bert.encoder.layer.0.attention.self.query.weight" in written
        assert not [n for n in written if "adam" in n or n == "global_step"]
        assert written.metadata == {"format": "pt"}
