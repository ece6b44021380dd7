"""Write tiny ``tf_model.h5`` files the way transformers' TF classes saved them, for the tests of
the ``tf-h5`` family.

Runs in a virtualenv of its own with transformers 4.57 (the last release with TF classes),
tensorflow 2.21 and tf-keras 2.21 (Keras 2, which those classes need); torch is not needed::

    python -m venv VENV && VENV/bin/pip install transformers==4.57.1 tensorflow==2.21.0 \\
        tf-keras==2.21.0
    VENV/bin/python scripts/hf_reference/make_tf_model_h5.py [OUT_DIR]

For each case OUT_DIR/tf_model_h5_<case>/ (default: tests/data/hf) gets what
``save_pretrained`` wrote (``tf_model.h5``, ``config.json``) and, from transformers 4.57 itself:

- ``expected.json``: for every weight the model holds, the PyTorch name and the transpose that
  ``convert_tf_weight_name_to_pt_weight_name`` gives it (as ``load_tf2_state_dict_in_pytorch_model``
  calls it: with the base-model prefix removed for a base-model class), the TF shape, the inputs
  (token ids or pixels) and the class;
- ``logits.npy``: the TF model's output for those inputs (float32: logits, or the last hidden
  state of a base model), so a converted PyTorch model can
  be checked against a forward pass it did not compute itself.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import transformers  # noqa: E402
from transformers.modeling_tf_pytorch_utils import (  # noqa: E402
    convert_tf_weight_name_to_pt_weight_name,
)

ROOT = Path(__file__).resolve().parents[2]
INPUT_IDS = [[5, 17, 42, 3, 98, 0, 61, 7]]


def cases() -> dict[str, tuple[str, transformers.PretrainedConfig, str]]:
    """case -> (TF class, config, the PyTorch class's prefix when it is the base model, else '')."""
    bert = transformers.BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=64, type_vocab_size=2)
    gpt2 = transformers.GPT2Config(
        vocab_size=99, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=0,
        eos_token_id=0)
    vit = transformers.ViTConfig(
        image_size=8, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=37, num_labels=3)
    resnet = transformers.ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
        layer_type="basic", num_labels=3)
    return {
        "bert_tf": ("TFBertForPreTraining", bert, ""),
        "bert_base": ("TFBertModel", bert, "bert."),  # no prefix in PyTorch's BertModel
        "gpt2": ("TFGPT2LMHeadModel", gpt2, ""),
        "vit": ("TFViTForImageClassification", vit, ""),  # conv2d kernel
        "resnet": ("TFResNetForImageClassification", resnet, ""),  # BatchNorm statistics
    }


def inputs(config: transformers.PretrainedConfig) -> tuple[tf.Tensor, list]:
    """The model's input and how expected.json records it."""
    if hasattr(config, "image_size") or config.model_type == "resnet":
        size = getattr(config, "image_size", 16)
        pixels = np.random.default_rng(7).normal(size=(1, 3, size, size)).astype(np.float32)
        return tf.constant(pixels), pixels.tolist()
    return tf.constant(INPUT_IDS, dtype=tf.int32), INPUT_IDS


def main(out: Path) -> None:
    tf.keras.utils.set_random_seed(1234)
    for case, (cls_name, config, prefix) in cases().items():
        where = out / f"tf_model_h5_{case}"
        where.mkdir(parents=True, exist_ok=True)
        model = getattr(transformers, cls_name)(config)
        ids, recorded = inputs(config)
        model(ids, training=False)  # builds the weights
        # Initial LayerNorm weights are ones and biases zeros: random values everywhere make a
        # wrong name or transpose show.
        rng = np.random.default_rng(len(case))
        for w in model.weights:
            value = rng.normal(0.0, 0.2, w.shape)
            if "moving_variance" in w.name:
                value = np.abs(value) + 0.5
            w.assign(value.astype(w.dtype.as_numpy_dtype))
        outputs = model(ids, training=False)
        model.save_pretrained(str(where))
        logits = next(getattr(outputs, k) for k in ("logits", "prediction_logits",
                                                     "last_hidden_state") if k in outputs)
        np.save(where / "logits.npy", np.asarray(logits, dtype=np.float32))
        names = {}
        for w in model.weights:
            pt, transpose = convert_tf_weight_name_to_pt_weight_name(
                w.name, start_prefix_to_remove=prefix, tf_weight_shape=w.shape)
            names[w.name] = {"pt": pt, "transpose": transpose.value,
                             "shape": [int(d) for d in w.shape]}
        expected = {"class": cls_name.removeprefix("TF"), "transformers": transformers.__version__,
                    "tensorflow": tf.__version__, "inputs": recorded, "weights": names}
        (where / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
        size = sum(p.stat().st_size for p in where.iterdir())
        print(f"{where}: {len(names)} weights, {size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "data" / "hf")
