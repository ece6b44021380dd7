"""Make the TF1 name-based bundles ``scripts/bench.py`` measures, written by TensorFlow
(``tf.raw_ops.SaveV2``, the op ``tf.compat.v1.train.Saver`` runs) or by converter's own writer.

usage: python scripts/bench_fixtures.py OUT_PREFIX KIND [--writer tf|converter]

KIND:
  many   20,000 float32 tensors of 64x16 under 200 scopes (78 MiB)
  bert   BERT-base names with BERT's adam_m/adam_v slots and global_step (1.25 GiB)
  big    16 tensors, 8 kernels up to 8192x8192 with their biases (1.375 GiB)
  quick  201 tensors, 2.8 MiB: a smoke test
  mid    16 tensors of 8192x1024 (512 MiB): the remote rows
  256m   8 tensors of 8192x1024 (256 MiB): the size sweep's smallest
  4g     32 tensors of 8192x4096 (4 GiB): the size sweep's largest (``big`` is its middle)

Values are standard normal float32 from a fixed seed, so a kind is the same bundle whichever
writer made it. ``--writer tf`` (the default for every kind but ``quick``) needs TensorFlow.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

KINDS = ("many", "bert", "big", "quick", "mid", "256m", "4g")
WRITERS = ("tf", "converter")


class Entry(NamedTuple):
    """One array, stored under each of ``names`` (BERT's Adam slots start as copies of the
    weight, which keeps the fixture's memory at a third of its size)."""

    names: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str = "float32"
    scale: float = 1.0


def layout(kind: str) -> list[Entry]:
    """The tensors of ``kind``, without their values."""
    if kind == "many":
        return [Entry((f"scope_{i // 100}/var_{i}",), (64, 16)) for i in range(20000)]
    if kind == "big":
        entries = []
        for i in range(8):
            width = 8192 if i < 3 else 4096
            entries.append(Entry((f"model/layer_{i}/kernel",), (8192, width)))
            entries.append(Entry((f"model/layer_{i}/bias",), (width,)))
        return entries
    if kind == "mid":  # 512 MiB in 16 tensors: the remote rows' bundle
        return [Entry((f"model/layer_{i}/kernel",), (8192, 1024)) for i in range(16)]
    if kind == "256m":
        return [Entry((f"model/layer_{i}/kernel",), (8192, 1024)) for i in range(8)]
    if kind == "4g":
        return [Entry((f"model/layer_{i}/kernel",), (8192, 4096)) for i in range(32)]
    if kind == "quick":
        return [*(Entry((f"scope_{i // 10}/var_{i}",), (64, 16)) for i in range(200)),
                Entry(("big/kernel",), (512, 1024))]
    if kind == "bert":
        return _bert()
    raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def _bert(hidden: int = 768, layers: int = 12, vocab: int = 30522) -> list[Entry]:
    entries: list[Entry] = []

    def add(name: str, shape: tuple[int, ...]) -> None:
        entries.append(Entry((name, f"{name}/adam_m", f"{name}/adam_v"), shape, scale=0.02))

    def dense(scope: str, rows: int, cols: int) -> None:
        add(f"{scope}/kernel", (rows, cols))
        add(f"{scope}/bias", (cols,))

    def layer_norm(scope: str) -> None:
        add(f"{scope}/LayerNorm/gamma", (hidden,))
        add(f"{scope}/LayerNorm/beta", (hidden,))

    add("bert/embeddings/word_embeddings", (vocab, hidden))
    add("bert/embeddings/position_embeddings", (512, hidden))
    add("bert/embeddings/token_type_embeddings", (2, hidden))
    layer_norm("bert/embeddings")
    for i in range(layers):
        scope = f"bert/encoder/layer_{i}"
        for part in ("query", "key", "value"):
            dense(f"{scope}/attention/self/{part}", hidden, hidden)
        dense(f"{scope}/attention/output/dense", hidden, hidden)
        layer_norm(f"{scope}/attention/output")
        dense(f"{scope}/intermediate/dense", hidden, 4 * hidden)
        dense(f"{scope}/output/dense", 4 * hidden, hidden)
        layer_norm(f"{scope}/output")
    dense("bert/pooler/dense", hidden, hidden)
    entries.append(Entry(("global_step",), (), "int64"))
    return entries


def tensors(kind: str, seed: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, array)`` for every tensor of ``kind``, in the order they are written."""
    rng = np.random.default_rng(seed)
    for entry in layout(kind):
        if entry.dtype == "int64":
            array = np.full(entry.shape, 1000, dtype=np.int64)
        else:
            array = rng.standard_normal(entry.shape, dtype=np.float32)
            if entry.scale != 1.0:
                array *= np.float32(entry.scale)
        for name in entry.names:
            yield name, array


def write(prefix: str, kind: str, writer: str) -> tuple[int, int]:
    """Write ``kind`` as a bundle at ``prefix``; returns (tensors, bytes of tensor data)."""
    data = dict(tensors(kind))
    if writer == "tf":
        import tensorflow as tf

        tf.raw_ops.SaveV2(prefix=prefix, tensor_names=list(data),
                          shape_and_slices=[""] * len(data), tensors=list(data.values()))
    elif writer == "converter":
        import converter

        converter.write(data, prefix, format="tf")
    else:
        raise ValueError(f"unknown writer {writer!r}; expected one of {', '.join(WRITERS)}")
    return len(data), sum(a.nbytes for a in data.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("prefix", help="bundle prefix to write (OUT_PREFIX.index, .data-*)")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--writer", choices=WRITERS,
                        help="who writes the bundle (default: tf, converter for quick)")
    args = parser.parse_args(argv)
    writer = args.writer or ("converter" if args.kind == "quick" else "tf")
    count, nbytes = write(args.prefix, args.kind, writer)
    print(f"{args.prefix}: {count} tensors, {nbytes / 2**20:.1f} MiB, written by {writer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
