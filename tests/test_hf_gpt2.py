"""``--to hf`` for OpenAI's GPT-2 checkpoints: a TF1 checkpoint written by TensorFlow's own
Saver under the release's names (model/h0/attn/c_attn/w ...), with its hparams.json,
encoder.json and vocab.bpe, becomes a GPT2LMHeadModel that transformers loads without a missing
or unexpected key, with the values transformers 4.x's load_tf_weights_in_gpt2 gave it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import converter
from converter.cli import main
from tests.helpers import assert_same

E, V, C, L, H = 32, 99, 16, 2, 4

# Byte-level BPE vocabulary: the printable ASCII characters, the space marker and four merges.
MERGES = ["h e", "l l", "he ll", "\u0120 w"]
VOCAB = [chr(c) for c in range(ord("!"), ord("~") + 1)] + ["\u0120", "he", "ll", "hell", "\u0120w"]


def release_tensors() -> dict[str, np.ndarray]:
    """The variables of openai/gpt-2's model.py, under its names and shapes."""
    rng = np.random.default_rng(20)
    t = {"model/wte": rng.normal(0, 0.1, (V, E)), "model/wpe": rng.normal(0, 0.1, (C, E)),
         "model/ln_f/g": 1 + rng.normal(0, 0.1, E), "model/ln_f/b": rng.normal(0, 0.1, E)}
    for i in range(L):
        p = f"model/h{i}/"
        for ln in ("ln_1", "ln_2"):
            t[f"{p}{ln}/g"] = 1 + rng.normal(0, 0.1, E)
            t[f"{p}{ln}/b"] = rng.normal(0, 0.1, E)
        for layer, nx, nf in (("attn/c_attn", E, 3 * E), ("attn/c_proj", E, E),
                              ("mlp/c_fc", E, 4 * E), ("mlp/c_proj", 4 * E, E)):
            t[f"{p}{layer}/w"] = rng.normal(0, 0.1, (1, nx, nf))
            t[f"{p}{layer}/b"] = rng.normal(0, 0.1, nf)
    return {k: v.astype(np.float32) for k, v in t.items()}


@pytest.fixture(scope="session")
def gpt2_release(tf, tmp_path_factory) -> Path:
    """A GPT-2 release directory: model.ckpt written by tf.compat.v1.train.Saver, hparams.json,
    encoder.json, vocab.bpe."""
    where = tmp_path_factory.mktemp("gpt2-release")
    tensors = release_tensors()
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.get_variable(name, initializer=value)
                     for name, value in tensors.items()]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(where / "model.ckpt"), write_meta_graph=False)
    (where / "hparams.json").write_text(json.dumps(
        {"n_vocab": V, "n_ctx": C, "n_embd": E, "n_head": H, "n_layer": L}))
    (where / "encoder.json").write_text(json.dumps({tok: i for i, tok in enumerate(VOCAB)}))
    (where / "vocab.bpe").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n",
                                     encoding="utf-8")
    return where


