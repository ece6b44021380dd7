"""Sizes as people write them: ``5GB`` is 5·10⁹ bytes and ``5GiB`` 5·2³⁰, as Hugging Face
counts; a plain int is bytes. One parser for the command line and the Python API."""

from __future__ import annotations

import re

from .errors import UsageError

UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", re.I)


def parse_size(value: int | str, what: str = "size") -> int:
    """Bytes from ``value`` (``500MB``, ``2GiB``, ``1000``); UsageError naming ``what``
    otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise UsageError(f"{what} must be at least one byte, not {value}")
        return value
    m = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise UsageError(f"{what}: not a size: {value!r} (e.g. 500MB, 5GB, 2GiB)")
    size = float(m.group(1)) * UNITS[(m.group(2) or "").upper()]
    if size < 1:
        raise UsageError(f"{what} must be at least one byte: {value!r}")
    return int(size)


def human(n: float) -> str:
    """``512 B``, ``1.5 KiB``, ``3.2 GiB``: bytes in binary units, one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError
