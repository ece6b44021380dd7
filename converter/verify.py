"""Checking every tensor of a checkpoint: readable, within its file, matching its checksum."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConverterError, FormatError, StorageError, UsageError
from .formats.stream import SpanReader, check_span


@dataclass
class TensorStatus:
    name: str
    ok: bool
    nbytes: int
    error: str | None = None


@dataclass
class VerifyReport:
    """What ``verify`` found: a file-level ``error`` (the checkpoint did not open) or one status
    per tensor."""

    path: str
    format: str | None
    error: str | None = None
    tensors: list[TensorStatus] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and all(t.ok for t in self.tensors)

    @property
    def bad(self) -> list[TensorStatus]:
        return [t for t in self.tensors if not t.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "ok": self.ok, "error": self.error,
                "tensors": [asdict(t) for t in self.tensors]}


def verify(path: str | Path, *, format: str | None = None, **opts: Any) -> VerifyReport:
    """Read every tensor of ``path`` once (streaming, so memory stays bounded) and report.

    Raises:
        FormatError: ``path`` is not there, or not a checkpoint of a known format (nothing to
            verify; a damaged checkpoint is reported, not raised).
        UsageError: ``verify=False`` (checksums are what is verified).
        StorageError: the storage holding ``path`` cannot be reached or fails, when the
            checking starts or on the way (that says nothing about the file).

    Example:
        >>> report = converter.verify("model.ckpt-1000")
        >>> report.ok, [t.name for t in report.bad]
    """
    from . import storage

    # Finding the format and staging a copy go to the storage too, not only the read.
    with storage.options(opts.get("storage_options")):
        return _verify(path, format, opts)


def _verify(path: str | Path, format: str | None, opts: dict[str, Any]) -> VerifyReport:
    from . import api, storage

    if opts.get("verify") is False:
        raise UsageError("verify() always checks checksums: it takes no verify=False")
    report = VerifyReport(str(path), format)
    fmt = format_to_verify(path, format)
    report.format = fmt.name
    if storage.is_url(path):
        if fmt.integrity is not None:
            # The format's own check reads a local file: verify a copy, reported as the URL.
            with tempfile.TemporaryDirectory(prefix="ckpt-verify-") as scratch:
                try:
                    local = storage.stage(str(path), scratch)
                except StorageError:
                    raise
                except ConverterError as exc:
                    report.error = str(exc)
                    return report
                staged = verify(local, format=fmt.name, **opts)
                return _as_url(staged, local, str(path))
    try:
        ckpt = api.read(path, format=fmt.name, **opts)
        # A format may check more than reading does (npz: each member's zip CRC-32).
        problems = {} if storage.is_url(path) else fmt.check_integrity(Path(path))
    except StorageError:
        raise
    except ConverterError as exc:
        report.error = str(exc)
        return report
    except OSError as exc:
        report.error = _os_error(path, exc)
        return report
    with ckpt, SpanReader() as files:
        for tensor in ckpt.values():
            try:
                if tensor.name in problems:
                    raise ConverterError(problems[tensor.name])
                if tensor.span is not None and not tensor.holds_strings:
                    check_span(tensor, files)
                else:
                    tensor.read()
                report.tensors.append(TensorStatus(tensor.name, True, tensor.nbytes))
            except StorageError:
                raise
            except (ConverterError, OSError) as exc:
                text = str(exc) if isinstance(exc, ConverterError) else _os_error(path, exc)
                report.tensors.append(TensorStatus(tensor.name, False, tensor.nbytes, text))
    return report


def format_to_verify(path: str | Path, name: str | None) -> Any:
    """The format to verify ``path`` in. Raised, not reported: a path that is not there, or
    not a checkpoint of a known format, has nothing to verify. A file named for a format whose
    content fails it (empty, cut short) is verified in that format: damaged, so reported."""
    from . import registry, storage

    if storage.is_url(path):
        url = str(path)
        if not _remote_exists(url):
            raise FormatError(f"{url}: no such file or directory")
        return registry.for_input(url, name)
    try:
        return registry.for_input(path, name)
    except FormatError:
        named = registry.by_suffix(Path(path)) if name is None and Path(path).is_file() \
            else None
        if named is None:
            raise
        return named


def _remote_exists(url: str) -> bool:
    """Whether ``url`` names an object, a TF prefix, a sharded safetensors output or a prefix
    with objects under it."""
    from . import storage

    if not url.endswith("/") and any(storage.exists(url + suffix)
                                     for suffix in ("", ".index", ".index.json")):
        return True
    return bool(storage.listing(url))


def _os_error(path: str | Path, exc: OSError) -> str:
    """An OSError in one line naming the file it is about (a shard, not only the prefix)."""
    where = exc.filename if exc.filename else path
    if exc.filename and not os.path.isabs(where):
        where = os.path.join(os.path.dirname(os.path.abspath(path)), os.path.basename(where))
    return f"{where}: {exc.strerror or exc}"


def _as_url(report: VerifyReport, local: str, url: str) -> VerifyReport:
    """A report on a local copy, naming the URL it was copied from."""
    def named(text: str | None) -> str | None:
        return text.replace(local, url) if text else text

    return VerifyReport(url, report.format, named(report.error),
                        [dataclasses.replace(t, error=named(t.error)) for t in report.tensors])
