"""--to hf for T5, T5 v1.1 and mT5: Mesh TensorFlow checkpoints, written by TensorFlow under the
names Google's releases use, become directories transformers 5 loads with no missing, unexpected
or mismatched key, each tensor bit-exact as transformers 4.x's load_tf_weights_in_t5 placed it
(every tensor but the embedding transposed, the relative attention bias too)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import converter
from converter.cli import main
from converter.errors import UsageError

D_MODEL, D_FF, HEADS, D_KV, LAYERS, VOCAB, BUCKETS = 16, 24, 4, 4, 2, 40, 32
INNER = HEADS * D_KV

GIN = """\
import mesh_tensorflow.transformer.transformer_layers

# Macros:
# ==============================================================================
d_ff = {d_ff}
d_kv = {d_kv}
d_model = {d_model}
dropout_rate = {dropout}
inputs_length = 512
num_heads = {heads}
num_layers = {layers}

# Parameters for AdafactorOptimizer:
# ==============================================================================
AdafactorOptimizer.beta1 = 0.0
AdafactorOptimizer.decay_rate = None
AdafactorOptimizer.epsilon1 = 1e-30

# Parameters for decoder/LayerStack:
# ==============================================================================
decoder/LayerStack.dropout_rate = %dropout_rate
decoder/LayerStack.norm_epsilon = 1e-06

# Parameters for decoder/make_layer_stack:
# ==============================================================================
decoder/make_layer_stack.layers = \\
    [@mesh_tensorflow.transformer.transformer_layers.SelfAttention,
     @mesh_tensorflow.transformer.transformer_layers.EncDecAttention,
     @mesh_tensorflow.transformer.transformer_layers.DenseReluDense]
decoder/make_layer_stack.num_layers = %num_layers

# Parameters for SelfAttention:
# ==============================================================================
SelfAttention.key_value_size = %d_kv
SelfAttention.num_heads = %num_heads
SelfAttention.relative_attention_num_buckets = 32
SelfAttention.relative_attention_type = 'bias_shared'

# Parameters for run:
# ==============================================================================
run.batch_size = ('tokens_per_batch', 65536)
run.model_dir = 'pretrained_models/small'
"""


def mesh_tf_names(gated: bool, untied: bool, norm: str = "layer_norm"
                  ) -> dict[str, tuple[tuple[int, ...], str, bool]]:
    """Mesh-TF name -> (shape, transformers name, transposed) as load_tf_weights_in_t5 maps it,
    written out by hand from the 4.x loader, independently of the family's rules."""
    out: dict[str, tuple[tuple[int, ...], str, bool]] = {
        "shared/embedding": ((VOCAB, D_MODEL), "shared.weight", False)}
    wi = ["wi_0", "wi_1"] if gated else ["wi"]
    final = "final_layer_norm" if norm == "layer_norm" else "rms_norm"
    for stack in ("encoder", "decoder"):
        attn = ["SelfAttention"] + (["EncDecAttention"] if stack == "decoder" else [])
        for b in range(LAYERS):
            for li, kind in enumerate(attn):
                tf_at = f"{stack}/block_{b:03d}/layer_{li:03d}"
                hf_at = f"{stack}.block.{b}.layer.{li}"
                for m in "qkvo":
                    shape = (D_MODEL, INNER) if m != "o" else (INNER, D_MODEL)
                    out[f"{tf_at}/{kind}/{m}"] = (shape, f"{hf_at}.{kind}.{m}.weight", True)
                if b == 0 and kind == "SelfAttention":
                    out[f"{tf_at}/{kind}/relative_attention_bias"] = (
                        (HEADS, BUCKETS), f"{hf_at}.{kind}.relative_attention_bias.weight", True)
                out[f"{tf_at}/{norm}/scale"] = ((D_MODEL,), f"{hf_at}.layer_norm.weight", True)
            li = len(attn)
            tf_at = f"{stack}/block_{b:03d}/layer_{li:03d}"
            hf_at = f"{stack}.block.{b}.layer.{li}"
            for w in wi:
                out[f"{tf_at}/DenseReluDense/{w}/kernel"] = (
                    (D_MODEL, D_FF), f"{hf_at}.DenseReluDense.{w}.weight", True)
            out[f"{tf_at}/DenseReluDense/wo/kernel"] = (
                (D_FF, D_MODEL), f"{hf_at}.DenseReluDense.wo.weight", True)
            out[f"{tf_at}/{norm}/scale"] = ((D_MODEL,), f"{hf_at}.layer_norm.weight", True)
        out[f"{stack}/{final}/scale"] = ((D_MODEL,), f"{stack}.final_layer_norm.weight", True)
    if untied:
        out["decoder/logits/kernel"] = ((D_MODEL, VOCAB), "lm_head.weight", True)
    return out


