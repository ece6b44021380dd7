"""Write tiny TensorFlow checkpoints under the original releases' variable names, and what
transformers 4.57 (the last release with TensorFlow support) makes of them, into tests/data/hf/.

Run it in the virtualenv that scripts/hf_reference/make_env.sh creates (TensorFlow, transformers
4.57, torch), never in the project's own one:

    .hf-ref-venv/bin/python scripts/hf_reference/make_references.py [--out tests/data/hf] [CASE ...]

Each case directory holds the checkpoint as its release lays it out (with optimizer state where
the release's training code writes it), the config and tokenizer files shipped beside it, and:

- ``reference.safetensors``: the ``state_dict()`` of the transformers model after transformers'
  own loader ran on the checkpoint (tied tensors stored once per name);
- ``logits.npy`` (and other outputs listed in reference.json): that model's outputs in eval mode;
- ``reference.json``: versions, class, config, inputs, loader, and the TF name -> HF name mapping
  found by matching values (every tensor is random, so equal bytes mean the same tensor).

Every parameter is set to NaN before the loader runs, so a parameter the loader did not set
cannot pass for a reference value: the script stops unless the case names who set it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# transformers' TF classes need Keras 2 (tf-keras); set before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import sentencepiece as spm  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "model.ckpt"

# One size for every case, small enough that the whole tests/data/hf stays a few megabytes.
HIDDEN, LAYERS, HEADS, INTERMEDIATE, VOCAB, POSITIONS = 32, 2, 4, 37, 99, 64
SCALE = 0.02

WORDS = (
    "the a is of and to in on it for model weights check point tensor flow face hub layer "
    "attention head token embed encode decode train step loss grad adam slot bias kernel "
    "gamma beta norm scale shared block self output input hidden size vocab text word piece "
    "convert save load read write file shard index data value float array shape name "
    "quick brown fox jumps over lazy dog sphinx black quartz judge my vow pack box with five "
    "dozen liquor jugs zebra xylophone kite yacht query vivid jovial wizard"
).split()


def text_lines() -> list[str]:
    """A fixed little corpus for the sentencepiece models (same words, varied order)."""
    rng = np.random.default_rng(1234)
    lines = []
    for _ in range(400):
        n = int(rng.integers(4, 12))
        lines.append(" ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), n)) + ".")
    return lines


# --------------------------------------------------------------------------- values


class Values:
    """Random float32 tensors in creation order, from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.arrays: dict[str, np.ndarray] = {}

    def normal(self, name: str, shape: tuple[int, ...], scale: float = SCALE) -> None:
        self.arrays[name] = (self.rng.standard_normal(shape) * scale).astype(np.float32)

    def gamma(self, name: str, shape: tuple[int, ...]) -> None:
        self.arrays[name] = (1.0 + self.rng.standard_normal(shape) * SCALE).astype(np.float32)

    def dense(self, scope: str, n_in: int, n_out: int) -> None:
        self.normal(f"{scope}/kernel", (n_in, n_out))
        self.normal(f"{scope}/bias", (n_out,))

    def layer_norm(self, scope: str, n: int) -> None:
        self.normal(f"{scope}/beta", (n,))
        self.gamma(f"{scope}/gamma", (n,))


def bert_embeddings(v: Values, scope: str, vocab: int, width: int) -> None:
    v.normal(f"{scope}/word_embeddings", (vocab, width))
    v.normal(f"{scope}/token_type_embeddings", (2, width))
    v.normal(f"{scope}/position_embeddings", (POSITIONS, width))
    v.layer_norm(f"{scope}/LayerNorm", width)


def bert_layer(v: Values, scope: str, hidden: int, intermediate: int) -> None:
    for part in ("query", "key", "value"):
        v.dense(f"{scope}/attention/self/{part}", hidden, hidden)
    v.dense(f"{scope}/attention/output/dense", hidden, hidden)
    v.layer_norm(f"{scope}/attention/output/LayerNorm", hidden)
    v.dense(f"{scope}/intermediate/dense", hidden, intermediate)
    v.dense(f"{scope}/output/dense", intermediate, hidden)
    v.layer_norm(f"{scope}/output/LayerNorm", hidden)


def adam_slots(v: Values) -> dict[str, np.ndarray]:
    """AdamWeightDecayOptimizer's slots as BERT/ALBERT/ELECTRA's optimization.py names them
    (``<var>/adam_m``, ``<var>/adam_v``), plus ``global_step``."""
    out = dict(v.arrays)
    for name, a in v.arrays.items():
        out[f"{name}/adam_m"] = (v.rng.standard_normal(a.shape) * 1e-3).astype(np.float32)
        out[f"{name}/adam_v"] = (np.abs(v.rng.standard_normal(a.shape)) * 1e-6).astype(np.float32)
    out["global_step"] = np.array(1000, dtype=np.int64)
    return out


# Mesh-TF's Adafactor factors a variable when its second-largest dimension is at least
# min_dim_size_to_factor (128 in the T5 releases). At these tiny sizes nothing would be, so the
# threshold is scaled down with the model to keep the release's mix of factored (_slot_vr,
# _slot_vc) and unfactored (_slot_v) slots.
MIN_DIM_TO_FACTOR = 16


