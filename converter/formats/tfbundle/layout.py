"""The bundle layout on disk: what TensorFlow names the files of a checkpoint, and which
checkpoint a path names.

A checkpoint ``PREFIX`` is ``PREFIX.index`` plus data shards ``PREFIX.data-NNNNN-of-NNNNN``;
a training run's prefixes end in ``-STEP``. A path names a prefix, its ``.index`` or a data
shard, or a directory: the ``checkpoint`` state file's latest, else the highest step; a
SavedModel's ``variables/``. Prefixes are strings, not ``Path``s: TensorFlow allows an empty
basename (``saver.save(sess, "run/")`` writes ``run/.index`` and ``run/.data-00000-of-00001``),
which a ``Path`` cannot hold.

The ``checkpoint`` state file is a ``CheckpointState`` message
(``tensorflow/python/checkpoint/checkpoint_state.proto``) in protobuf text format, as
``tf.train.update_checkpoint_state`` writes it::

    model_checkpoint_path: "model.ckpt-8"
    all_model_checkpoint_paths: "model.ckpt-4"
    all_model_checkpoint_paths: "model.ckpt-8"
    all_model_checkpoint_timestamps: 1700000000.5      (optional, one per path)
    last_preserved_timestamp: 1699999999.0             (optional)

Strings use C escapes (``\\"``, ``\\\\``, ``\\n``, octal ``\\303``, hex ``\\xc3``) and are UTF-8.
One reader (:func:`read_state`) and one writer (:func:`format_state`) here, so that a name read
back is the name written, escapes and all.
"""

from __future__ import annotations

import math
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ConverterWarning, FormatError
from .._common import read_regular
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


def shard_path(prefix: str | os.PathLike[str], i: int, n: int) -> Path:
    return Path(f"{os.fspath(prefix)}.data-{i:05d}-of-{n:05d}")


def shards_pattern(name: str) -> str:
    """A regex matching (in full) the names of every data shard of prefix ``name``, whatever
    the shard count: an earlier bundle of that prefix may have had more."""
    return re.escape(name) + r"\.data-\d{5}-of-\d{5}"


# The ``checkpoint`` state file.

NAME = "checkpoint"
MAX_SIZE = 16 << 20  # a state file names a handful of prefixes; anything bigger is not one

_STRING = r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\''
_LINE = re.compile(rf"^\s*(\w+)\s*:?\s*((?:(?:{_STRING})\s*)+|[-+\w.]+)\s*(?:#.*)?$")
_ESCAPE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))", re.S)
_SIMPLE = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b", b"f": b"\f",
           b"v": b"\v", b"\\": b"\\", b"'": b"'", b'"': b'"', b"?": b"?"}


@dataclass
class State:
    """What a state file says; paths as written (relative to its directory, or absolute)."""

    latest: str | None = None
    paths: list[str] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    last_preserved: float | None = None


def _unescape(literal: bytes, where: str) -> bytes:
    def one(m: re.Match) -> bytes:
        octal, hexa, char = m.groups()
        if octal is not None:
            value = int(octal, 8)
            if value > 0xFF:
                raise FormatError(f"{where}: bad escape \\{octal.decode()}")
            return bytes([value])
        if hexa is not None:
            return bytes([int(hexa, 16)])
        if char not in _SIMPLE:
            raise FormatError(f"{where}: unknown escape \\{char.decode('latin1')}")
        return _SIMPLE[char]

    return _ESCAPE.sub(one, literal)


def _strings(value: str, where: str) -> str:
    """Adjacent literals concatenated, unescaped, decoded as file names are."""
    raw = b"".join(_unescape(s[1:-1].encode("utf-8", "surrogateescape"), where)
                   for s in re.findall(_STRING, value))
    return os.fsdecode(raw)


def _number(value: str, where: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise FormatError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise FormatError(f"{where}: {value!r} is not a finite number")
    return number


def parse_state(text: str, where: str) -> State:
    """A state file's text; FormatError (naming ``where`` and the line) for what TF would not
    parse either. Fields this version does not know are skipped, as newer TFs may add some."""
    state = State()
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            raise FormatError(f"{where}: line {lineno} is not a 'key: value' line")
        key, value = m.groups()
        at = f"{where}: line {lineno}"
        if key == "model_checkpoint_path":
            state.latest = _strings(value, at)
        elif key == "all_model_checkpoint_paths":
            state.paths.append(_strings(value, at))
        elif key == "all_model_checkpoint_timestamps":
            state.timestamps.append(_number(value, at))
        elif key == "last_preserved_timestamp":
            state.last_preserved = _number(value, at)
    return state


def read_state(directory: Path) -> State | None:
    """The state file in ``directory``; None when there is none, or (with a warning, as TF
    gives) when it does not parse. FormatError for one that is not a regular file or is too
    big to be one, which TF would hang on or load whole."""
    path = directory / NAME
    if not os.path.lexists(path):
        return None
    text = read_regular(path, MAX_SIZE).decode("utf-8", "surrogateescape")
    try:
        return parse_state(text, str(path))
    except FormatError as exc:
        warnings.warn(f"{exc}; ignoring it", ConverterWarning, stacklevel=2)
        return None


def _escape(value: str) -> str:
    # What protobuf's text format writes (CEscape with UTF-8 kept as is): quotes, backslashes
    # and control characters escaped; bytes that are not UTF-8 (a file name decoded with
    # surrogateescape) in octal.
    out = []
    for ch in value:
        code = ord(ch)
        if ch in "\"'\\":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\{code:03o}")
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte kept by surrogateescape
            out.append(f"\\{code - 0xDC00:03o}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def format_state(state: State) -> str:
    lines = []
    if state.latest is not None:
        lines.append(f"model_checkpoint_path: {_escape(state.latest)}")
    lines += [f"all_model_checkpoint_paths: {_escape(p)}" for p in state.paths]
    lines += [f"all_model_checkpoint_timestamps: {t!r}" for t in state.timestamps]
    if state.last_preserved is not None:
        lines.append(f"last_preserved_timestamp: {state.last_preserved!r}")
    return "".join(line + "\n" for line in lines)


def updated_state(old: State | None, directory: str | os.PathLike[str], name: str,
                  now: float | None = None, *, by_name: bool = False) -> State:
    """The state after saving prefix ``name`` in ``directory``: it becomes the latest and moves
    to the end of the list (an absolute path TF wrote for it included); timestamps are kept
    while they pair up with paths, as TF's CheckpointManager reads them. With ``by_name``,
    paths are the same prefix when their last components are (a state file on object
    storage, whose paths are looked up beside it)."""
    old = old or State()
    paired = len(old.timestamps) == len(old.paths) and bool(old.paths)
    pairs = list(zip(old.paths, old.timestamps if paired else [0.0] * len(old.paths),
                     strict=True))

    def where(p: str) -> str:
        # Absolute: TF records absolute paths, and the directory may be relative to the cwd.
        return basename(p) if by_name else os.path.abspath(os.path.join(directory, p))

    this = where(name)
    pairs = [(p, t) for p, t in pairs if where(p) != this]
    pairs.append((name, time.time() if now is None else now))
    return State(latest=name, paths=[p for p, _ in pairs],
                 timestamps=[t for _, t in pairs] if paired else [],
                 last_preserved=old.last_preserved)


def text_after_saving(directory: Path, name: str) -> str:
    """The state file's text once prefix ``name`` has been saved in ``directory``."""
    return format_state(updated_state(read_state(directory), directory, name))


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
