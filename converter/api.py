"""The public functions: read, write, convert."""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import outputs, registry
from .errors import ConverterWarning, UsageError
from .tensor import Checkpoint, as_checkpoint

PathLike = str | os.PathLike[str]


def _call(fn: Callable[..., Any], what: str, *args: Any, **opts: Any) -> Any:
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(opts) - set(params))
        if unknown:
            raise UsageError(f"{what} does not take option(s): {', '.join(unknown)}")
    return fn(*args, **opts)


def read(path: PathLike, *, format: str | None = None, **opts: Any) -> Checkpoint:
    """Open a checkpoint lazily: only its header/index is read.

    Args:
        path: file, directory or TF checkpoint prefix.
        format: a registry name (``tf``, ``safetensors``, ``npz``, ``npy``, ``hdf5``); detected
            from the content (and suffix) when omitted.
        **opts: format options, e.g. ``verify=False`` for the TF reader.

    Returns:
        A :class:`Checkpoint` whose tensors read their data when asked.

    Example:
        >>> ckpt = converter.read("model.ckpt-1000")
        >>> kernel = ckpt["dense/kernel"].read()
    """
    p = Path(path)
    fmt = registry.get(format) if format else registry.detect(p)
    ckpt = _call(fmt.load().read, f"format {fmt.name!r} reader", p, **opts)
    # A "format" key stored by an earlier conversion names where the weights came from.
    if "format" in ckpt.metadata and ckpt.metadata["format"] != fmt.name:
        ckpt.metadata.setdefault("source_format", ckpt.metadata["format"])
    ckpt.metadata["format"] = fmt.name
    return ckpt


def write(
    checkpoint: Checkpoint | Mapping[str, Any],
    path: PathLike,
    *,
    format: str | None = None,
    force: bool = False,
    **opts: Any,
) -> None:
    """Write a checkpoint (or a dict of arrays) atomically.

    Args:
        checkpoint: a Checkpoint or a mapping of names to arrays.
        path: destination; its suffix picks the format unless ``format`` is given.
        format: registry name of the destination format.
        force: overwrite existing outputs.
        **opts: writer options (``compress=True`` for npz, ``progress=True`` ...).

    Example:
        >>> converter.write({"w": np.zeros(3)}, "weights.safetensors")
    """
    p = Path(path)
    fmt = registry.for_output(p, format)
    module = fmt.load()
    ckpt = _portable(as_checkpoint(checkpoint), fmt.name, module)
    _call(module.write, f"format {fmt.name!r} writer", ckpt, p, force=force, **opts)


# Where a checkpoint was read from: useful to show, wrong to write into outputs (the same
# conversion on another machine or from an unpacked archive must give the same bytes).
LOCAL_METADATA = ("prefix", "checkpoints", "saved_model")


def _portable(ckpt: Checkpoint, fmt: str, module: Any) -> Checkpoint:
    """The checkpoint as written: without machine-local metadata, and without a TF2 object
    graph where the format has no strings. The graph is a string tensor describing the other
    keys, not a weight; such formats leave it out (with a warning) rather than refuse the
    whole checkpoint, and a TF checkpoint written from them gets a new one."""
    tensors: dict[str, Any] = dict(ckpt)
    if "string" not in getattr(module, "DTYPES", ("string",)):
        # The graph is a string: the dtype test first spares judging every tensor's kind.
        graphs = [n for n, t in ckpt.items() if t.dtype.hasobject and t.kind == "object_graph"]
        if graphs:
            warnings.warn(f"{fmt} cannot hold the TF2 object graph ({graphs[0]}); writing the "
                          "tensors without it", ConverterWarning, stacklevel=3)
            for name in graphs:
                del tensors[name]
    metadata = {k: v for k, v in ckpt.metadata.items() if k not in LOCAL_METADATA}
    return Checkpoint(tensors, metadata)


def convert(
    src: PathLike,
    dst: PathLike,
    *,
    to: str | None = None,
    source_format: str | None = None,
    rules: Any = None,
    force: bool = False,
    read_options: Mapping[str, Any] | None = None,
    **opts: Any,
) -> Checkpoint:
    """Read ``src`` and write it to ``dst``, tensor by tensor.

    Args:
        src: source path (any readable format).
        dst: destination path.
        to: destination format (default: from ``dst``'s suffix).
        source_format: source format (default: detected).
        rules: an object with ``apply(checkpoint) -> Checkpoint`` (rename rules), or None.
        force: overwrite existing outputs.
        read_options: options for the reader (``verify=False`` ...).
        **opts: writer options.

    Returns:
        The checkpoint that was written (after rules), still lazily readable.
    """
    fmt = registry.for_output(Path(dst), to)
    ckpt = read(src, format=source_format, **dict(read_options or {}))
    try:
        files = {t.span[0] for t in ckpt.values() if t.span is not None}
        if rules is not None:
            ckpt = rules.apply(ckpt)
        # Outputs may not overwrite what they are read from, nor be readable by more people.
        with outputs.from_source(Path(src), files, Path(dst)):
            write(ckpt, dst, format=fmt.name, force=force, **opts)
    except BaseException:
        ckpt.close()
        raise
    return ckpt