def adafactor_slots(v: Values) -> dict[str, np.ndarray]:
    out = dict(v.arrays)
    for name, a in v.arrays.items():
        dims = sorted(range(a.ndim), key=lambda d: -a.shape[d])  # stable: ties keep order
        if a.ndim >= 2 and a.shape[dims[1]] >= MIN_DIM_TO_FACTOR:
            # As Mesh-TF: vr drops the largest dimension, vc the second largest.
            vr = tuple(s for d, s in enumerate(a.shape) if d != dims[0])
            vc = tuple(s for d, s in enumerate(a.shape) if d != dims[1])
            out[f"{name}_slot_vr"] = np.abs(v.rng.standard_normal(vr)).astype(np.float32) * 1e-4
            out[f"{name}_slot_vc"] = np.abs(v.rng.standard_normal(vc)).astype(np.float32) * 1e-4
        else:
            out[f"{name}_slot_v"] = np.abs(v.rng.standard_normal(a.shape)).astype(np.float32) * 1e-4
    out["global_step"] = np.array(1000, dtype=np.int64)
    return out


# --------------------------------------------------------------------------- writing with TF


def save_tf1(arrays: dict[str, np.ndarray], case_dir: Path) -> Path:
    """Save ``arrays`` with tf.compat.v1.train.Saver under exactly these names; returns the
    prefix. No .meta or ``checkpoint`` state file: the latter holds absolute paths."""
    prefix = case_dir / PREFIX
    graph = tf.Graph()
    with graph.as_default():
        variables = {name: tf.compat.v1.Variable(a, name=name.replace("/", "_") + "_v")
                     for name, a in arrays.items()}
        saver = tf.compat.v1.train.Saver(var_list=variables)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(prefix), write_meta_graph=False, write_state=False)
    listed = dict(tf.train.list_variables(str(prefix)))
    assert sorted(listed) == sorted(arrays), "TensorFlow saved other names than asked"
    return prefix


# --------------------------------------------------------------------------- tokenizer files


def bert_vocab(case_dir: Path) -> None:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!", "?"]
    tokens += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens += ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens += [w for w in WORDS if w not in tokens]
    tokens = tokens[:VOCAB]
    assert len(tokens) == VOCAB
    (case_dir / "vocab.txt").write_text("\n".join(tokens) + "\n")


def train_spiece(case_dir: Path, vocab: int, **ids: Any) -> None:
    # Written through model_writer: a model_prefix would be stored in the model's trainer spec.
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text_lines()), model_writer=model,
        vocab_size=vocab, model_type="unigram", num_threads=1, seed_sentencepiece_size=1000,
        character_coverage=1.0, minloglevel=2,
        # The releases' nmt_nfkc rule ships a ~240 KB character map in every model file;
        # these words are plain ASCII, so identity normalization tokenizes them the same.
        normalization_rule_name="identity", **ids)
    (case_dir / "spiece.model").write_bytes(model.getvalue())


def gpt2_bpe(case_dir: Path) -> None:
    """A tiny byte-level BPE in OpenAI's files: encoder.json (token -> id) and vocab.bpe."""
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    b2u = bytes_to_unicode()
    base = [b2u[b] for b in b" abcdefghijklmnopqrstuvwxyz.,"]
    merges: list[tuple[str, str]] = []
    vocab = list(base)
    # Merges built from the corpus' commonest pairs, so the merges are ones BPE would apply.
    words = [b2u[32] + w for w in WORDS] + WORDS
    seqs = [list(w) for w in words]
    while len(vocab) < VOCAB - 1:
        counts: dict[tuple[str, str], int] = {}
        for s in seqs:
            for pair in zip(s, s[1:], strict=False):
                counts[pair] = counts.get(pair, 0) + 1
        best = max(sorted(counts), key=lambda p: counts[p])
        merges.append(best)
        vocab.append(best[0] + best[1])
        for s in seqs:
            i = 0
            while i < len(s) - 1:
                if (s[i], s[i + 1]) == best:
                    s[i:i + 2] = [best[0] + best[1]]
                i += 1
    vocab.append("<|endoftext|>")
    (case_dir / "encoder.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (case_dir / "vocab.bpe").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))


# --------------------------------------------------------------------------- references


def nan_fill(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))


def unset(model: torch.nn.Module) -> list[str]:
    return [k for k, t in model.state_dict().items()
            if t.is_floating_point() and bool(torch.isnan(t).any())]


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(str(a.dtype).encode() + np.ascontiguousarray(a).tobytes()).hexdigest()


