"""Which checkpoint a path names: a prefix, its ``.index`` or a data shard, or a directory (the
``checkpoint`` state file's latest, else the highest step; a SavedModel's ``variables/``).

Prefixes are strings, not ``Path``s: TensorFlow allows an empty basename (``saver.save(sess,
"run/")`` writes ``run/.index`` and ``run/.data-00000-of-00001``), which a ``Path`` cannot hold.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

from ...errors import ConverterWarning, FormatError
from .state import read_state
from .table import has_magic

DATA_RE = re.compile(r"^(?P<prefix>.*)\.data-(?P<i>\d{5})-of-(?P<n>\d{5})$", re.S)
STEP_RE = re.compile(r"-(\d+)$")
_SEPARATORS = "/" + (os.altsep or "") + os.sep


def basename(prefix: str) -> str:
    """The last component of a prefix, empty for one that ends in a separator."""
    cut = max(prefix.rfind(sep) for sep in _SEPARATORS)
    return prefix[cut + 1:]


def join(directory: str | os.PathLike[str], name: str) -> str:
    return os.path.join(os.fspath(directory), name)


def step_of(prefix: str | os.PathLike[str]) -> int:
    m = STEP_RE.search(basename(os.fspath(prefix)))
    return int(m.group(1)) if m else -1


def _shown(prefix: str) -> str:
    name = basename(prefix)
    return name if name else "the unnamed prefix (.index with no name before it)"


def prefixes_in(directory: Path) -> list[str]:
    """Every V2 checkpoint prefix in ``directory``, ordered by step (then name)."""
    found = [join(directory, p.name[: -len(".index")]) for p in directory.glob("*.index")]
    if (directory / ".index").exists():  # glob leaves out names starting with a dot
        found.append(join(directory, ""))
    return sorted(set(found), key=lambda p: (step_of(p), basename(p)))


def looks_like_v1(path: str | os.PathLike[str]) -> bool:
    """A pre-2016 single-file checkpoint: a LevelDB table on its own (no ``.index``)."""
    if not os.path.isfile(path):  # a FIFO or device would block the read below
        return False
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size < 48:
            return False
        f.seek(size - 48)
        return has_magic(f.read(48))


def v1_in(directory: Path) -> list[str]:
    """V1 checkpoints in ``directory`` with TF's ``*ckpt*`` names, ordered by step: without a
    state file the directory's name is all that marks it as a TF run."""
    files = [p for p in directory.glob("*ckpt*") if p.suffix not in (".meta", ".index")
             and not DATA_RE.match(p.name)]
    found = [str(p) for p in files if looks_like_v1(p)]
    return sorted(found, key=lambda p: (step_of(p), basename(p)))


def _exists(prefix: str) -> bool:
    return os.path.lexists(prefix + ".index") or looks_like_v1(prefix)


def _inside(directory: Path, prefix: str) -> bool:
    where = os.path.realpath(os.path.dirname(prefix) or ".")
    home = os.path.realpath(directory)
    return where == home or where.startswith(home.rstrip(os.sep) + os.sep)


def locate(directory: Path, recorded: str) -> str:
    """A prefix named in ``directory``'s state file: relative to the directory, or absolute.
    One that does not exist (a run copied from another machine) falls back to the prefix of
    that name in the directory; one outside the directory is followed, with a warning."""
    state = directory / "checkpoint"
    target = recorded if os.path.isabs(recorded) else join(directory, recorded)
    beside = join(directory, basename(recorded))
    if _exists(target):
        if not _inside(directory, target):
            also = f" ({_shown(beside)} is here too)" if _exists(beside) else ""
            warnings.warn(f"{state}: names {target}, outside {directory}; reading it{also}",
                          ConverterWarning, stacklevel=3)
        return target
    if _exists(beside):
        warnings.warn(f"{state}: names {recorded}, which does not exist here; using "
                      f"{_shown(beside)} in {directory} (copied from another machine?)",
                      ConverterWarning, stacklevel=3)
        return beside
    raise FormatError(f"{state}: names checkpoint {recorded}, which does not exist (nor does "
                      f"{_shown(beside)} in {directory})")


class V1(Exception):
    """The path is a pre-2016 V1 checkpoint, which only TensorFlow reads."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def resolve(path: Path) -> tuple[str, dict[str, Any]]:
    """The checkpoint prefix that ``path`` names, and how it was found (``Source`` fields).
    Raises :class:`V1` (with the file) for a V1 checkpoint."""
    meta: dict[str, Any] = {}
    if path.is_dir():
        directory = path
        if not os.path.lexists(directory / "checkpoint") and (directory / "variables").is_dir():
            directory = directory / "variables"  # a SavedModel
            meta["saved_model"] = str(path)
        everything = prefixes_in(directory)
        state = read_state(directory)
        if state is not None and state.latest is not None:
            prefix = locate(directory, state.latest)
        elif everything:
            prefix = everything[-1]
        elif old := v1_in(directory):
            prefix = old[-1]
        else:
            raise FormatError(f"{path}: no TensorFlow checkpoint here (no 'checkpoint' state "
                              "file and no .index file)")
        meta["checkpoints"] = [(p, step if (step := step_of(p)) >= 0 else None)
                               for p in everything]
    elif path.name.endswith(".index"):
        prefix = str(path)[: -len(".index")]
    elif m := DATA_RE.match(path.name):
        prefix = join(path.parent, m.group("prefix"))
    else:
        prefix = str(path)
    if not os.path.lexists(prefix + ".index"):
        if looks_like_v1(prefix):
            raise V1(prefix)
        raise FormatError(f"{prefix}: no such checkpoint ({basename(prefix)}.index not found)")
    if (step := step_of(prefix)) >= 0:
        meta["step"] = step
    return prefix, meta
