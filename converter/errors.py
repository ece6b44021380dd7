"""The exception family of converter.

Library code raises these; only the CLI turns them into one line on stderr and an exit code.

Messages that name an option the caller could set (``force=True`` in Python, ``--force`` on
the command line) hold it as ``option("force")``; the message is spelled for whoever reads it:
Python spellings by default, command-line flags inside ``speaking("cli")`` (the CLI's main).
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator
from typing import Any

# {option: (Python spelling, command-line spelling)}
SPELLINGS = {
    "force": ("force=True", "--force"),
    "no-strict": ("strict=False", "--no-strict"),
    "match-order": ('match="order"', "--match order"),
    "keras-names": ('rules=Rules().preset("keras-names")', "--preset keras-names"),
    "drop-optimizer": ('rules=Rules().preset("drop-optimizer")', "--preset drop-optimizer"),
    "rename": ("rules=Rules().rename(PATTERN, REPLACEMENT)", "--rename PATTERN=REPLACEMENT"),
    "with-optimizer": ("with_optimizer=True", "--with-optimizer"),
}
_MARK = re.compile("\x00(=?[^\x00]+)\x00")
_audience: contextvars.ContextVar[int] = contextvars.ContextVar("audience", default=0)


def option(name: str) -> str:
    """A placeholder for option ``name`` in a message, spelled when the message is shown."""
    if name not in SPELLINGS:
        raise KeyError(name)
    return f"\x00{name}\x00"


def keyword(name: str) -> str:
    """A placeholder for the keyword argument ``name`` (``max_shard_size``), spelled
    ``max_shard_size=`` for Python and ``--max-shard-size`` for the command line."""
    return f"\x00={name}\x00"


def spell(text: str, cli: bool | None = None) -> str:
    """``text`` with its option placeholders spelled for Python or (``cli``) the command line;
    by default for the current audience (see :func:`speaking`)."""
    index = _audience.get() if cli is None else int(cli)
    return _MARK.sub(lambda m: _spelled(m.group(1), index), text)


def _spelled(name: str, index: int) -> str:
    if name.startswith("="):
        return "--" + name[1:].replace("_", "-") if index else name[1:] + "="
    return SPELLINGS[name][index] if name in SPELLINGS else f"\x00{name}\x00"


@contextlib.contextmanager
def speaking(audience: str) -> Iterator[None]:
    """Spell messages shown inside the block for ``"cli"`` or ``"python"``."""
    token = _audience.set(1 if audience == "cli" else 0)
    try:
        yield
    finally:
        _audience.reset(token)


class ConverterError(Exception):
    """Base of every error converter raises on purpose."""

    def __str__(self) -> str:
        return spell(super().__str__())


class ConverterWarning(UserWarning):
    """Something was resolved by a guess the user should know about."""

    def __str__(self) -> str:
        return spell(super().__str__())


class FormatError(ConverterError):
    """A file is malformed, of an unknown format, or cannot hold what was asked of it."""


class CorruptionError(FormatError):
    """Stored data fails its checksum or points outside its file."""


class RenameError(ConverterError):
    """Rename rules are invalid or collide."""


class LoadError(ConverterError):
    """Weights do not fit the model they are loaded into.

    ``report`` is the :class:`converter.loaders.LoadReport` of the failed load when there is
    one (what matched, what is missing, unexpected or misfit), else None.
    """

    def __init__(self, message: str, *args: Any, report: Any = None) -> None:
        super().__init__(message, *args)
        self.report = report


class UsageError(ConverterError):
    """The caller asked for something that cannot be done (bad option, existing output, ...)."""


class StorageError(ConverterError):
    """Remote storage could not be reached or failed: the connection was refused or timed out,
    the host name does not resolve, TLS failed, or the server answered with an HTTP 5xx error.
    Says nothing about the file itself (not a :class:`FormatError`); trying again later may
    work. A missing object is FileNotFoundError, bad storage options are UsageError."""