def mapping(tf_arrays: dict[str, np.ndarray], state: dict[str, np.ndarray]) -> dict[str, Any]:
    """Which HF tensors hold each TF tensor's values, and how (found by value, not by name)."""
    index: dict[tuple[tuple[int, ...], str], list[tuple[str, str]]] = {}
    for k, t in state.items():
        index.setdefault((t.shape, digest(t)), []).append((k, "none"))
        if t.ndim == 2:
            index.setdefault((t.T.shape, digest(t.T)), []).append((k, "transpose"))
    out: dict[str, Any] = {}
    for name in sorted(tf_arrays):
        a = tf_arrays[name]
        hits = index.get((a.shape, digest(a)), [])
        if not hits and a.squeeze().shape != a.shape:
            hits = [(k, "squeeze") for k, how in index.get(
                (a.squeeze().shape, digest(a.squeeze())), []) if how == "none"]
        if hits:
            hows = {how for _, how in hits}
            out[name] = {"hf": sorted({k for k, _ in hits}),
                         "transform": "none" if "none" in hows else hows.pop()}
        else:
            out[name] = None
    return out


class Case:
    """One reference directory: TF files written, then the transformers model loaded."""

    def __init__(self, name: str, out: Path) -> None:
        self.name = name
        self.dir = out / name
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.record: dict[str, Any] = {
            "case": name,
            "transformers": transformers.__version__,
            "tensorflow": tf.__version__,
            "torch": torch.__version__,
        }

    def tokenizer(self, tok: Any) -> None:
        """What transformers' slow tokenizer, built on the release's files, makes of a line."""
        line = text_lines()[0]
        self.record["tokenizer"] = {"class": type(tok).__name__, "text": line,
                                    "input_ids": tok(line)["input_ids"],
                                    "tokens": tok.tokenize(line)}

    def finish(self, model: Any, tf_arrays: dict[str, np.ndarray], inputs: dict[str, list],
               outputs: dict[str, str], allowed_unset: dict[str, str] | None = None) -> None:
        allowed_unset = allowed_unset or {}
        left = unset(model)
        stray = sorted(set(left) - set(allowed_unset))
        if stray:
            sys.exit(f"{self.name}: the loader left these parameters unset: {stray}")
        model.eval()
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        # One metadata entry: safetensors writes a map's entries in no fixed order.
        save_file(state, str(self.dir / "reference.safetensors"), metadata={"format": "pt"})
        with torch.no_grad():
            result = model(**{k: torch.tensor(v) for k, v in inputs.items()})
        files = {}
        for i, (attr, file) in enumerate(outputs.items()):
            arr = getattr(result, attr).detach().numpy().astype(np.float32)
            assert np.isfinite(arr).all(), f"{self.name}: {attr} is not finite"
            np.save(self.dir / file, arr)
            files[file] = attr
            if i == 0:
                assert file == "logits.npy"
        np_state = {k: v.numpy() for k, v in state.items()}
        found = mapping(tf_arrays, np_state)
        tied = {}
        seen: dict[int, str] = {}
        for k, p in model.state_dict(keep_vars=True).items():
            first = seen.setdefault(id(p), k)
            if first != k:
                tied[k] = first
        self.record.update({
            "class": type(model).__name__,
            "config": model.config.to_dict(),
            "inputs": inputs,
            "input_ids": inputs["input_ids"],
            "outputs": files,
            "tied": tied,
            "mapping": found,
            "unmapped_hf": sorted(set(np_state) - {k for m in found.values() if m
                                                   for k in m["hf"]}),
        })
        if allowed_unset:
            self.record["set_by_this_script"] = allowed_unset
        (self.dir / "reference.json").write_text(json.dumps(self.record, indent=1) + "\n")


def ids(rng: np.random.Generator, vocab: int, shape: tuple[int, int] = (2, 7)) -> list:
    return rng.integers(5, vocab, shape).tolist()


def token_types(shape: tuple[int, int] = (2, 7)) -> list:
    return [[0] * 4 + [1] * (shape[1] - 4), [0] * shape[1]]


# ---- BERT


def bert_values(seed: int, heads: bool) -> Values:
    v = Values(seed)
    bert_embeddings(v, "bert/embeddings", VOCAB, HIDDEN)
    for i in range(LAYERS):
        bert_layer(v, f"bert/encoder/layer_{i}", HIDDEN, INTERMEDIATE)
    v.dense("bert/pooler/dense", HIDDEN, HIDDEN)
    if heads:
        v.dense("cls/predictions/transform/dense", HIDDEN, HIDDEN)
        v.layer_norm("cls/predictions/transform/LayerNorm", HIDDEN)
        v.normal("cls/predictions/output_bias", (VOCAB,))
        v.normal("cls/seq_relationship/output_weights", (2, HIDDEN))
        v.normal("cls/seq_relationship/output_bias", (2,))
    return v


def bert_config_json() -> dict[str, Any]:
    # The keys and order of Google's bert_config.json.
    return {
        "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "hidden_size": HIDDEN, "initializer_range": 0.02, "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": POSITIONS, "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS, "type_vocab_size": 2, "vocab_size": VOCAB,
    }


