"""Checking every tensor of a checkpoint: readable, within its file, matching its checksum."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConverterError
from .formats.stream import chunks


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

    Example:
        >>> report = converter.verify("model.ckpt-1000")
        >>> report.ok, [t.name for t in report.bad]
    """
    from . import api, registry

    report = VerifyReport(str(path), format)
    try:
        fmt = registry.for_input(Path(path), format)
        report.format = fmt.name
        ckpt = api.read(path, format=fmt.name, **opts)
        # A format may check more than reading does (npz: each member's zip CRC-32).
        problems = fmt.check_integrity(Path(path))
    except ConverterError as exc:
        report.error = str(exc)
        return report
    except OSError as exc:
        report.error = f"{path}: {exc.strerror or exc}"
        return report
    with ckpt:
        for tensor in ckpt.values():
            try:
                if tensor.name in problems:
                    raise ConverterError(problems[tensor.name])
                if tensor.span is not None and not tensor.dtype.hasobject:
                    for _ in chunks(tensor):
                        pass
                else:
                    tensor.read()
                report.tensors.append(TensorStatus(tensor.name, True, tensor.nbytes))
            except (ConverterError, OSError) as exc:
                report.tensors.append(TensorStatus(tensor.name, False, tensor.nbytes, str(exc)))
    return report
