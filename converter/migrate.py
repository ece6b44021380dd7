"""Moving a checkpoint into a Keras model and saving it the way Keras reads it back.

``ckpt migrate SRC --model module:factory OUT`` builds the model with ``factory()``, loads SRC
into it variable by variable (:func:`converter.load_into`) and writes OUT: a Keras 3
``.weights.h5`` (what ``model.load_weights`` reads; a legacy ``.h5`` for tf.keras models) or,
for any other name, a TF2 object-based checkpoint (``tf.train.Checkpoint(model=...)``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import UsageError
from .loaders import LoadReport, load_into
from .outputs import check_free, outputs


def load_factory(spec: str) -> Callable[[], Any]:
    """``package.module:function`` or ``path/to/file.py:function``."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--model {spec!r}: expected MODULE:FUNCTION or FILE.py:FUNCTION")
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise UsageError(f"--model {spec!r}: no such file {path}")
            loader_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules.setdefault(path.stem, module)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--model {spec!r}: cannot import {module_name}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"--model {spec!r}: {module_name} has no function {attr!r}")
    return factory


def save_weights(model: Any, out: Path, *, force: bool = False) -> None:
    """Write the model's weights atomically: ``.weights.h5``/``.h5`` through Keras, any other
    name as a TF2 checkpoint prefix."""
    name = out.name
    if name.endswith(".h5"):
        suffix = ".weights.h5" if name.endswith(".weights.h5") else ".h5"
        with outputs(force) as group:
            model.save_weights(str(group.new(out, keep_suffix=suffix)))
        return
    import tensorflow as tf

    prefix = out.with_name(out.name[: -len(".index")]) if out.name.endswith(".index") else out
    check_free([prefix.with_name(prefix.name + ".index")], force)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    scratch = prefix.parent / f".{prefix.name}.tmp-migrate"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        tf.train.Checkpoint(model=model).write(str(scratch / "ckpt"))
        files = sorted(scratch.glob("ckpt.*"))
        with outputs(True) as group:
            # Data shards first, the index (which makes the checkpoint visible) last.
            for f in sorted(files, key=lambda p: p.name.endswith(".index")):
                shutil.move(f, group.new(prefix.with_name(prefix.name + f.name[len("ckpt"):])))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def migrate(source: Any, model: Any, out: str | os.PathLike[str], *, rules: Any = None,
            strict: bool = True, match: str = "name", force: bool = False) -> LoadReport:
    """Load ``source`` into ``model`` (or ``model()`` when given a factory) and save it to
    ``out``; returns the load report. Nothing is written when a strict load fails.

    Example:
        >>> report = converter.migrate("tf1/model.ckpt-1000", build_model, "model.weights.h5",
        ...                            rules=Rules().preset("drop-optimizer"))
    """
    out = Path(out)
    if callable(model) and not hasattr(model, "weights"):
        model = model()
    check_free([out] if out.name.endswith(".h5") else [out.with_name(out.name + ".index")],
               force)
    report = load_into(model, source, rules=rules, strict=strict, match=match)
    save_weights(model, out, force=force)
    return report