def _adafactor_slots(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Adafactor's factored second moments, as Mesh TF names them beside each variable."""
    slots = {}
    for name, v in values.items():
        if v.ndim == 2:
            slots[f"{name}_slot_vr"] = np.abs(v).mean(axis=1)
            slots[f"{name}_slot_vc"] = np.abs(v).mean(axis=0)
        else:
            slots[f"{name}_slot_v"] = np.abs(v)
    return slots


def _write_tf(tf, prefix, tensors: dict[str, np.ndarray]) -> None:
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.Variable(v, name=n) for n, v in tensors.items()]
        assert [v.op.name for v in variables] == list(tensors)
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(prefix), write_meta_graph=False, write_state=True)


CASES = {  # name: gated, untied, norm name, tokenizer file name, gin overrides, seed
    "t5": (False, False, "layer_norm", "spiece.model", {}, 1),
    "t5_v1_1": (True, True, "layer_norm", "sentencepiece.model", {"dropout": 0.0}, 2),
    "t5_rms": (False, False, "rms_norm", None, {}, 1),
    "bad_heads": (False, False, "layer_norm", None, {"heads": 8}, 3),
}


@pytest.fixture(scope="session")
def t5_checkpoints(tf, tmp_path_factory) -> dict[str, dict]:
    """Each case's directory, checkpoint prefix, source values (model variables only) and the
    name map; plus cases derived from t5 with a tensor left out or of the wrong shape."""
    root = tmp_path_factory.mktemp("t5")
    made = {}

    def build(case, gated, untied, norm, tok, gin, seed, edit=None):
        names = mesh_tf_names(gated, untied, norm)
        rng = np.random.default_rng(seed)
        values = {n: rng.standard_normal(shape).astype(np.float32)
                  for n, (shape, _, _) in names.items()}
        if edit is not None:
            edit(values)
        d = root / case
        d.mkdir()
        tensors = {**values, **_adafactor_slots(values),
                   "global_step": np.array(1000, dtype=np.int64)}
        _write_tf(tf, d / "model.ckpt-1000", tensors)
        settings = {"d_ff": D_FF, "d_kv": D_KV, "d_model": D_MODEL, "dropout": 0.1,
                    "heads": HEADS, "layers": LAYERS, **gin}
        (d / "operative_config.gin").write_text(GIN.format(**settings), encoding="utf-8")
        if tok:
            (d / tok).write_bytes(rng.bytes(300))
        made[case] = {"dir": d, "prefix": d / "model.ckpt-1000", "values": values,
                      "names": names, "tokenizer": d / tok if tok else None}

    for case, spec in CASES.items():
        build(case, *spec)
    build("missing_norm", *CASES["t5"],
          edit=lambda v: v.pop("decoder/block_001/layer_002/layer_norm/scale"))
    build("missing_final", *CASES["t5"], edit=lambda v: v.pop("decoder/final_layer_norm/scale"))
    build("bad_wo", *CASES["t5"], edit=lambda v: v.__setitem__(
        "decoder/block_001/layer_002/DenseReluDense/wo/kernel",
        np.ones((D_FF + 2, D_MODEL), np.float32)))
    return made


def _weights(out) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(out / "model.safetensors"))


def _check_tensors(case: dict, out) -> dict[str, np.ndarray]:
    """Every output tensor is its source, bit for bit, transposed where the 4.x loader did."""
    got = _weights(out)
    want = {hf: (np.transpose(case["values"][tf_name]) if transposed
                 else case["values"][tf_name])
            for tf_name, (_, hf, transposed) in case["names"].items()}
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert got[name].dtype == np.float32, name
        assert got[name].shape == value.shape, name
        assert got[name].tobytes() == value.tobytes(), name
    return want


