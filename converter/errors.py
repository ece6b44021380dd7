"""The exception family of converter.

Library code raises these; only the CLI turns them into one line on stderr and an exit code.
"""

from __future__ import annotations


class ConverterError(Exception):
    """Base of every error converter raises on purpose."""


class ConverterWarning(UserWarning):
    """Something was resolved by a guess the user should know about."""


class FormatError(ConverterError):
    """A file is malformed, of an unknown format, or cannot hold what was asked of it."""


class CorruptionError(FormatError):
    """Stored data fails its checksum or points outside its file."""


class RenameError(ConverterError):
    """Rename rules are invalid or collide."""


class LoadError(ConverterError):
    """Weights do not fit the model they are loaded into."""


class UsageError(ConverterError):
    """The caller asked for something that cannot be done (bad option, existing output, ...)."""
