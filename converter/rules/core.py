"""The pieces every rule uses: entries, name patterns and templates, the rule base class and
option checks. (Running rules and the plan they report: ``plan.py``.)

An :class:`Entry` is one tensor on its way through the rules: its current name, the source names
it came from, its kind/attrs, and its shape, dtype and loader when they are known (planning from
bare names knows none of them). Renaming replaces the name only; a transform wraps the loader, so
nothing is read until a writer asks.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from ..errors import ConverterWarning, RenameError
from ..kinds import tf1_kind
from ..tensor import Kind, Tensor
from ..tfnames import GRAPH_KEY, SLOT_MARK


class RuleWarning(ConverterWarning):
    """A rule (or one of its patterns or names) matched no tensor."""


def kind_of_name(name: str) -> Kind:
    """The kind of a bare name, judged from TF naming conventions (no reader to ask)."""
    if name == GRAPH_KEY:
        return "object_graph"
    if SLOT_MARK in name:
        return "slot"
    return tf1_kind(name)


@dataclass(frozen=True)
class Entry:
    """One tensor on its way through the rules.

    ``origin`` is the source tensor while no transform touched the entry, so the result can be
    that very tensor under a new name (same loader, same byte span).
    """

    name: str
    sources: tuple[str, ...]
    kind: Kind
    attrs: Mapping[str, str] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None
    dtype: np.dtype | None = None
    load: Callable[[], np.ndarray] | None = None
    origin: Tensor | None = None
    transforms: tuple[str, ...] = ()

    @classmethod
    def of_tensor(cls, name: str, tensor: Tensor) -> Entry:
        return cls(name, (name,), tensor.kind, tensor.attrs, tensor.shape, tensor.dtype,
                   tensor.read, tensor)

    @classmethod
    def of_name(cls, name: str) -> Entry:
        return cls(name, (name,), kind_of_name(name))

    def renamed(self, name: str) -> Entry:
        return replace(self, name=name)

    def transformed(
        self,
        label: str,
        shape: tuple[int, ...] | None,
        dtype: np.dtype | None,
        fn: Callable[[np.ndarray], np.ndarray],
        *,
        name: str | None = None,
        attrs: Mapping[str, str] | None = None,
    ) -> Entry:
        """A new entry whose values are ``fn(old values)``, computed when read."""
        load = None
        if self.load is not None:
            load = _composed(self.load, fn, name or self.name, shape)
        return replace(self, name=name or self.name, shape=shape, dtype=dtype, load=load,
                       origin=None, transforms=(*self.transforms, label),
                       attrs=self.attrs if attrs is None else attrs)

    def tensor(self) -> Tensor:
        """The Tensor this entry stands for (lazy; only a transformed one loses its span)."""
        if self.origin is not None:
            return self.origin.renamed(self.name)
        if self.load is None or self.shape is None or self.dtype is None:
            raise RenameError(f"tensor {self.name!r}: planned from a name only, it has no values")
        return Tensor(self.name, self.dtype, self.shape, self.load, kind=self.kind, span=None,
                      attrs=dict(self.attrs))


def _composed(
    load: Callable[[], np.ndarray],
    fn: Callable[[np.ndarray], np.ndarray],
    name: str,
    shape: tuple[int, ...] | None,
) -> Callable[[], np.ndarray]:
    def composed() -> np.ndarray:
        out = fn(load())
        # Shapes were promised at plan time; a mismatch here would be a bug in a transform.
        if shape is not None and out.shape != shape:
            raise RenameError(f"tensor {name!r}: transform gave shape {out.shape}, "
                              f"expected {shape}")
        return out

    return composed


def parse_toml(text: str, where: str) -> dict[str, Any]:
    """Parse TOML text (``tomllib``, or ``tomli`` before Python 3.11)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise RenameError(f"{where}: reading TOML needs Python 3.11+ or "
                              "'pip install tomli'") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RenameError(f"{where}: invalid TOML: {exc}") from None


def compile_regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise RenameError(f"invalid regular expression {text!r}: {exc}") from None


