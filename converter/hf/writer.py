"""The ``hf`` format: a directory that transformers' ``from_pretrained`` loads.

``model.safetensors`` (``{"format": "pt"}`` metadata), or past ``max_shard_size``
``model-0000k-of-0000N.safetensors`` shards with ``model.safetensors.index.json``; then
``config.json`` and the tokenizer files. All of it is one output: written under temporary names
and renamed into place together, after every tensor and config key was checked.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from ..errors import FormatError, UsageError
from ..formats import safetensors
from ..outputs import outputs
from ..tensor import Checkpoint, Source
from . import DEFAULT_MAX_SHARD_SIZE, original, prepare
from .config import read_config

WEIGHTS = "model.safetensors"
# Every tokenizer file a family may write, and the tokenizer's config.
TOKENIZER_FILES = ("vocab.txt", "spiece.model", "vocab.json", "merges.txt",
                   "tokenizer_config.json")


def sniff(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and (
        (path / WEIGHTS).is_file() or (path / (WEIGHTS + ".index.json")).is_file())


def read(path: Path, *, family: str | None = None) -> Checkpoint:
    """The weights of a Hugging Face directory under the original release's names (its
    ``config.json`` says which family and class; ``family`` when the model type does not
    settle it). Read the directory as ``safetensors`` to keep transformers' names."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FormatError(f"{path}: not a Hugging Face model directory (no config.json)")
    config = read_config(config_file)
    # transformers' own choice: model.safetensors, else its index (an adapter's file beside
    # them is another model's).
    weights = path / WEIGHTS
    if not weights.is_file():
        weights = path / (WEIGHTS + ".index.json")
    if not weights.is_file():
        raise FormatError(f"{path}: no {WEIGHTS} or {WEIGHTS}.index.json")
    ckpt = safetensors.read(weights)
    try:
        back = original(ckpt, config, family=family, where=str(path))
    except BaseException:
        ckpt.close()
        raise
    back.source = Source("hf", str(path))
    back.metadata = {}  # {"format": "pt"} says how transformers saved it, not what it is
    return back


def write(ckpt: Checkpoint, path: Path, *, force: bool = False, progress: bool = False,
          family: str | None = None, config: str | Path | None = None,
          default_config: str | Path | None = None,
          max_shard_size: int | str | None = None) -> Checkpoint:
    """Write the directory ``path`` for ``ckpt``, an original release's checkpoint; returns
    the checkpoint written (transformers' names, the optimizer state gone).

    Args:
        family: the model family (detected from the names when None).
        config: the release's config file when it is not beside the checkpoint.
        default_config: a config for a checkpoint with none beside it (``ckpt batch``'s
            ``--config``, one file for a tree of releases); one beside it wins.
        max_shard_size: bytes per weights file, or a size such as ``"5GB"`` (transformers'
            own default when None).
    """
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: exists and is not a directory; a Hugging Face model is a "
                         "directory")
    prepared = prepare(ckpt, family=family, config=config, default_config=default_config)
    config_text = json.dumps(prepared.config, indent=2, sort_keys=True) + "\n"
    with outputs(force) as out:
        # Tokenizer files of an earlier output (of another family) would be read as this one's.
        out.sweep(path, "|".join(re.escape(n) for n in TOKENIZER_FILES))
        safetensors.write_into(out, prepared.checkpoint, path / WEIGHTS, progress=progress,
                               max_shard_size=DEFAULT_MAX_SHARD_SIZE if max_shard_size is None
                               else max_shard_size)
        out.new(path / "config.json").write_text(config_text, encoding="utf-8")
        for source, name in prepared.tokenizers:
            shutil.copyfile(source, out.new(path / name))
        if prepared.tokenizer_config:
            out.new(path / "tokenizer_config.json").write_text(
                json.dumps(prepared.tokenizer_config, indent=2) + "\n", encoding="utf-8")
    return prepared.checkpoint