@pytest.fixture(scope="session")
def converted(gpt2_release, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpt2-hf") / "hf"
    converter.convert(str(gpt2_release / "model.ckpt"), str(out), to="hf")
    return out


def reference_logits(t: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """GPT-2's forward pass (openai/gpt-2 model.py) in float64 numpy."""
    t = {k: v.astype(np.float64) for k, v in t.items()}

    def norm(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * t[p + "/g"] + t[p + "/b"]

    def conv1d(x, p):
        return x @ t[p + "/w"][0] + t[p + "/b"]

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))

    n = len(ids)
    h = t["model/wte"][ids] + t["model/wpe"][:n]
    causal = np.tril(np.ones((n, n), dtype=bool))
    for i in range(L):
        p = f"model/h{i}"
        q, k, v = np.split(conv1d(norm(h, p + "/ln_1"), p + "/attn/c_attn"), 3, axis=-1)
        q, k, v = (x.reshape(n, H, E // H).transpose(1, 0, 2) for x in (q, k, v))
        w = np.where(causal, q @ k.transpose(0, 2, 1) / np.sqrt(E // H), -1e10)
        w = np.exp(w - w.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        a = (w @ v).transpose(1, 0, 2).reshape(n, E)
        h = h + conv1d(a, p + "/attn/c_proj")
        m = gelu(conv1d(norm(h, p + "/ln_2"), p + "/mlp/c_fc"))
        h = h + conv1d(m, p + "/mlp/c_proj")
    return norm(h, "model/ln_f") @ t["model/wte"].T


def test_config_and_tokenizer_files(gpt2_release, converted):
    config = json.loads((converted / "config.json").read_text())
    assert config["architectures"] == ["GPT2LMHeadModel"]
    assert config["model_type"] == "gpt2"
    assert (config["vocab_size"], config["n_positions"], config["n_embd"], config["n_head"],
            config["n_layer"], config["n_inner"]) == (V, C, E, H, L, 4 * E)
    assert "n_ctx" not in config and "n_vocab" not in config
    assert (converted / "vocab.json").read_bytes() == (gpt2_release / "encoder.json").read_bytes()
    assert (converted / "merges.txt").read_bytes() == (gpt2_release / "vocab.bpe").read_bytes()


def test_names_and_values_are_load_tf_weights_in_gpt2s(converted):
    # load_tf_weights_in_gpt2: array.squeeze(); "model/" skipped; h<N> -> h[N]; w/g -> weight,
    # b -> bias, wte/wpe -> .weight. Conv1D keeps [nx, nf]: no transpose.
    got = converter.read(str(converted / "model.safetensors"))
    want = {}
    for name, value in release_tensors().items():
        parts = []
        for part in name.split("/")[1:]:
            if part[0] == "h" and part[1:].isdigit():
                parts += ["h", part[1:]]
            else:
                parts.append({"w": "weight", "g": "weight", "b": "bias"}.get(part, part))
        if parts[-1] in ("wte", "wpe"):
            parts.append("weight")
        want["transformer." + ".".join(parts)] = value.squeeze()
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert_same(got[name].read(), value, name)
    assert got["transformer.h.0.attn.c_attn.weight"].shape == (E, 3 * E)


def test_transformers_loads_it_and_the_forward_pass_is_gpt2s(converted):
    pytest.importorskip("transformers")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, info = AutoModelForCausalLM.from_pretrained(converted, output_loading_info=True)
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    state = model.state_dict()
    # The causal-mask buffers of transformers 4.x are no state-dict keys any more.
    assert not {"transformer.h.0.attn.bias", "transformer.h.0.attn.masked_bias"} & set(state)
    assert state["lm_head.weight"].data_ptr() == state["transformer.wte.weight"].data_ptr()
    ids = [5, 17, 42, 3, 98, 0, 61, 7]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].numpy()
    np.testing.assert_allclose(logits, reference_logits(release_tensors(), ids), atol=2e-5)
    tokenizer = AutoTokenizer.from_pretrained(converted)
    assert tokenizer("hell w")["input_ids"] == [VOCAB.index("hell"), VOCAB.index("\u0120w")]


def test_cli_writes_the_same_directory(gpt2_release, converted, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["convert", str(gpt2_release / "model.ckpt"), str(out), "--to", "hf",
                 "-q"]) == 0
    for name in ("model.safetensors", "config.json", "vocab.json", "merges.txt"):
        assert (out / name).read_bytes() == (converted / name).read_bytes(), name


def test_dry_run_names_the_squeeze(gpt2_release, tmp_path, capsys):
    out = tmp_path / "dry"
    assert main(["convert", str(gpt2_release / "model.ckpt"), str(out), "--to", "hf",
                 "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "family gpt2: GPT2LMHeadModel" in text
    assert "model/h0/attn/c_attn/w" in text and "squeeze axis 0" in text
    assert not out.exists()


def _release_copy(gpt2_release: Path, where: Path, **hparams) -> Path:
    where.mkdir()
    for f in gpt2_release.iterdir():
        shutil.copy(f, where / f.name)
    doc = json.loads((gpt2_release / "hparams.json").read_text())
    doc.update(hparams)
    (where / "hparams.json").write_text(json.dumps({k: v for k, v in doc.items()
                                                    if v is not None}))
    return where / "model.ckpt"


def _refused(args: list[str], out: Path, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert not out.exists()
    return err


def test_refuses_another_family(gpt2_release, tmp_path, capsys):
    out = tmp_path / "out"
    err = _refused(["convert", str(gpt2_release / "model.ckpt"), str(out), "--to", "hf",
                    "--family", "bert"], out, capsys)
    assert "not a checkpoint of the bert family" in err


def test_refuses_hparams_without_n_head(gpt2_release, tmp_path, capsys):
    src = _release_copy(gpt2_release, tmp_path / "rel", n_head=None)
    out = tmp_path / "out"
    err = _refused(["convert", str(src), str(out), "--to", "hf"], out, capsys)
    assert "n_head" in err and "hparams.json" in err


def test_refuses_hparams_the_shapes_contradict(gpt2_release, tmp_path, capsys):
    src = _release_copy(gpt2_release, tmp_path / "rel", n_embd=64)
    out = tmp_path / "out"
    err = _refused(["convert", str(src), str(out), "--to", "hf"], out, capsys)
    assert "n_embd is 64" in err and "say 32" in err


def test_refuses_a_layer_with_a_tensor_missing(tmp_path, capsys):
    tensors = release_tensors()
    del tensors["model/h1/mlp/c_fc/b"]
    converter.write(tensors, str(tmp_path / "model.ckpt"), format="tf")
    (tmp_path / "hparams.json").write_text(json.dumps({"n_head": H}))
    out = tmp_path / "out"
    err = _refused(["convert", str(tmp_path / "model.ckpt"), str(out), "--to", "hf"], out,
                   capsys)
    assert "transformer.h.1.mlp.c_fc.bias is missing" in err


def test_refuses_a_conv1d_weight_that_is_not_1_by_nx_by_nf(tmp_path, capsys):
    tensors = release_tensors()
    tensors["model/h0/attn/c_proj/w"] = np.zeros((2, E, E // 2), np.float32)
    converter.write(tensors, str(tmp_path / "model.ckpt"), format="tf")
    (tmp_path / "hparams.json").write_text(json.dumps({"n_head": H}))
    out = tmp_path / "out"
    err = _refused(["convert", str(tmp_path / "model.ckpt"), str(out), "--to", "hf"], out,
                   capsys)
    assert "model/h0/attn/c_proj/w" in err and "squeezed" in err