def glob_regex(glob: str) -> str:
    """A regex for a whole-name glob: ``*`` any run of characters (``/`` included) and a group
    for templates, ``?`` one character, ``[...]``/``[!...]`` a character class."""
    out, i, n = [], 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            while i < n and glob[i] == "*":
                i += 1
            out.append("(.*)")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i + 1 if glob[i:i + 1] == "!" else i
            j = glob.find("]", j + 1 if glob[j:j + 1] == "]" else j)  # a leading ] is literal
            if j < 0:
                out.append(re.escape(c))
                continue
            body = glob[i:j].replace("\\", "\\\\")
            if body.startswith("!"):
                body = "^" + body[1:]
            elif body.startswith("^"):
                body = "\\" + body
            out.append(f"[{body}]")
            i = j + 1
        else:
            out.append(re.escape(c))
    return "(?s:" + "".join(out) + ")"


class Pattern:
    """A name pattern: a glob matched against the whole name, or with the prefix ``re:`` a
    regular expression searched in the name (anchor it with ``^``/``$``)."""

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text:
            raise RenameError(f"a pattern must be a non-empty string, got {text!r}")
        self.text = text
        self.is_regex = text.startswith("re:")
        self.regex = compile_regex(text[3:] if self.is_regex else glob_regex(text))

    def match(self, name: str) -> re.Match[str] | None:
        return self.regex.search(name) if self.is_regex else self.regex.fullmatch(name)

    def __repr__(self) -> str:
        return repr(self.text)


def expand(match: re.Match[str], template: str) -> str:
    """``template`` with ``\\1``/``\\g<name>`` replaced from ``match``."""
    try:
        return match.expand(template)
    except (re.error, IndexError) as exc:
        raise RenameError(f"template {template!r}: {exc}") from None


class Rule:
    """One step of a rule list.

    Subclasses are frozen dataclasses whose first field holds the value of their TOML key
    (``key``) and whose other fields are the options of that table, named as in TOML.
    """

    key: ClassVar[str]

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        """The entries after this rule, and what of the rule matched nothing (empty when all
        of it matched)."""
        raise NotImplementedError

    def table(self) -> dict[str, Any]:
        """The TOML table of this rule (defaults omitted)."""
        out: dict[str, Any] = {}
        # Every concrete Rule is a dataclass; Rule itself is not, so mypy cannot know.
        for i, f in enumerate(dataclasses.fields(self)):  # type: ignore[arg-type]
            if not f.init:
                continue
            value = getattr(self, f.name)
            if i and f.default is not dataclasses.MISSING and value == f.default:
                continue
            out[self.key if i == 0 else f.name] = _plain(value)
        return out

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Rule:
        """Build the rule from its TOML table (the key named ``cls.key`` plus options)."""
        fields = [f for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
        names = [f.name for f in fields]
        args = {names[0]: table[cls.key]}
        unknown = sorted(set(table) - {cls.key} - set(names[1:]))
        if unknown:
            raise RenameError(f"{cls.key} rule: unknown option(s) {', '.join(unknown)} "
                              f"(known: {', '.join(names[1:]) or 'none'})")
        missing = [f.name for f in fields[1:] if f.default is dataclasses.MISSING
                   and f.name not in table]
        if missing:
            raise RenameError(f"{cls.key} rule: needs {', '.join(missing)}")
        args.update({k: v for k, v in table.items() if k != cls.key})
        return cls(**{k: _frozen(v) for k, v in args.items()})


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def check_ints(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise RenameError(f"{what} must be a list of integers, got {value!r}")
    return tuple(value)


def check_int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise RenameError(f"{what} must be an integer, got {value!r}")
    return value


def check_str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise RenameError(f"{what} must be a non-empty string, got {value!r}")
    return value


def check_strs(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not value:
        raise RenameError(f"{what} must be a string or a non-empty list of strings")
    return tuple(check_str(v, what) for v in value)


def unmatched_names(names: Sequence[str], what: str = "matched nothing") -> list[str]:
    """One note for names or patterns that matched nothing (the first few, then a count)."""
    if not names:
        return []
    shown = ", ".join(repr(n) for n in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return [f"{shown}{more} {what}"]


def each_entry(entries: list[Entry], change: Callable[[Entry], Entry | list[Entry] | None],
               nothing: str = "matched nothing") -> tuple[list[Entry], list[str]]:
    """``Rule.run`` for a rule that changes entries one at a time: ``change`` gives an entry's
    replacement (or replacements), or None to keep it as it is; the note ``nothing`` when it
    changed none."""
    out: list[Entry] = []
    hits = 0
    for e in entries:
        result = change(e)
        if result is None:
            out.append(e)
            continue
        hits += 1
        out.extend(result if isinstance(result, list) else [result])
    return out, [] if hits else [nothing]
