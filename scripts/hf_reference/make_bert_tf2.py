"""The ``bert_tf2`` case of tests/data/hf/: a TF2 object-based checkpoint of TF Model Garden's
BERT encoder, and what transformers 4.57's own converter for it,
``convert_bert_original_tf2_checkpoint_to_pytorch.py``, made of it.

That converter is not in transformers' wheel or sdist (conversion scripts are left out of
them); take it from transformers' source tree at the v4.57.x tag
(``src/transformers/models/bert/convert_bert_original_tf2_checkpoint_to_pytorch.py``) and
name it here. It is imported as the module of transformers it is (its imports are relative)::

    .hf-ref-venv/bin/python scripts/hf_reference/make_bert_tf2.py --script PATH [--out DIR]

The checkpoint has the layout that converter reads: ``model/layer_with_weights-N/...`` as
``tf.train.Checkpoint(model=encoder)`` saved official/nlp/bert's encoder (embeddings at 0-2,
their LayerNorm at 3, Transformer blocks from 4, the pooler last; EinsumDense kernels
``[hidden, heads, head_size]``, the attention output ``_attention_output_dense``
``[heads, head_size, hidden]``), written by TensorFlow (tests/tf2_bert_writer.py, which builds
trackable objects at exactly those attribute paths), with a Keras 2 Adam's slots. The rest is
make_references.py's: every parameter NaN before the converter runs, state dict, outputs and
the mapping found by value (here also ``reshape``: the EinsumDense tensors).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_references as ref  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

MODULE = "transformers.models.bert.convert_bert_original_tf2_checkpoint_to_pytorch"
PREFIX = "bert_model.ckpt"
BY_VALUE = ref.mapping


def tf2_arrays(seed: int) -> dict[str, np.ndarray]:
    """The encoder's variables under their object paths (no root, no .ATTRIBUTES suffix)."""
    h, heads = ref.HIDDEN, ref.HEADS
    d = h // heads
    v = ref.Values(seed)
    v.normal("layer_with_weights-0/embeddings", (ref.VOCAB, h))
    v.normal("layer_with_weights-1/embeddings", (ref.POSITIONS, h))
    v.normal("layer_with_weights-2/embeddings", (2, h))
    v.gamma("layer_with_weights-3/gamma", (h,))
    v.normal("layer_with_weights-3/beta", (h,))
    for i in range(ref.LAYERS):
        s = f"layer_with_weights-{4 + i}"
        for part in ("_query_dense", "_key_dense", "_value_dense"):
            v.normal(f"{s}/_attention_layer/{part}/kernel", (h, heads, d))
            v.normal(f"{s}/_attention_layer/{part}/bias", (heads, d))
        v.normal(f"{s}/_attention_output_dense/kernel", (heads, d, h))
        v.normal(f"{s}/_attention_output_dense/bias", (h,))
        v.gamma(f"{s}/_attention_layer_norm/gamma", (h,))
        v.normal(f"{s}/_attention_layer_norm/beta", (h,))
        v.normal(f"{s}/_intermediate_dense/kernel", (h, ref.INTERMEDIATE))
        v.normal(f"{s}/_intermediate_dense/bias", (ref.INTERMEDIATE,))
        v.normal(f"{s}/_output_dense/kernel", (ref.INTERMEDIATE, h))
        v.normal(f"{s}/_output_dense/bias", (h,))
        v.gamma(f"{s}/_output_layer_norm/gamma", (h,))
        v.normal(f"{s}/_output_layer_norm/beta", (h,))
    v.normal(f"layer_with_weights-{4 + ref.LAYERS}/kernel", (h, h))
    v.normal(f"layer_with_weights-{4 + ref.LAYERS}/bias", (h,))
    return v.arrays


def converter_module(script: Path) -> Any:
    spec = importlib.util.spec_from_file_location(MODULE, script)
    assert spec is not None and spec.loader is not None, script
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    spec.loader.exec_module(module)
    return module


def with_reshapes(tf_arrays: dict[str, np.ndarray], state: dict[str, np.ndarray]
                  ) -> dict[str, Any]:
    """make_references' mapping, and for what it cannot place, a tensor whose values are an
    HF tensor's in C order (``reshape``) or its transpose's (``reshape_transpose``)."""
    found = BY_VALUE(tf_arrays, state)
    for name, m in found.items():
        if m is not None:
            continue
        a = tf_arrays[name]
        for k, t in state.items():
            if t.size != a.size:
                continue
            if np.array_equal(a.reshape(t.shape), t):
                found[name] = {"hf": [k], "transform": "reshape"}
            elif t.ndim == 2 and np.array_equal(a.reshape(t.shape[::-1]).T, t):
                found[name] = {"hf": [k], "transform": "reshape_transpose"}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--script", type=Path, required=True,
                        help="transformers 4.57's "
                        "convert_bert_original_tf2_checkpoint_to_pytorch.py")
    parser.add_argument("--out", type=Path, default=ref.ROOT / "tests" / "data" / "hf")
    args = parser.parse_args()
    if not transformers.__version__.startswith("4.57."):
        sys.exit(f"transformers 4.57 is the reference; this is {transformers.__version__}")
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    load_tf2_weights_in_bert = converter_module(args.script).load_tf2_weights_in_bert

    c = ref.Case("bert_tf2", args.out)
    arrays = tf2_arrays(211)
    prefix = c.dir / PREFIX
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "arrays.npz"
        np.savez(npz, **arrays)
        jobs = Path(tmp) / "jobs.json"
        jobs.write_text(json.dumps([{"npz": str(npz), "prefix": str(prefix), "root": "model",
                                     "optimizer": True}]))
        subprocess.run([sys.executable, str(ref.ROOT / "tests" / "tf2_bert_writer.py"),
                        str(jobs)], check=True)
    # Every key, the object graph included (the converter skips it: mapped to null).
    tf_arrays = {n: np.asarray(ref.tf.train.load_variable(str(prefix), n))
                 for n, _ in ref.tf.train.list_variables(str(prefix))}
    (c.dir / "bert_config.json").write_text(json.dumps(ref.bert_config_json(), indent=2) + "\n")
    ref.bert_vocab(c.dir)
    c.tokenizer(transformers.BertTokenizer(str(c.dir / "vocab.txt")))
    # As the script's convert_tf2_checkpoint_to_pytorch does, on a model whose every parameter
    # is NaN first.
    config = transformers.BertConfig.from_json_file(str(c.dir / "bert_config.json"))
    torch.manual_seed(0)
    model = transformers.BertModel(config)
    ref.nan_fill(model)
    load_tf2_weights_in_bert(model, str(prefix), config)
    rng = np.random.default_rng(7)
    c.record.update(
        loader=f"{MODULE}.load_tf2_weights_in_bert(BertModel(config))",
        loader_source="transformers v4.57.x source tree (the script is not in the wheel)",
        config_source="BertConfig.from_json_file('bert_config.json')",
        checkpoint="tf.train.Checkpoint(model=..., optimizer=tf_keras legacy Adam).write; "
                   "object paths of official/nlp/bert's encoder (tests/tf2_bert_writer.py)")
    ref.mapping = with_reshapes  # type: ignore[assignment]  # Case.finish looks it up by name
    c.finish(model, tf_arrays,
             {"input_ids": ref.ids(rng, ref.VOCAB), "token_type_ids": ref.token_types()},
             {"last_hidden_state": "logits.npy", "pooler_output": "pooler_output.npy"})
    print(f"wrote {c.dir}")


if __name__ == "__main__":
    main()