def case_bert_pretraining(out: Path) -> None:
    from transformers import BertConfig, BertForPreTraining, load_tf_weights_in_bert

    c = Case("bert_pretraining", out)
    v = bert_values(101, heads=True)
    arrays = adam_slots(v)
    prefix = save_tf1(arrays, c.dir)
    (c.dir / "bert_config.json").write_text(json.dumps(bert_config_json(), indent=2) + "\n")
    bert_vocab(c.dir)
    c.tokenizer(transformers.BertTokenizer(str(c.dir / "vocab.txt")))
    # As transformers' convert_bert_original_tf_checkpoint_to_pytorch did.
    config = BertConfig.from_json_file(str(c.dir / "bert_config.json"))
    torch.manual_seed(0)
    model = BertForPreTraining(config)
    nan_fill(model)
    load_tf_weights_in_bert(model, config, str(prefix))
    rng = np.random.default_rng(7)
    c.record.update(loader="transformers.load_tf_weights_in_bert(BertForPreTraining(config))",
                    config_source="BertConfig.from_json_file('bert_config.json')")
    c.finish(model, arrays, {"input_ids": ids(rng, VOCAB), "token_type_ids": token_types()},
             {"prediction_logits": "logits.npy",
              "seq_relationship_logits": "seq_relationship_logits.npy"})