def _load(out, cls_name: str, want: dict[str, np.ndarray], untied: bool):
    """transformers loads the directory with nothing missing, unexpected or mismatched, holds
    the values written, and runs a forward pass."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model, info = transformers.AutoModelForSeq2SeqLM.from_pretrained(
        out, output_loading_info=True)
    assert type(model).__name__ == cls_name
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"] and not info.get("error_msgs")
    params = dict(model.named_parameters(remove_duplicate=False))
    for name, value in want.items():
        assert np.array_equal(params[name].detach().numpy(), value), name
    lm_head = params["lm_head.weight"].detach().numpy()
    assert np.array_equal(lm_head, want["lm_head.weight" if untied else "shared.weight"])
    assert np.array_equal(params["encoder.embed_tokens.weight"].detach().numpy(),
                          want["shared.weight"])
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[3, 7, 11, 1]]),
                       decoder_input_ids=torch.tensor([[0, 5, 9]])).logits
    assert logits.shape == (1, 3, VOCAB) and torch.isfinite(logits).all()
    return model


def _config(out) -> dict:
    return json.loads((out / "config.json").read_text(encoding="utf-8"))


def test_t5_v1_0_relu_tied_with_the_cli(t5_checkpoints, tmp_path, capsys):
    case = t5_checkpoints["t5"]
    out = tmp_path / "t5-hf"
    assert main(["convert", str(case["prefix"]), str(out), "--to", "hf"]) == 0
    err = capsys.readouterr().err
    assert "t5: T5ForConditionalGeneration; dropped " in err and "_slot_v" in err
    want = _check_tensors(case, out)
    config = _config(out)
    assert {k: config[k] for k in ("model_type", "architectures", "d_model", "d_ff", "d_kv",
                                   "num_heads", "num_layers", "num_decoder_layers",
                                   "vocab_size", "relative_attention_num_buckets",
                                   "feed_forward_proj", "tie_word_embeddings",
                                   "layer_norm_epsilon", "dropout_rate",
                                   "decoder_start_token_id", "pad_token_id",
                                   "eos_token_id")} == {
        "model_type": "t5", "architectures": ["T5ForConditionalGeneration"],
        "d_model": D_MODEL, "d_ff": D_FF, "d_kv": D_KV, "num_heads": HEADS,
        "num_layers": LAYERS, "num_decoder_layers": LAYERS, "vocab_size": VOCAB,
        "relative_attention_num_buckets": BUCKETS, "feed_forward_proj": "relu",
        "tie_word_embeddings": True, "layer_norm_epsilon": 1e-6, "dropout_rate": 0.1,
        "decoder_start_token_id": 0, "pad_token_id": 0, "eos_token_id": 1}
    # The gin's training and data bindings stay out of config.json.
    assert not {"inputs_length", "batch_size", "beta1", "model_dir"} & set(config)
    assert (out / "spiece.model").read_bytes() == case["tokenizer"].read_bytes()
    model = _load(out, "T5ForConditionalGeneration", want, untied=False)
    assert model.config.scale_decoder_outputs  # v1.0 scales the tied output layer's input


def test_t5_v1_1_gated_untied_with_the_api(t5_checkpoints, tmp_path):
    case = t5_checkpoints["t5_v1_1"]
    out = tmp_path / "t5-v1_1-hf"
    converter.convert(case["prefix"], out, to="hf")
    want = _check_tensors(case, out)
    config = _config(out)
    assert config["feed_forward_proj"] == "gated-gelu"
    assert config["tie_word_embeddings"] is False and config["dropout_rate"] == 0.0
    assert config["d_ff"] == D_FF and config["model_type"] == "t5"
    assert (out / "spiece.model").read_bytes() == case["tokenizer"].read_bytes()
    model = _load(out, "T5ForConditionalGeneration", want, untied=True)
    assert not model.config.scale_decoder_outputs


def test_mt5_is_chosen_by_name_and_loads_as_mt5(t5_checkpoints, tmp_path):
    case = t5_checkpoints["t5_v1_1"]
    out = tmp_path / "mt5-hf"
    converter.convert(case["prefix"], out, to="hf", family="mt5")
    want = _check_tensors(case, out)
    config = _config(out)
    assert config["model_type"] == "mt5"
    assert config["architectures"] == ["MT5ForConditionalGeneration"]
    assert config["feed_forward_proj"] == "gated-gelu" and config["tie_word_embeddings"] is False
    _load(out, "MT5ForConditionalGeneration", want, untied=True)


def test_older_rms_norm_names_give_the_same_model(t5_checkpoints, tmp_path):
    case = t5_checkpoints["t5_rms"]
    out = tmp_path / "rms-hf"
    converter.convert(case["prefix"], out, to="hf")
    _check_tensors(case, out)
    assert _weights(out).keys() == _weights_of(t5_checkpoints["t5"], tmp_path).keys()


def _weights_of(case, tmp_path) -> dict[str, np.ndarray]:
    out = tmp_path / "again"
    converter.convert(case["prefix"], out, to="hf")
    return _weights(out)


def test_dry_run_lists_the_transposes(t5_checkpoints, capsys):
    case = t5_checkpoints["t5"]
    assert main(["convert", str(case["prefix"]), "unused", "--to", "hf", "--dry-run",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {" + ".join(r["source"]): r for r in report["tensors"]}
    assert rows["shared/embedding"]["name"] == "shared.weight"
    assert not rows["shared/embedding"]["transform"]
    bias = rows["encoder/block_000/layer_000/SelfAttention/relative_attention_bias"]
    assert bias["name"] == "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    assert "transpose" in bias["transform"] and bias["shape"] == [BUCKETS, HEADS]
    assert rows["decoder/block_001/layer_001/EncDecAttention/o"]["name"] == (
        "decoder.block.1.layer.1.EncDecAttention.o.weight")
    dropped = [d["name"] for d in report["dropped"]]
    assert any(d.endswith("_slot_vr") for d in dropped)
    assert "global_step" in dropped


@pytest.mark.parametrize(("case", "family", "message"), [
    ("t5", "bert", "not a checkpoint of the bert family"),
    ("t5", "mt5", "fits none of MT5ForConditionalGeneration"),
    ("missing_norm", None,
     "decoder.block.1.layer.2.layer_norm.weight is missing, while other layers have it"),
    ("missing_final", None, "nothing for ^decoder\\.final_layer_norm\\.weight$"),
    ("bad_wo", None, "'decoder/block_001/layer_002/DenseReluDense/wo/kernel' becomes "
     "decoder.block.1.layer.2.DenseReluDense.wo.weight of shape [16, 26], but "
     "T5ForConditionalGeneration with d_model=16, d_ff=24 needs [16, 24]"),
    ("bad_heads", None, "num_heads is 8, but the checkpoint's shapes say 4"),
])
def test_what_does_not_fit_is_one_line_and_writes_nothing(t5_checkpoints, tmp_path, capsys,
                                                          case, family, message):
    out = tmp_path / "out"
    args = ["convert", str(t5_checkpoints[case]["prefix"]), str(out), "--to", "hf"]
    assert main(args + (["--family", family] if family else [])) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists()
    with pytest.raises(UsageError, match=re.escape(message)):
        converter.convert(t5_checkpoints[case]["prefix"], out, to="hf", family=family)
    assert not out.exists()


def test_t5_v1_1_is_not_taken_for_mt5_by_detection(t5_checkpoints):
    from converter.hf import prepare

    with converter.read(t5_checkpoints["t5_v1_1"]["prefix"]) as ckpt:
        prepared = prepare(ckpt)
    assert prepared.family.name == "t5"


_MINI = """
name = "mini"
model_type = "mini"
detect = ["w"]
"""
_MINI_ARCH = """
[[architecture]]
class = "MiniModel"
"""


@pytest.mark.parametrize(("extra", "message"), [
    ('base = "nosuch"\n', "base 'nosuch' is not a family without a base"),
    ("auto_detect = 1\n", "auto_detect: expected true or false"),
    ("[shapes]\n'w' = [\"d_model+1\"]\n", "dims must be sizes or config keys"),
    ("[shapes]\n're:(' = [1]\n", "re:("),
])
def test_schema_additions_refuse_what_is_malformed(extra, message):
    from converter.hf.family import parse

    with pytest.raises(UsageError, match=re.escape(message)):
        parse(_MINI + extra + _MINI_ARCH, "families/mini.toml", {})


def test_a_base_gives_what_the_family_does_not():
    from converter.hf.family import families, parse

    t5 = families()["t5"]
    fam = parse('base = "t5"\nname = "x"\nmodel_type = "x"\n', "x.toml",
                {"t5": {"name": "t5", "detect": list(t5.detect), "model_type": "t5",
                        "architecture": [{"class": "A"}], "config": {"keep": ["d_model"]}}})
    assert fam.detect == t5.detect and fam.model_type == "x" and fam.keep == ("d_model",)
    assert [a.cls for a in fam.architectures] == ["A"] and fam.auto_detect
