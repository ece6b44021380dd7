"""Moving a checkpoint into a Keras model and saving it the way Keras reads it back.

``ckpt migrate SRC --model module:factory OUT`` builds the model with ``factory()``, loads SRC
into it variable by variable (:func:`converter.load_into`) and writes OUT: a Keras 3
``.weights.h5`` (what ``model.load_weights`` reads; a legacy ``.h5`` for tf.keras models) or,
for any other name, a TF2 object-based checkpoint (``tf.train.Checkpoint(model=...)``, with
its ``save_counter`` and the directory's ``checkpoint`` state file).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._tempfiles import discard
from .errors import UsageError, option
from .outputs import check_free, outputs

if TYPE_CHECKING:
    from .loaders import LoadReport


def load_factory(spec: str) -> Callable[[], Any]:
    """``package.module:function``, ``path/to/file.py:function`` or a Keras 3 ``.keras`` file
    (its architecture, loaded with ``keras.saving.load_model``). Errors are one-line
    :class:`UsageError` s naming the spec."""
    if spec.endswith(".keras") and ":" not in Path(spec).name:
        path = Path(spec)
        if not path.is_file():
            raise UsageError(f"--model {spec!r}: no such file")
        return lambda: _load_keras_file(path)
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--model {spec!r}: expected MODULE:FUNCTION, FILE.py:FUNCTION or "
                         "FILE.keras")
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise UsageError(f"--model {spec!r}: no such file {path}")
            loader_spec = importlib.util.spec_from_file_location(path.stem, path)
            if loader_spec is None or loader_spec.loader is None:  # no loader for its suffix
                raise UsageError(f"--model {spec!r}: {path} is not a Python file (FILE.py)")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules.setdefault(path.stem, module)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except UsageError:
        raise
    except Exception as exc:  # the user's module: any failure to import it is theirs to fix
        raise UsageError(f"--model {spec!r}: cannot import {module_name}: "
                         f"{type(exc).__name__}: {_one_line(exc)}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"--model {spec!r}: {module_name} has no function {attr!r}")

    def build() -> Any:
        try:
            return factory()
        except Exception as exc:
            raise UsageError(f"--model {spec!r}: {attr}() failed: {type(exc).__name__}: "
                             f"{_one_line(exc)}") from None

    return build


def _load_keras_file(path: Path) -> Any:
    import keras

    try:
        return keras.saving.load_model(path)
    except Exception as exc:
        raise UsageError(f"--model {str(path)!r}: Keras cannot load it: {type(exc).__name__}: "
                         f"{_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def save_model_file(model: Any, out: Path, *, force: bool = False) -> None:
    """Write the model atomically: ``.keras`` (architecture, weights and optimizer state) and
    ``.weights.h5``/``.h5`` through Keras, any other name as a TF2 checkpoint prefix."""
    name = out.name
    if name.endswith(".keras"):
        with outputs(force) as group:
            model.save(str(group.new(out, keep_suffix=".keras")))
        return
    if name.endswith(".h5"):
        suffix = ".weights.h5" if name.endswith(".weights.h5") else ".h5"
        if suffix == ".h5" and type(model).__module__.split(".")[0] == "keras":
            raise UsageError(f"{out}: a Keras 3 model saves its weights as .weights.h5 "
                             "(legacy .h5 is for tf.keras models); name the output *.weights.h5")
        with outputs(force) as group:
            model.save_weights(str(group.new(out, keep_suffix=suffix)))
        return
    import tensorflow as tf

    from .formats.tfbundle.layout import text_after_saving

    prefix = out.with_name(out.name[: -len(".index")]) if out.name.endswith(".index") else out
    check_free([prefix.with_name(prefix.name + ".index")], force)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    scratch = prefix.parent / f".{prefix.name}.tmp-migrate"
    discard(scratch)
    try:
        checkpoint = tf.train.Checkpoint(model=model)
        # What Checkpoint.save records (a save_counter of 1, the `checkpoint` state file), at
        # the prefix asked for rather than save's "-1"-suffixed one: latest_checkpoint(dir)
        # finds it, and restoring it into Checkpoint(model=...) matches every object.
        checkpoint.save_counter.assign_add(1)
        checkpoint.write(str(scratch / "ckpt"))
        files = sorted(scratch.glob("ckpt.*"))
        state = prefix.parent / "checkpoint"
        with outputs(True) as group:
            # Data shards first, the index (which makes the checkpoint visible) next, the
            # state file pointing at it last.
            for f in sorted(files, key=lambda p: p.name.endswith(".index")):
                shutil.move(f, group.new(prefix.with_name(prefix.name + f.name[len("ckpt"):])))
            group.new(state, pointer=True).write_text(
                text_after_saving(prefix.parent, prefix.name), encoding="utf-8")
    finally:
        discard(scratch)


def migrate(source: Any, model: Any, out: str | os.PathLike[str], *, rules: Any = None,
            strict: bool = True, match: str = "name", force: bool = False,
            with_optimizer: bool = False, order_from: str | os.PathLike[str] | None = None
            ) -> LoadReport:
    """Load ``source`` into ``model`` (or ``model()`` when given a factory) and save it to
    ``out``; returns the load report. Nothing is written when a strict load fails.

    Args:
        source: checkpoint path (any readable format), Checkpoint or dict of arrays.
        model: a built Keras model, or a function returning one.
        out: ``.keras``, ``.weights.h5`` (Keras 3), ``.h5`` (tf.keras) or a TF2 checkpoint
            prefix.
        rules, strict, match, order_from: as for :func:`converter.load_into`.
        force: overwrite existing outputs.
        with_optimizer: also carry the source's optimizer state (slots and step counter) into
            the compiled model's Keras 3 optimizer (``out`` must be a ``.keras`` file); see
            :func:`converter.loaders.optimizer.load_optimizer`.

    Example:
        >>> report = converter.migrate("tf1/model.ckpt-1000", build_model, "model.weights.h5",
        ...                            rules=Rules().preset("drop-optimizer"))
    """
    out = Path(out)
    if with_optimizer and not out.name.endswith(".keras"):
        raise UsageError(f"{out}: {option('with-optimizer')} writes the optimizer state into "
                         "a .keras file (weights + optimizer); name the output *.keras")
    check_free([out] if out.name.endswith((".h5", ".keras")) else
               [out.with_name(out.name + ".index")], force)
    if callable(model) and not hasattr(model, "weights"):
        model = model()
    if with_optimizer:
        from .loaders.optimizer import check_optimizer

        check_optimizer(model)
    from . import api
    from .loaders import load_into, read_source
    from .outputs import from_source

    # Read once: the weights, the optimizer state and the files an output may not overwrite
    # all come from this one checkpoint (closed here unless the caller handed it in).
    ckpt = read_source(source)
    try:
        report = load_into(model, ckpt, rules=rules, strict=strict, match=match,
                           order_from=order_from)
        if with_optimizer:
            from .loaders.optimizer import load_optimizer

            report.optimizer = load_optimizer(model, ckpt, report, rules=rules)
        if isinstance(source, (str, os.PathLike)):
            with from_source(Path(source), api.source_files(ckpt, source), out):
                save_model_file(model, out, force=force)
        else:
            save_model_file(model, out, force=force)
    finally:
        if ckpt is not source:
            ckpt.close()
    return report