def case_bert_classifier(out: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification, load_tf_weights_in_bert

    num_labels = 3
    c = Case("bert_classifier", out)
    v = bert_values(102, heads=False)
    # run_classifier.py's head: top-level variables, logits = pooled @ output_weights^T + b.
    v.normal("output_weights", (num_labels, HIDDEN))
    v.normal("output_bias", (num_labels,))
    arrays = adam_slots(v)
    prefix = save_tf1(arrays, c.dir)
    (c.dir / "bert_config.json").write_text(json.dumps(bert_config_json(), indent=2) + "\n")
    bert_vocab(c.dir)
    c.tokenizer(transformers.BertTokenizer(str(c.dir / "vocab.txt")))
    config = BertConfig.from_json_file(str(c.dir / "bert_config.json"))
    config.num_labels = num_labels
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    nan_fill(model)
    try:
        load_tf_weights_in_bert(model, config, str(prefix))
        failure = None
    except Exception as e:  # noqa: BLE001 - recorded, not hidden
        failure = f"{type(e).__name__}: {e}"
        nan_fill(model)
        # The same checkpoint without the head, written by TensorFlow from the same arrays.
        with tempfile.TemporaryDirectory() as tmp:
            body = {k: a for k, a in arrays.items()
                    if k.split("/")[0] not in ("output_weights", "output_bias")}
            load_tf_weights_in_bert(model, config, str(save_tf1(body, Path(tmp))))
    head = {"classifier.weight": "output_weights", "classifier.bias": "output_bias"}
    if failure:
        # The loader cannot take run_classifier's head; its values are copied as the head is
        # defined in run_classifier.py (Linear weight == output_weights, no transpose), and the
        # logits are still computed by transformers' own forward.
        with torch.no_grad():
            model.classifier.weight.copy_(torch.from_numpy(arrays["output_weights"]))
            model.classifier.bias.copy_(torch.from_numpy(arrays["output_bias"]))
    rng = np.random.default_rng(8)
    c.record.update(
        loader="transformers.load_tf_weights_in_bert(BertForSequenceClassification(config))",
        loader_failure_on_full_checkpoint=failure,
        loaded_from="the checkpoint without output_weights/output_bias (and their slots)"
        if failure else "the checkpoint",
        config_source="BertConfig.from_json_file('bert_config.json'), num_labels=3")
    c.finish(model, arrays, {"input_ids": ids(rng, VOCAB), "token_type_ids": token_types()},
             {"logits": "logits.npy"},
             allowed_unset={k: f"copied from TF '{n}' by this script" for k, n in head.items()}
             if failure else None)


# ---- ALBERT

EMBED = 16


def case_albert(out: Path) -> None:
    from transformers import AlbertConfig, AlbertForPreTraining, load_tf_weights_in_albert

    c = Case("albert", out)
    v = Values(201)
    bert_embeddings(v, "bert/embeddings", VOCAB, EMBED)
    v.dense("bert/encoder/embedding_hidden_mapping_in", EMBED, HIDDEN)
    g = "bert/encoder/transformer/group_0/inner_group_0"
    for part in ("query", "key", "value"):
        v.dense(f"{g}/attention_1/self/{part}", HIDDEN, HIDDEN)
    v.dense(f"{g}/attention_1/output/dense", HIDDEN, HIDDEN)
    v.layer_norm(f"{g}/LayerNorm", HIDDEN)
    v.dense(f"{g}/ffn_1/intermediate/dense", HIDDEN, INTERMEDIATE)
    v.dense(f"{g}/ffn_1/intermediate/output/dense", INTERMEDIATE, HIDDEN)
    v.layer_norm(f"{g}/LayerNorm_1", HIDDEN)
    v.dense("bert/pooler/dense", HIDDEN, HIDDEN)
    v.dense("cls/predictions/transform/dense", HIDDEN, EMBED)
    v.layer_norm("cls/predictions/transform/LayerNorm", EMBED)
    v.normal("cls/predictions/output_bias", (VOCAB,))
    v.normal("cls/seq_relationship/output_weights", (2, HIDDEN))
    v.normal("cls/seq_relationship/output_bias", (2,))
    arrays = adam_slots(v)
    prefix = save_tf1(arrays, c.dir)
    albert_config = {  # the keys of Google's albert_config.json (v2)
        "attention_probs_dropout_prob": 0, "hidden_act": "gelu", "hidden_dropout_prob": 0,
        "embedding_size": EMBED, "hidden_size": HIDDEN, "initializer_range": 0.02,
        "intermediate_size": INTERMEDIATE, "max_position_embeddings": POSITIONS,
        "num_attention_heads": HEADS, "num_hidden_layers": LAYERS, "num_hidden_groups": 1,
        "net_structure_type": 0, "gap_size": 0, "num_memory_blocks": 0, "inner_group_num": 1,
        "down_scale_factor": 1, "type_vocab_size": 2, "vocab_size": VOCAB,
    }
    (c.dir / "albert_config.json").write_text(json.dumps(albert_config, indent=2) + "\n")
    train_spiece(c.dir, VOCAB, pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
                 control_symbols=["[CLS]", "[SEP]", "[MASK]"])
    c.tokenizer(transformers.AlbertTokenizer(str(c.dir / "spiece.model")))
    # As transformers' convert_albert_original_tf_checkpoint_to_pytorch did.
    config = AlbertConfig.from_json_file(str(c.dir / "albert_config.json"))
    torch.manual_seed(0)
    model = AlbertForPreTraining(config)
    nan_fill(model)
    load_tf_weights_in_albert(model, config, str(prefix))
    rng = np.random.default_rng(9)
    c.record.update(loader="transformers.load_tf_weights_in_albert(AlbertForPreTraining(config))",
                    config_source="AlbertConfig.from_json_file('albert_config.json')")
    c.finish(model, arrays, {"input_ids": ids(rng, VOCAB), "token_type_ids": token_types()},
             {"prediction_logits": "logits.npy", "sop_logits": "sop_logits.npy"})


# ---- ELECTRA

ELECTRA_EMBED = 24
GEN_FRACTION = 0.5


def electra_checkpoint(case_dir: Path) -> tuple[dict[str, np.ndarray], Path, dict[str, Any]]:
    """One ELECTRA pre-training checkpoint: discriminator under electra/, generator under
    generator/, embeddings shared under electra/embeddings (untied_generator_embeddings=False),
    as run_pretraining.py and model/modeling.py build them."""
    gen_hidden = int(round(HIDDEN * GEN_FRACTION))
    v = Values(301)
    bert_embeddings(v, "electra/embeddings", VOCAB, ELECTRA_EMBED)
    v.dense("electra/embeddings_project", ELECTRA_EMBED, HIDDEN)
    for i in range(LAYERS):
        bert_layer(v, f"electra/encoder/layer_{i}", HIDDEN, INTERMEDIATE)
    v.dense("generator/embeddings_project", ELECTRA_EMBED, gen_hidden)
    for i in range(LAYERS):
        bert_layer(v, f"generator/encoder/layer_{i}", gen_hidden, 4 * gen_hidden)
    v.dense("generator_predictions/dense", gen_hidden, ELECTRA_EMBED)
    v.layer_norm("generator_predictions/LayerNorm", ELECTRA_EMBED)
    v.normal("generator_predictions/output_bias", (VOCAB,))
    v.dense("discriminator_predictions/dense", HIDDEN, HIDDEN)
    v.dense("discriminator_predictions/dense_1", HIDDEN, 1)
    arrays = adam_slots(v)
    prefix = save_tf1(arrays, case_dir)
    # run_pretraining.py --hparams: the discriminator's sizes via model_hparam_overrides; the
    # generator's follow get_generator_config (hidden * generator_hidden_size, ff 4 * hidden,
    # heads hidden // 64 but at least 1).
    hparams = {
        "model_size": "small", "vocab_size": VOCAB, "embedding_size": ELECTRA_EMBED,
        "generator_hidden_size": GEN_FRACTION, "generator_layers": 1.0,
        "untied_generator_embeddings": False, "untied_generator": True,
        "model_hparam_overrides": {
            "hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "intermediate_size": INTERMEDIATE, "max_position_embeddings": POSITIONS,
        },
    }
    (case_dir / "hparams.json").write_text(json.dumps(hparams, indent=2) + "\n")
    bert_vocab(case_dir)
    gen = {"hidden_size": gen_hidden, "num_attention_heads": max(1, gen_hidden // 64),
           "intermediate_size": 4 * gen_hidden}
    return arrays, prefix, gen


def electra_config(**over: Any) -> Any:
    from transformers import ElectraConfig

    base = {"vocab_size": VOCAB, "embedding_size": ELECTRA_EMBED, "hidden_size": HIDDEN,
            "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "intermediate_size": INTERMEDIATE, "max_position_embeddings": POSITIONS,
            "type_vocab_size": 2, "hidden_act": "gelu"}
    base.update(over)
    return ElectraConfig(**base)


def case_electra(out: Path) -> None:
    from transformers import ElectraForMaskedLM, ElectraForPreTraining, load_tf_weights_in_electra

    d = Case("electra_discriminator", out)
    arrays, prefix, gen = electra_checkpoint(d.dir)
    d.tokenizer(transformers.ElectraTokenizer(str(d.dir / "vocab.txt")))
    config = electra_config()
    torch.manual_seed(0)
    model = ElectraForPreTraining(config)
    nan_fill(model)
    load_tf_weights_in_electra(model, config, str(prefix),
                               discriminator_or_generator="discriminator")
    rng = np.random.default_rng(10)
    inputs = {"input_ids": ids(rng, VOCAB), "token_type_ids": token_types()}
    note = ("ElectraConfig built by this script from hparams.json with ELECTRA's rules "
            "(transformers' convert script takes a hand-written HF config)")
    d.record.update(loader="transformers.load_tf_weights_in_electra(ElectraForPreTraining(config), "
                    "discriminator_or_generator='discriminator')", config_source=note)
    d.finish(model, arrays, inputs, {"logits": "logits.npy"})

    g = Case("electra_generator", out)
    for f in d.dir.iterdir():
        if f.name.startswith(PREFIX) or f.name in ("hparams.json", "vocab.txt"):
            shutil.copy(f, g.dir / f.name)
    g.tokenizer(transformers.ElectraTokenizer(str(g.dir / "vocab.txt")))
    config = electra_config(**gen)
    torch.manual_seed(0)
    model = ElectraForMaskedLM(config)
    nan_fill(model)
    load_tf_weights_in_electra(model, config, str(g.dir / PREFIX),
                               discriminator_or_generator="generator")
    g.record.update(loader="transformers.load_tf_weights_in_electra(ElectraForMaskedLM(config), "
                    "discriminator_or_generator='generator')", config_source=note)
    g.finish(model, arrays, inputs, {"logits": "logits.npy"})


# ---- T5

T5_KV, T5_BUCKETS = 8, 32
T5_SPIECE, T5_EXTRA = 96, 32  # vocab = sentencepiece pieces + extra_ids, a multiple of 128


def t5_values(seed: int, gated: bool) -> Values:
    v = Values(seed)
    inner = HEADS * T5_KV
    t5_vocab = T5_SPIECE + T5_EXTRA
    v.normal("shared/embedding", (t5_vocab, HIDDEN), scale=1.0)

    def attention(scope: str, relative: bool) -> None:
        for w in ("q", "k", "v"):
            v.normal(f"{scope}/{w}", (HIDDEN, inner))
        v.normal(f"{scope}/o", (inner, HIDDEN))
        if relative:
            v.normal(f"{scope}/relative_attention_bias", (HEADS, T5_BUCKETS), scale=0.5)

    def ffn(scope: str) -> None:
        for w in ("wi_0", "wi_1") if gated else ("wi",):
            v.normal(f"{scope}/DenseReluDense/{w}/kernel", (HIDDEN, INTERMEDIATE))
        v.normal(f"{scope}/DenseReluDense/wo/kernel", (INTERMEDIATE, HIDDEN))

    for stack in ("encoder", "decoder"):
        for i in range(LAYERS):
            b = f"{stack}/block_{i:03d}"
            attention(f"{b}/layer_000/SelfAttention", relative=i == 0)
            v.gamma(f"{b}/layer_000/layer_norm/scale", (HIDDEN,))
            if stack == "decoder":
                attention(f"{b}/layer_001/EncDecAttention", relative=False)
                v.gamma(f"{b}/layer_001/layer_norm/scale", (HIDDEN,))
            last = "layer_002" if stack == "decoder" else "layer_001"
            ffn(f"{b}/{last}")
            v.gamma(f"{b}/{last}/layer_norm/scale", (HIDDEN,))
        v.gamma(f"{stack}/final_layer_norm/scale", (HIDDEN,))
    if gated:
        v.normal("decoder/logits/kernel", (HIDDEN, t5_vocab))
    return v


def t5_gin(gated: bool) -> str:
    activation = "['gelu', 'linear']" if gated else "'relu'"
    return f"""\
# Macros:
# ==============================================================================
d_ff = {INTERMEDIATE}
d_kv = {T5_KV}
d_model = {HIDDEN}
dropout_rate = 0.1
num_heads = {HEADS}
num_layers = {LAYERS}

# Parameters for AdafactorOptimizer:
# ==============================================================================
AdafactorOptimizer.factored = True
AdafactorOptimizer.min_dim_size_to_factor = {MIN_DIM_TO_FACTOR}

# Parameters for Bitransformer:
# ==============================================================================
Bitransformer.shared_embedding = True

# Parameters for DenseReluDense:
# ==============================================================================
DenseReluDense.activation = {activation}
DenseReluDense.dropout_rate = %dropout_rate
DenseReluDense.hidden_size = %d_ff

# Parameters for decoder/make_layer_stack:
# ==============================================================================
decoder/make_layer_stack.block_scope = True
decoder/make_layer_stack.layers = \\
    [@mesh_tensorflow.transformer.transformer_layers.SelfAttention,
     @mesh_tensorflow.transformer.transformer_layers.EncDecAttention,
     @mesh_tensorflow.transformer.transformer_layers.DenseReluDense]
decoder/make_layer_stack.num_layers = %num_layers

# Parameters for encoder/make_layer_stack:
# ==============================================================================
encoder/make_layer_stack.block_scope = True
encoder/make_layer_stack.layers = \\
    [@mesh_tensorflow.transformer.transformer_layers.SelfAttention,
     @mesh_tensorflow.transformer.transformer_layers.DenseReluDense]
encoder/make_layer_stack.num_layers = %num_layers

# Parameters for SelfAttention:
# ==============================================================================
SelfAttention.dropout_rate = %dropout_rate
SelfAttention.key_value_size = %d_kv
SelfAttention.num_heads = %num_heads
SelfAttention.relative_attention_num_buckets = {T5_BUCKETS}
SelfAttention.relative_attention_type = 'bias_shared'

# Parameters for EncDecAttention:
# ==============================================================================
EncDecAttention.key_value_size = %d_kv
EncDecAttention.num_heads = %num_heads

# Parameters for SentencePieceVocabulary:
# ==============================================================================
SentencePieceVocabulary.extra_ids = {T5_EXTRA}
SentencePieceVocabulary.sentencepiece_model_file = 'spiece.model'

# Parameters for Unitransformer:
# ==============================================================================
Unitransformer.d_model = %d_model
Unitransformer.shared_embedding_and_softmax_weights = {not gated}
Unitransformer.vocab_divisor = 128

# Parameters for layer_norm:
# ==============================================================================
layer_norm.epsilon = 1e-06
"""


def case_t5(out: Path, gated: bool) -> None:
    from transformers import T5Config, T5ForConditionalGeneration, load_tf_weights_in_t5

    c = Case("t5_v1_1" if gated else "t5", out)
    v = t5_values(402 if gated else 401, gated)
    arrays = adafactor_slots(v)
    prefix = save_tf1(arrays, c.dir)
    (c.dir / "operative_config.gin").write_text(t5_gin(gated))
    train_spiece(c.dir, T5_SPIECE, pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    c.tokenizer(transformers.T5Tokenizer(str(c.dir / "spiece.model"), extra_ids=T5_EXTRA,
                                         legacy=True))
    config = T5Config(
        vocab_size=T5_SPIECE + T5_EXTRA, d_model=HIDDEN, d_kv=T5_KV, d_ff=INTERMEDIATE,
        num_layers=LAYERS, num_decoder_layers=LAYERS, num_heads=HEADS,
        relative_attention_num_buckets=T5_BUCKETS, dropout_rate=0.1, layer_norm_epsilon=1e-6,
        feed_forward_proj="gated-gelu" if gated else "relu", tie_word_embeddings=not gated,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(config)
    nan_fill(model)
    load_tf_weights_in_t5(model, config, str(prefix))
    rng = np.random.default_rng(11)
    inputs = {"input_ids": ids(rng, T5_SPIECE + T5_EXTRA),
              "decoder_input_ids": [[0] + r for r in ids(rng, T5_SPIECE + T5_EXTRA, (2, 4))]}
    c.record.update(
        loader="transformers.load_tf_weights_in_t5(T5ForConditionalGeneration(config))",
        config_source="T5Config built by this script from operative_config.gin (transformers' "
        "convert script takes a hand-written HF config)")
    c.finish(model, arrays, inputs, {"logits": "logits.npy"})


# ---- GPT-2


def case_gpt2(out: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, load_tf_weights_in_gpt2

    c = Case("gpt2", out)
    v = Values(501)
    v.normal("model/wte", (VOCAB, HIDDEN))
    v.normal("model/wpe", (POSITIONS, HIDDEN), scale=0.01)
    for i in range(LAYERS):
        h = f"model/h{i}"
        v.gamma(f"{h}/ln_1/g", (HIDDEN,))
        v.normal(f"{h}/ln_1/b", (HIDDEN,))
        # OpenAI's conv1d keeps its weights as [1, nx, nf].
        v.normal(f"{h}/attn/c_attn/w", (1, HIDDEN, 3 * HIDDEN))
        v.normal(f"{h}/attn/c_attn/b", (3 * HIDDEN,))
        v.normal(f"{h}/attn/c_proj/w", (1, HIDDEN, HIDDEN))
        v.normal(f"{h}/attn/c_proj/b", (HIDDEN,))
        v.gamma(f"{h}/ln_2/g", (HIDDEN,))
        v.normal(f"{h}/ln_2/b", (HIDDEN,))
        v.normal(f"{h}/mlp/c_fc/w", (1, HIDDEN, 4 * HIDDEN))
        v.normal(f"{h}/mlp/c_fc/b", (4 * HIDDEN,))
        v.normal(f"{h}/mlp/c_proj/w", (1, 4 * HIDDEN, HIDDEN))
        v.normal(f"{h}/mlp/c_proj/b", (HIDDEN,))
    v.gamma("model/ln_f/g", (HIDDEN,))
    v.normal("model/ln_f/b", (HIDDEN,))
    arrays = dict(v.arrays)  # OpenAI's released checkpoints hold no optimizer state
    prefix = save_tf1(arrays, c.dir)
    hparams = {"n_vocab": VOCAB, "n_ctx": POSITIONS, "n_embd": HIDDEN, "n_head": HEADS,
               "n_layer": LAYERS}
    (c.dir / "hparams.json").write_text(json.dumps(hparams, indent=2) + "\n")
    gpt2_bpe(c.dir)
    c.tokenizer(transformers.GPT2Tokenizer(str(c.dir / "encoder.json"), str(c.dir / "vocab.bpe")))
    config = GPT2Config(vocab_size=VOCAB, n_positions=POSITIONS, n_embd=HIDDEN, n_head=HEADS,
                        n_layer=LAYERS, bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    nan_fill(model)
    # The loader walks names from the base model (model/h0 -> .h[0]): transformers' convert
    # script ran it on GPT2Model; the LM head model's base is .transformer, lm_head tied to wte.
    load_tf_weights_in_gpt2(model.transformer, config, str(prefix))
    rng = np.random.default_rng(12)
    c.record.update(
        loader="transformers.load_tf_weights_in_gpt2(GPT2LMHeadModel(config).transformer)",
        config_source="GPT2Config built by this script from hparams.json (n_vocab->vocab_size, "
        "n_ctx->n_positions, n_embd, n_head, n_layer)")
    c.finish(model, arrays, {"input_ids": ids(rng, VOCAB - 1)}, {"logits": "logits.npy"})


# ---- transformers' own tf_model.h5


def case_tf_model_h5_bert(out: Path) -> None:
    from transformers import BertConfig, BertForPreTraining, TFBertForPreTraining
    from transformers.modeling_tf_pytorch_utils import load_tf2_checkpoint_in_pytorch_model

    c = Case("tf_model_h5_bert", out)
    config = BertConfig(**bert_config_json())
    tf.keras.utils.set_random_seed(0)
    tf_model = TFBertForPreTraining(config)
    tf_model(tf_model.dummy_inputs, training=False)
    v = Values(601)
    arrays: dict[str, np.ndarray] = {}
    for w in tf_model.weights:
        shape = tuple(w.shape)
        if "LayerNorm/gamma" in w.name:
            v.gamma(w.name, shape)
        else:
            v.normal(w.name, shape)
        w.assign(v.arrays[w.name])
        arrays[w.name] = v.arrays[w.name]
    tf_model.save_pretrained(str(c.dir))
    # Name the file's tensors as it stores them: <layer>/<weight name>. The MLM head layer
    # lists the embedding weights again, so the file holds those five tensors twice.
    import h5py

    with h5py.File(c.dir / "tf_model.h5", "r") as f:
        stored = {f"{layer}/{w}": np.asarray(f[layer][w])
                  for layer in f.attrs["layer_names"] for w in f[layer].attrs["weight_names"]}
    for key, a in stored.items():
        weight = key.split("/", 1)[1]
        assert np.array_equal(a, arrays[weight]), f"{key} holds other values than {weight}"
    arrays = stored
    bert_vocab(c.dir)
    c.tokenizer(transformers.BertTokenizer(str(c.dir / "vocab.txt")))
    config = BertConfig.from_pretrained(str(c.dir))
    torch.manual_seed(0)
    model = BertForPreTraining(config)
    nan_fill(model)
    # from_pretrained(dir, from_tf=True) calls this same function, but on a model it built on
    # the meta device, where load_state_dict (without assign=True) copies nothing: every
    # parameter stays on meta. So the function is called here on a model built on the CPU.
    model, info = load_tf2_checkpoint_in_pytorch_model(
        model, str(c.dir / "tf_model.h5"), allow_missing_keys=True, output_loading_info=True)
    model.tie_weights()
    rng = np.random.default_rng(13)
    c.record.update(
        loader="transformers.modeling_tf_pytorch_utils.load_tf2_checkpoint_in_pytorch_model("
        "BertForPreTraining(config), 'tf_model.h5', allow_missing_keys=True) - the function "
        "from_pretrained(dir, from_tf=True) calls",
        loading_info={k: sorted(map(str, x)) for k, x in info.items()},
        from_pretrained_from_tf="leaves every parameter on the meta device in this version",
        tf_weight_names="<layer name>/<weight name> as the h5 file stores them (layer_names "
        "and weight_names attributes); mlm___cls lists the five bert/embeddings weights again",
        config_source="config.json written by TFBertForPreTraining.save_pretrained")
    c.finish(model, arrays, {"input_ids": ids(rng, VOCAB), "token_type_ids": token_types()},
             {"prediction_logits": "logits.npy",
              "seq_relationship_logits": "seq_relationship_logits.npy"})


CASES: dict[str, Callable[[Path], None]] = {
    "bert_pretraining": case_bert_pretraining,
    "bert_classifier": case_bert_classifier,
    "albert": case_albert,
    "electra": case_electra,  # electra_discriminator and electra_generator
    "t5": lambda out: case_t5(out, gated=False),
    "t5_v1_1": lambda out: case_t5(out, gated=True),
    "gpt2": case_gpt2,
    "tf_model_h5_bert": case_tf_model_h5_bert,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "hf")
    parser.add_argument("cases", nargs="*", metavar="CASE", help=", ".join(CASES))
    args = parser.parse_args()
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    if not transformers.__version__.startswith("4.57."):
        sys.exit(f"transformers 4.57 is the reference; this is {transformers.__version__}")
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    for name in args.cases or CASES:
        CASES[name](args.out)
        print(f"wrote {name}")


if __name__ == "__main__":
    main()
