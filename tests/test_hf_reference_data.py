"""The Hugging Face reference data (tests/data/hf/, written by scripts/hf_reference with
TensorFlow and transformers 4.57) is whole and agrees with itself: each checkpoint reads with our
reader under its release's names, and every tensor transformers took from it sits, bit for bit,
in reference.safetensors where reference.json says. Needs neither TensorFlow nor torch."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

import converter
from tests.helpers import HERE

DATA = HERE / "data" / "hf"

# Names each release's checkpoint must hold (a few per case, from the releases' code).
EXPECTED = {
    "bert_pretraining": [
        "bert/embeddings/word_embeddings", "bert/encoder/layer_1/attention/self/query/kernel",
        "bert/pooler/dense/kernel", "cls/predictions/output_bias",
        "cls/seq_relationship/output_weights", "bert/pooler/dense/kernel/adam_m", "global_step"],
    "bert_classifier": [
        "bert/encoder/layer_0/output/LayerNorm/gamma", "output_weights", "output_bias",
        "output_weights/adam_v", "global_step"],
    "albert": [
        "bert/encoder/embedding_hidden_mapping_in/kernel",
        "bert/encoder/transformer/group_0/inner_group_0/attention_1/self/query/kernel",
        "bert/encoder/transformer/group_0/inner_group_0/LayerNorm_1/gamma",
        "bert/encoder/transformer/group_0/inner_group_0/ffn_1/intermediate/output/dense/kernel",
        "cls/predictions/transform/dense/kernel", "global_step"],
    "electra_discriminator": [
        "electra/embeddings/word_embeddings", "electra/embeddings_project/kernel",
        "generator/encoder/layer_1/output/dense/kernel", "discriminator_predictions/dense_1/kernel",
        "generator_predictions/output_bias", "global_step"],
    "t5": [
        "shared/embedding", "encoder/block_000/layer_000/SelfAttention/relative_attention_bias",
        "decoder/block_001/layer_001/EncDecAttention/o",
        "decoder/block_000/layer_002/DenseReluDense/wi/kernel",
        "encoder/final_layer_norm/scale", "shared/embedding_slot_vr",
        "encoder/final_layer_norm/scale_slot_v", "global_step"],
    "t5_v1_1": [
        "encoder/block_001/layer_001/DenseReluDense/wi_0/kernel",
        "encoder/block_001/layer_001/DenseReluDense/wi_1/kernel", "decoder/logits/kernel",
        "decoder/logits/kernel_slot_vc"],
    "gpt2": ["model/wte", "model/wpe", "model/h1/attn/c_attn/w", "model/h0/mlp/c_proj/b",
             "model/ln_f/g"],
    "tf_model_h5_bert": [
        "tf_bert_for_pre_training/bert/embeddings/word_embeddings/weight",
        "tf_bert_for_pre_training/bert/encoder/layer_._1/attention/self/query/kernel",
        "tf_bert_for_pre_training/mlm___cls/predictions/bias",
        "tf_bert_for_pre_training/nsp___cls/seq_relationship/kernel"],
    "bert_tf2": [
        "model/layer_with_weights-0/embeddings/.ATTRIBUTES/VARIABLE_VALUE",
        "model/layer_with_weights-5/_attention_layer/_query_dense/kernel/.ATTRIBUTES/"
        "VARIABLE_VALUE",
        "model/layer_with_weights-4/_attention_output_dense/kernel/.ATTRIBUTES/VARIABLE_VALUE",
        "model/layer_with_weights-6/kernel/.ATTRIBUTES/VARIABLE_VALUE",
        "model/layer_with_weights-0/embeddings/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/"
        "VARIABLE_VALUE",
        "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"],
}
EXPECTED["electra_generator"] = EXPECTED["electra_discriminator"]
CASES = sorted(EXPECTED)
KEYS = {"transformers", "class", "config", "input_ids", "inputs", "loader", "outputs", "mapping",
        "tied"}


def test_every_case_is_there():
    # Directories with a reference.json are the cases scripts/hf_reference/make_references.py
    # made; make_tf_model_h5.py's (expected.json) are checked by test_hf_tf_h5.py.
    assert sorted(p.parent.name for p in DATA.glob("*/reference.json")) == CASES


def _checkpoint_path(case: str):
    d = DATA / case
    if (d / "bert_model.ckpt.index").exists():  # Model Garden's name
        return d / "bert_model.ckpt"
    return d / "tf_model.h5" if (d / "tf_model.h5").exists() else d / "model.ckpt"


def _transformed(a: np.ndarray, how: str, shape: tuple[int, ...]) -> np.ndarray:
    if how == "reshape":  # an EinsumDense tensor [heads, head_size] as [hidden]
        return a.reshape(shape)
    if how == "reshape_transpose":
        return a.reshape(shape[::-1]).T
    return {"none": a, "transpose": a.T, "squeeze": a.squeeze()}[how]


@pytest.mark.parametrize("case", CASES)
def test_reference_files(case):
    d = DATA / case
    ref = json.loads((d / "reference.json").read_text())
    assert KEYS <= set(ref), sorted(KEYS - set(ref))
    assert ref["transformers"].startswith("4.57.")
    state = load_file(d / "reference.safetensors")
    assert state and all(np.isfinite(t).all() for t in state.values() if t.dtype.kind == "f")
    assert set(ref["tied"]) <= set(state) and set(ref["tied"].values()) <= set(state)
    for name, first in ref["tied"].items():
        assert np.array_equal(state[name], state[first]), name
    assert "logits.npy" in ref["outputs"]
    ids = np.asarray(ref["input_ids"])
    for file in ref["outputs"]:
        out = np.load(d / file)
        assert out.dtype == np.float32 and np.isfinite(out).all()
        assert out.shape[0] == ids.shape[0]
    logits = np.load(d / "logits.npy")
    vocab = ref["config"]["vocab_size"]
    if "decoder_input_ids" in ref["inputs"]:
        assert logits.shape == (*np.asarray(ref["inputs"]["decoder_input_ids"]).shape, vocab)
    elif ref["class"] == "ElectraForPreTraining":
        assert logits.shape == ids.shape
    elif ref["class"] == "BertModel":  # last_hidden_state
        assert logits.shape == (*ids.shape, ref["config"]["hidden_size"])
    elif ref["class"] == "BertForSequenceClassification":
        assert logits.shape == (ids.shape[0], len(ref["config"]["id2label"]))
    else:
        assert logits.shape == (*ids.shape, vocab)


@pytest.mark.parametrize("case", CASES)
def test_checkpoint_reads_with_our_reader(case):
    ckpt = converter.read(_checkpoint_path(case))
    names = set(ckpt)
    missing = [n for n in EXPECTED[case] if n not in names]
    assert not missing, missing
    for name in names:
        assert ckpt[name].read().shape == tuple(ckpt[name].shape)


@pytest.mark.parametrize("case", [c for c in CASES if c != "tf_model_h5_bert"])
def test_mapped_tensors_equal_the_reference(case):
    """reference.json's mapping was found by value in the generating run; read back through
    our reader it still holds, so neither file was changed apart from the other."""
    d = DATA / case
    ref = json.loads((d / "reference.json").read_text())
    ckpt = converter.read(_checkpoint_path(case))
    state = load_file(d / "reference.safetensors")
    assert set(ref["mapping"]) == set(ckpt)
    taken = set()
    for tf_name, m in ref["mapping"].items():
        if m is None:
            continue
        for hf_name in m["hf"]:
            a = _transformed(ckpt[tf_name].read(), m["transform"], state[hf_name].shape)
            assert np.array_equal(a, state[hf_name]), (tf_name, hf_name)
            taken.add(hf_name)
    assert taken | set(ref.get("unmapped_hf", [])) == set(state)


def test_h5_tensors_equal_the_reference():
    d = DATA / "tf_model_h5_bert"
    ckpt = converter.read(d / "tf_model.h5")
    state = load_file(d / "reference.safetensors")
    ours = {}
    for name in ckpt:
        a = ckpt[name].read()
        ours.setdefault((a.shape, a.tobytes()), name)
        if a.ndim == 2:
            ours.setdefault((a.T.shape, np.ascontiguousarray(a.T).tobytes()), name)
    unmatched = [k for k, t in state.items() if (t.shape, t.tobytes()) not in ours]
    assert not unmatched, unmatched
