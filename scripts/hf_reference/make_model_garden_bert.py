"""tests/data/hf/model_garden_bert_encoder/: a checkpoint written by tf-models-official's own
``BertEncoder`` (``official.nlp.modeling.networks``), and that encoder's outputs on fixed inputs.

transformers 4.57's TF2 converter predates this layout (``encoder/`` root; the attention output
projection inside Keras' MultiHeadAttention as ``_attention_layer/_output_dense``) and refuses
it, so there is no transformers reference for it: the anchor is Model Garden's own forward pass,
which transformers 5's BertModel must reproduce from our directory. Run it where
tf-models-official imports (with TensorFlow 2.21 and tf-keras)::

    python scripts/hf_reference/make_model_garden_bert.py [--out tests/data/hf]

The encoder is saved as Model Garden's pretrained BERT checkpoints are,
``tf.train.Checkpoint(encoder=encoder)``, beside Google's ``bert_config.json``; every variable
is random (biases and LayerNorm included) so a misplaced tensor changes the outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from official.nlp.modeling import networks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HIDDEN, LAYERS, HEADS, INTERMEDIATE, VOCAB, POSITIONS = 32, 2, 4, 37, 99, 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "hf")
    args = parser.parse_args()
    case = args.out / "model_garden_bert_encoder"
    if case.exists():
        shutil.rmtree(case)
    case.mkdir(parents=True)

    tf.keras.utils.set_random_seed(3)
    encoder = networks.BertEncoder(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_layers=LAYERS, num_attention_heads=HEADS,
        inner_dim=INTERMEDIATE, max_sequence_length=POSITIONS, type_vocab_size=2,
        inner_activation="gelu", output_dropout=0.0, attention_dropout=0.0, dict_outputs=True)
    ids = np.random.default_rng(7).integers(5, VOCAB, (2, 7)).astype(np.int32)
    types = np.array([[0] * 4 + [1] * 3, [0] * 7], np.int32)
    mask = np.array([[1] * 7, [1] * 5 + [0] * 2], np.int32)
    inputs = {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types}
    encoder(inputs)
    rng = np.random.default_rng(11)
    for v in encoder.weights:
        base = 1.0 if v.name.endswith("gamma:0") else 0.0
        v.assign((base + rng.standard_normal(v.shape) * 0.02).astype(np.float32))
    out = encoder(inputs, training=False)
    tf.train.Checkpoint(encoder=encoder).write(str(case / "bert_model.ckpt"))
    np.save(case / "sequence_output.npy", out["sequence_output"].numpy().astype(np.float32))
    np.save(case / "pooled_output.npy", out["pooled_output"].numpy().astype(np.float32))
    config = {
        "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "hidden_size": HIDDEN, "initializer_range": 0.02, "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": POSITIONS, "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS, "type_vocab_size": 2, "vocab_size": VOCAB,
    }
    (case / "bert_config.json").write_text(json.dumps(config, indent=2) + "\n")
    import official

    record = {
        "source": "official.nlp.modeling.networks.BertEncoder, "
                  "tf.train.Checkpoint(encoder=encoder).write",
        "tf-models-official": getattr(official, "__version__", "2.20.0"),
        "tensorflow": tf.__version__,
        "inputs": {"input_ids": ids.tolist(), "token_type_ids": types.tolist(),
                   "attention_mask": mask.tolist()},
        "outputs": {"sequence_output.npy": "last_hidden_state",
                    "pooled_output.npy": "pooler_output"},
        "keys": sorted(n for n, _ in tf.train.list_variables(str(case / "bert_model.ckpt"))),
    }
    (case / "expected.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {case}")


if __name__ == "__main__":
    main()
