"""config.json for --to hf: a config transformers would reject, or that contradicts the tensors,
is refused before anything is written; what the release's config says is kept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import converter
from converter.cli import main
from converter.errors import UsageError

DATA = Path(__file__).resolve().parent / "data" / "hf"


def _case(tmp_path: Path, case: str) -> Path:
    root = tmp_path / case
    shutil.copytree(DATA / case, root)
    return root


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _refused(capsys, src: Path, out: Path, message: str, *args: str) -> None:
    assert main(["convert", str(src), str(out), "--to", "hf", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("change, message", [
    ({"num_attention_heads": 5}, "num_attention_heads = 5 does not divide hidden_size = 32"),
    ({"num_attention_heads": "4"}, "num_attention_heads must be an integer, not '4'"),
    ({"hidden_act": "swish2"},
     "hidden_act 'swish2' is not one the bert release knows (gelu, relu, tanh, linear)"),
])
def test_a_bert_config_transformers_would_reject_is_refused(tmp_path, capsys, change,
                                                            message):
    root = _case(tmp_path, "bert_pretraining")
    _edit_json(root / "bert_config.json", **change)
    _refused(capsys, root / "model.ckpt", tmp_path / "out", message)


def test_gpt2_heads_must_divide_the_width_and_the_end_token_is_the_last_id(tmp_path, capsys):
    root = _case(tmp_path, "gpt2")
    converter.convert(root / "model.ckpt", tmp_path / "ok", to="hf").close()
    config = json.loads((tmp_path / "ok" / "config.json").read_text())
    vocab = json.loads((root / "encoder.json").read_text())
    assert config["bos_token_id"] == config["eos_token_id"] == vocab["<|endoftext|>"] == \
        config["vocab_size"] - 1
    hparams = json.loads((root / "hparams.json").read_text())
    _edit_json(root / "hparams.json", n_head=hparams["n_embd"] + 1)
    _refused(capsys, root / "model.ckpt", tmp_path / "out",
             f"n_head = {hparams['n_embd'] + 1} does not divide n_embd = {hparams['n_embd']}")


def _gin(root: Path, key: str, value: str) -> None:
    gin = root / "operative_config.gin"
    lines = [line for line in gin.read_text().splitlines() if not line.startswith(key + " =")]
    gin.write_text("\n".join([*lines, f"{key} = {value}"]) + "\n")


def test_t5_gin_epsilon_and_gated_activation_are_kept(tmp_path):
    root = _case(tmp_path, "t5_v1_1")
    _gin(root, "layer_norm.epsilon", "1e-03")
    _gin(root, "DenseReluDense.activation", "['relu', 'linear']")
    converter.convert(root / "model.ckpt", tmp_path / "out", to="hf").close()
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (config["layer_norm_epsilon"], config["feed_forward_proj"]) == (1e-3, "gated-relu")


@pytest.mark.parametrize("case, activation, message", [
    ("t5_v1_1", "'relu'",
     "feed_forward_proj is 'relu', but the checkpoint's tensors are those of 'gated-gelu'"),
    ("t5", "['gelu', 'linear']",
     "feed_forward_proj is 'gated-gelu', but the checkpoint's tensors are those of 'relu'"),
    ("t5", "'softsign'", "activation 'softsign' has no transformers equivalent"),
])
def test_t5_gin_activation_that_contradicts_the_tensors_is_refused(tmp_path, capsys, case,
                                                                   activation, message):
    root = _case(tmp_path, case)
    _gin(root, "DenseReluDense.activation", activation)
    _refused(capsys, root / "model.ckpt", tmp_path / "out", message)


def test_python_callers_are_told_the_keyword_not_the_flag(tmp_path):
    root = _case(tmp_path, "bert_pretraining")
    config = json.loads((root / "bert_config.json").read_text())
    del config["num_attention_heads"]
    (root / "bert_config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match=r"pass config= FILE with it") as caught:
        converter.convert(root / "model.ckpt", tmp_path / "out", to="hf")
    assert "--config" not in str(caught.value)
    given = tmp_path / "given.json"
    given.write_text(json.dumps(config))
    with pytest.raises(UsageError, match="given.json does not give num_attention_heads, which "
                                         "the shapes do not settle; add it to that file"):
        converter.convert(root / "model.ckpt", tmp_path / "out", to="hf", config=given)
