"""The public functions: read, write, convert."""

from __future__ import annotations

import dataclasses
import glob
import inspect
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import outputs, registry, storage
from ._tempfiles import discard
from .errors import ConverterWarning, UsageError, keyword, option
from .tensor import Checkpoint, Source, as_checkpoint

PathLike = str | os.PathLike[str]


def _declared(fn: Callable[..., Any]) -> tuple[frozenset[str], bool]:
    """The parameter names ``fn`` declares, and whether it takes any keyword (``**opts``)."""
    params = inspect.signature(fn).parameters
    return frozenset(params), any(p.kind is p.VAR_KEYWORD for p in params.values())


def _call(fn: Callable[..., Any], what: str, path: Path, *args: Any, **opts: Any) -> Any:
    names, any_keyword = _declared(fn)
    unknown = [] if any_keyword else sorted(set(opts) - names)
    if unknown:
        raise UsageError(f"{path}: the {what} does not take "
                         f"{', '.join(keyword(k) for k in unknown)}")
    return fn(*args, **opts)


def reader_options(format: str, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The options of ``wanted`` that the reader of ``format`` declares by name, for callers
    (the CLI) that offer one set of reader options for every format: each format takes those
    it knows and the rest are dropped. A reader's ``**opts`` takes none of them, since
    nothing says what it would do with them."""
    names, _ = _declared(registry.get(format).load().read)
    return {k: v for k, v in wanted.items() if k in names}


def read(path: PathLike, *, format: str | None = None,
         storage_options: Mapping[str, Any] | None = None, **opts: Any) -> Checkpoint:
    """Open a checkpoint lazily: only its header/index is read.

    Args:
        path: file, directory or TF checkpoint prefix.
        format: a registry name (``tf``, ``safetensors``, ``npz``, ``npy``, ``hdf5``); detected
            from the content (and suffix) when omitted.
        storage_options: fsspec options for a URL (credentials, ``endpoint_url`` ...), also
            used for the tensors read later.
        **opts: format options, e.g. ``verify=False`` for the TF reader.

    A URL (``s3://bucket/run/model.ckpt-100``, ``gs://``, ``hf://``, ``https://`` ...) is read
    on its storage: TF bundles, safetensors, npz and HDF5 by ranged reads (listing fetches the
    index, header or metadata only), other formats downloaded into a private temporary
    directory first.

    Returns:
        A :class:`Checkpoint` whose tensors read their data when asked; its ``source`` says
        what was read (format, layout, TF prefix and step ...), its ``metadata`` holds the
        file's own string metadata.

    Example:
        >>> ckpt = converter.read("model.ckpt-1000")
        >>> kernel = ckpt["dense/kernel"].read()
    """
    if storage.is_url(path):
        url = storage.check(str(path))
        storage.forget_under(url)  # sizes and listings as they are now
        storage.reopen(url)
        forget_options = storage.remember(url, storage_options)
        try:
            with storage.options(storage_options):
                ckpt, fmt = _read_url(url, format, opts)
        except BaseException:
            forget_options()
            raise
        ckpt = Checkpoint(dict(ckpt), ckpt.metadata, source=ckpt.source,
                          closers=[ckpt.close, forget_options])
    else:
        p = Path(storage.local(path))
        fmt = registry.for_input(p, format)
        ckpt = _call(fmt.load().read, f"{fmt.name} reader", p, p, **opts)
    # Every checkpoint read through the registry says which format read it, whatever the
    # reader (a plugin's may record nothing) put there.
    if ckpt.source is None:
        ckpt.source = Source(fmt.name, str(p))
    elif ckpt.source.format != fmt.name:
        ckpt.source = dataclasses.replace(ckpt.source, format=fmt.name)
    return ckpt


def _read_url(url: str, format: str | None, opts: dict[str, Any]
              ) -> tuple[Checkpoint, registry.Format]:
    fmt = registry.for_input(url, format)
    module = fmt.load()
    reader = getattr(module, "read_url", None)
    if reader is not None:
        return _call(reader, f"{fmt.name} reader", Path(storage.name(url)), url, **opts), fmt
    import tempfile

    # A format read from local files only: the object (or the prefix's objects) is fetched
    # into a private directory that closing the checkpoint removes.
    scratch = tempfile.mkdtemp(prefix="ckpt-remote-", dir=storage.scratch_dir())
    try:
        local = Path(storage.stage(url, scratch))
        ckpt = _call(module.read, f"{fmt.name} reader", local, local, **opts)
    except BaseException:
        discard(scratch)
        raise
    source = ckpt.source
    source = Source(fmt.name, url) if source is None else dataclasses.replace(source, path=url)
    return Checkpoint(dict(ckpt), ckpt.metadata, source=source, closers=[
        ckpt.close, lambda: discard(scratch)]), fmt


def write(
    checkpoint: Checkpoint | Mapping[str, Any],
    path: PathLike,
    *,
    format: str | None = None,
    force: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    **opts: Any,
) -> None:
    """Write a checkpoint (or a dict of arrays) atomically.

    Args:
        checkpoint: a Checkpoint or a mapping of names to arrays.
        path: destination; its suffix picks the format unless ``format`` is given.
        format: registry name of the destination format.
        force: overwrite existing outputs.
        storage_options: fsspec options when ``path`` is a URL.
        **opts: writer options (``compress=True`` for npz, ``progress=True`` ...).

    A URL is written as one object per file (see :func:`_write_url`).

    Example:
        >>> converter.write({"w": np.zeros(3)}, "weights.safetensors")
    """
    fmt = registry.for_output(os.fspath(path), format)
    if storage.is_url(path):
        with storage.options(storage_options):
            _write_url(as_checkpoint(checkpoint), str(path), fmt, force, opts, set())
        return
    _write(as_checkpoint(checkpoint), _output_path(storage.local(path), fmt), fmt, force, opts)


def _output_path(path: PathLike, fmt: registry.Format) -> Path:
    """``path`` as the writer takes it. A trailing ``/`` names a directory, which ``Path``
    would forget: a TF checkpoint goes in as ``DIR/model.ckpt``, and a one-file format refuses
    rather than write a file of the directory's name."""
    p = Path(path)
    if not str(path).endswith(("/", os.sep)) or fmt.name in ("npy", "hf"):
        return p
    if fmt.name == "tf":
        return p / "model.ckpt"
    raise UsageError(f"{path}: names a directory; {fmt.name} writes one file, so give its name")


def _write(ckpt: Checkpoint, path: Path, fmt: registry.Format, force: bool,
           opts: Mapping[str, Any]) -> Checkpoint:
    """Write ``ckpt`` in ``fmt``; returns the checkpoint the writer was given."""
    named = registry.by_suffix(path, plugins=False)
    if named is not None and named.name != fmt.name:
        # Another tool picks the format from the suffix and would misread the file.
        warnings.warn(f"{path}: writing {fmt.name} under a name that says {named.name}",
                      ConverterWarning, stacklevel=3)
    module = fmt.load()
    out = _portable(ckpt, fmt)
    written = _call(module.write, f"{fmt.name} writer", path, out, path, force=force, **opts)
    # A writer that maps the tensors into another model's names (hf) returns what it wrote.
    return written if isinstance(written, Checkpoint) else out


def _write_url(ckpt: Checkpoint, url: str, fmt: registry.Format, force: bool,
               opts: Mapping[str, Any], sources: set[str]) -> Checkpoint:
    """Write ``ckpt`` to remote storage through :func:`made_then_uploaded`: the writer's
    output is made complete in scratch space, then uploaded. ``sources`` are the URLs being
    read, which an output may not replace."""
    _output_path(url, fmt)  # refuses a directory for a one-file format, naming the URL
    storage.reopen(url)  # a new write: not the reads of a checkpoint closed before
    directory = url.endswith("/")
    opts = dict(opts)
    tf = fmt.name == "tf"
    prefix = storage.join(url, "model.ckpt") if directory else url.removesuffix(".index")
    named, pointers = [url], set()
    if tf:
        from .formats.tfbundle import remote

        _writable(url)  # before the run is listed

        # As locally, only the bundle's own objects refuse it; the run's state file is updated.
        named = [*remote.own_objects(prefix), prefix + ".index"]
        pointers = {storage.join(storage.parent(prefix), "checkpoint")}

    def make(local: Path) -> Checkpoint:
        out = _output_path(str(local) + ("/" if directory else ""), fmt)
        written = _write(ckpt, out, fmt, True, opts)
        made = out.parent / "checkpoint"
        if tf and made.exists():
            # Written from an empty scratch directory: the run's own is merged in.
            text = remote.text_after_saving_url(storage.parent(prefix), storage.name(prefix))
            made.write_text(text, encoding="utf-8")
        return written

    result: Checkpoint = made_then_uploaded(url, make, force=force, sources=sources,
                                            named=named, pointers=pointers)
    return result


def _writable(url: str) -> None:
    storage.check(url)
    if storage.protocol(url) in storage.READ_ONLY:
        raise UsageError(f"{url}: {storage.protocol(url)}:// is read-only")


def made_then_uploaded(url: str, make: Callable[[Path], Any], *, force: bool = False,
                       sources: set[str] | frozenset[str] = frozenset(),
                       named: Sequence[str] = (),
                       pointers: set[str] | frozenset[str] = frozenset()) -> Any:
    """Write to ``url`` with a writer that takes a local path (every format's writer,
    ``migrate``, the ``--html`` pages): run ``make(LOCAL)`` with a path in a private scratch
    directory standing for ``url``, then upload every file it made beside ``url``'s parent as
    one object each (:func:`storage.upload_all`: data before the index that names it, the
    ``checkpoint`` state file last). The objects ``named`` (default ``url``) are refused before
    anything is made if they exist, and every file made, unless ``force``; with ``force``, the
    earlier output's shards that the new one does not write (what the writer's
    :meth:`~converter.outputs.Outputs.sweep` patterns claim) are removed, as locally.
    ``sources`` are the URLs being read, which may not be replaced. ``pointers`` (a TF run's
    state file, which ``make`` merges with the one there) are rewritten whatever ``force``
    says, as TensorFlow rewrites them on every save. Returns what ``make`` returned."""
    import tempfile

    _writable(url)
    base = storage.parent(url)
    sources = set(sources)
    _refuse_existing([u.rstrip("/") for u in named or [url]], force, sources)
    scratch = tempfile.mkdtemp(prefix="ckpt-upload-")
    try:
        root = os.path.join(scratch, "out")
        os.makedirs(root)
        # The scratch files are not what was written; their sweeps show the earlier shards.
        with outputs.recording(), outputs.recording_sweeps() as sweeps:
            result = make(Path(root) / storage.name(url))
        targets = _targets(root, url, base, force, sources, pointers)
        stale = _stale_objects(sweeps, root, base, {t for _, t in targets})
        for target in stale:
            if target in sources:
                raise UsageError(f"{target}: rewriting this output would remove the "
                                 "checkpoint being converted; choose another output")
            if not force:
                raise UsageError(f"{target}: already exists (use {option('force')} to "
                                 "overwrite)")
        outputs.note_committed(storage.upload_all(targets, replace=force, stale=stale))
        return result
    finally:
        discard(scratch)


def _targets(root: str, url: str, base: str, force: bool, sources: set[str],
             pointers: set[str] | frozenset[str]) -> list[tuple[str, str]]:
    """``(local file, URL)`` for every file made under the scratch ``root``, placed under
    ``base`` as it lies under ``root``; refused when nothing was made, or when one that is not
    one of the ``pointers`` exists and not ``force``."""
    made = sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files)
    if not made:
        raise UsageError(f"{url}: nothing was made to upload")
    targets = [(os.path.join(root, rel), storage.join(base, rel.replace(os.sep, "/")))
               for rel in made]
    _refuse_existing([t for _, t in targets if t not in pointers], force, sources)
    return targets


def _stale_objects(sweeps: list[tuple[Path, str]], root: str, base: str,
                   written: set[str]) -> list[str]:
    """Objects beside the remote output that a writer's sweep pattern claims (an earlier
    output's shards) and this output does not write."""
    stale = []
    for directory, pattern in sweeps:
        rel = os.path.relpath(directory, root)
        where = base if rel == "." else storage.join(base, rel.replace(os.sep, "/"))
        claimed = re.compile(pattern)
        stale += [storage.join(where, n) for n in storage.listing(where)
                  if claimed.fullmatch(n) and storage.join(where, n) not in written]
    return sorted(set(stale))


def _refuse_existing(urls: list[str], force: bool, sources: set[str]) -> None:
    for target in urls:
        if target in sources:
            raise UsageError(f"{target}: is the checkpoint being converted; choose another "
                             "output")
        if not force and storage.exists(target):
            # As the local outputs say it, --force for the command line, force= for Python.
            raise UsageError(f"{target}: already exists (use {option('force')} to overwrite)")


def _portable(ckpt: Checkpoint, fmt: registry.Format) -> Checkpoint:
    """The checkpoint as written in format ``fmt``: without a TF2 object graph where the
    format has no strings. The graph is a string tensor describing the other keys, not a
    weight; such formats leave it out (with a warning) rather than refuse the whole
    checkpoint, and a TF checkpoint written from them gets a new one. Writers store only
    ``metadata``; ``source`` is kept for the caller (closing the result closes ``ckpt``)."""
    tensors: dict[str, Any] = dict(ckpt)
    if "string" not in fmt.stored_dtypes:
        # The graph is a string: the dtype test first spares judging every tensor's kind.
        graphs = [n for n, t in ckpt.items() if t.holds_strings and t.kind == "object_graph"]
        # A Hugging Face directory is a model's weights: no graph is expected there.
        if graphs and fmt.name != "hf":
            warnings.warn(f"{fmt.name} cannot hold the TF2 object graph ({graphs[0]}); "
                          "writing the tensors without it", ConverterWarning, stacklevel=4)
        for name in graphs:
            del tensors[name]
    return Checkpoint(tensors, ckpt.metadata, source=ckpt.source, closers=[ckpt.close])


def source_files(ckpt: Checkpoint, named: PathLike) -> set[str]:
    """Every file ``ckpt``, read through the path ``named``, depends on, whatever that path
    was: the files its tensors' bytes lie in, the file named, a directory's state file
    (wherever it points), and for a TF checkpoint its index, every data shard and the state
    file beside them (a directory or a data shard names a checkpoint as well as its prefix)."""
    named = Path(named)
    files = {t.span[0] for t in ckpt.values() if t.span is not None}
    candidates = [named, named / "checkpoint"]
    source = ckpt.source
    if source is not None:
        path = Path(source.path)
        candidates.append(path)
        if source.format == "tf":
            candidates += [path.with_name(path.name + ".index"), path.parent / "checkpoint"]
            candidates += path.parent.glob(glob.escape(path.name) + ".data-*-of-*")
    files.update(str(p) for p in candidates if p.is_file())
    return files


def convert(
    src: PathLike,
    dst: PathLike,
    *,
    to: str | None = None,
    source_format: str | None = None,
    rules: Any = None,
    force: bool = False,
    read_options: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
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
        storage_options: fsspec options for ``src`` and ``dst`` when they are URLs.
        **opts: writer options.

    Either may be a URL on remote storage (see :func:`read` and :func:`write`).

    Returns:
        The checkpoint that was written (after rules; without what the format cannot hold,
        such as a TF2 object graph in npz), still lazily readable; close it when done.
    """
    fmt = registry.for_output(os.fspath(dst), to)
    with storage.options(storage_options):
        ckpt = read(src, format=source_format, storage_options=storage_options,
                    **dict(read_options or {}))
        try:
            files = source_files(ckpt, src)
            if rules is not None:
                ckpt = rules.apply(ckpt)
            if storage.is_url(dst):
                return _write_url(ckpt, str(dst), fmt, force, opts, files)
            out = _output_path(storage.local(dst), fmt)
            # Outputs may not overwrite what they are read from, nor be readable by more
            # people.
            with outputs.from_source(Path(storage.local(src)), files, out):
                return _write(ckpt, out, fmt, force, opts)
        except BaseException:
            ckpt.close()
            raise
