"""Rules that change names only: regex rename, exact map, include/exclude, prefixes,
renumbering."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RenameError
from .core import (
    Entry,
    Pattern,
    Rule,
    check_int,
    check_str,
    check_strs,
    compile_regex,
    each_entry,
    parse_toml,
    unmatched_names,
)

_GROUP_REF = re.compile(r"\\\\|\\g<([^>]*)>|\\([1-9][0-9]?)")


@dataclass(frozen=True)
class Rename(Rule):
    """Regex substitution in every name (all occurrences, Python ``re.sub`` semantics)."""

    key = "rename"
    pattern: str
    to: str
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_str(self.pattern, "rename pattern")
        if not isinstance(self.to, str):
            raise RenameError(f"rename {self.pattern!r}: replacement must be a string")
        regex = compile_regex(self.pattern)
        for m in _GROUP_REF.finditer(self.to):
            ref = m.group(1) or m.group(2)
            if ref is None:
                continue
            ok = int(ref) <= regex.groups if ref.isdigit() else ref in regex.groupindex
            if not ok:
                raise RenameError(f"rename {self.pattern!r}: replacement {self.to!r} refers to "
                                  f"group {ref!r}, which the pattern does not have")
        object.__setattr__(self, "regex", regex)

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        return each_entry(entries, self._rename)

    def _rename(self, e: Entry) -> Entry | None:
        try:
            name, n = self.regex.subn(self.to, e.name)
        except (re.error, IndexError) as exc:
            raise RenameError(f"{e.name!r}: {exc}") from None
        if not n:
            return None
        if not name:
            raise RenameError(f"{e.name!r} would become an empty name")
        return e.renamed(name)

    def __str__(self) -> str:
        return f"rename {self.pattern!r} -> {self.to!r}"


@dataclass(frozen=True)
class Renumber(Rule):
    """Add ``offset`` to the number the pattern's first group captures, in place: a Keras
    functional model's ``layer_with_weights-4`` (its fifth layer with weights, the first
    Transformer block) as block 0 with ``offset = -4``."""

    key = "renumber"
    pattern: str
    offset: int

    def __post_init__(self) -> None:
        check_int(self.offset, "renumber offset")
        if Pattern(self.pattern).regex.groups < 1:
            raise RenameError(f"renumber {self.pattern!r}: the pattern must capture the number "
                              "(a group, or a glob's *)")

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        pattern = Pattern(self.pattern)

        def change(e: Entry) -> Entry | None:
            m = pattern.match(e.name)
            if m is None or m.group(1) is None:
                return None
            if not m.group(1).isdigit():
                raise RenameError(f"{e.name!r}: renumber {self.pattern!r} captured "
                                  f"{m.group(1)!r}, which is not a number")
            n = int(m.group(1)) + self.offset
            if n < 0:
                raise RenameError(f"{e.name!r}: renumber {self.pattern!r} by {self.offset} "
                                  f"gives {n}, a negative number")
            return e.renamed(e.name[:m.start(1)] + str(n) + e.name[m.end(1):])

        return each_entry(entries, change)

    def __str__(self) -> str:
        return f"renumber {self.pattern!r} by {self.offset:+d}"


@dataclass(frozen=True)
class Map(Rule):
    """Exact renames ``{old: new}``; ``source`` is the file they came from, if any."""

    key = "map"
    items: tuple[tuple[str, str], ...]
    source: str | None = None

    def __post_init__(self) -> None:
        targets: dict[str, str] = {}
        for old, new in self.items:
            if not (isinstance(old, str) and isinstance(new, str) and old and new):
                raise RenameError(f"{self._where()}: names must be non-empty strings, "
                                  f"got {old!r} -> {new!r}")
            if targets.setdefault(old, new) != new:
                raise RenameError(f"{self._where()}: {old!r} is mapped twice, to "
                                  f"{targets[old]!r} and to {new!r}")

    @classmethod
    def merged(cls, maps: Sequence[Map]) -> Map:
        """One simultaneous map doing what consecutive maps ask for: every old name is looked
        up among the names as they were before the first, so ``A=B`` then ``B=A`` swap."""
        items: dict[str, tuple[str, Map]] = {}
        for m in maps:
            for old, new in m.items:
                seen = items.setdefault(old, (new, m))
                if seen[0] != new:
                    raise RenameError(f"{old!r} is mapped twice, to {seen[0]!r} by "
                                      f"{seen[1]} and to {new!r} by {m}")
        return cls(tuple((old, new) for old, (new, _) in items.items()))

    @classmethod
    def of(cls, mapping: Mapping[str, str], source: str | None = None) -> Map:
        if not isinstance(mapping, Mapping):
            raise RenameError(f"map must be a table of old = new names, got {mapping!r}")
        return cls(tuple(mapping.items()), source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Map:
        """Read ``{old: new}`` from a JSON object or a TOML table (optionally under ``map``)."""
        path = Path(path)
        if path.suffix not in (".json", ".toml"):
            raise RenameError(f"map file {str(path)!r}: expected a .json or .toml file")
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RenameError(f"map file {str(path)!r}: {exc.strerror or exc}") from None
        try:
            if path.suffix == ".json":
                data = json.loads(text)
            else:
                data = parse_toml(text, f"map file {str(path)!r}")
                if set(data) == {"map"}:
                    data = data["map"]
        except ValueError as exc:
            raise RenameError(f"map file {str(path)!r}: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise RenameError(f"map file {str(path)!r}: expected a table of \"old\" = \"new\" "
                              "strings (quote names holding '.' or '/' in TOML)")
        return cls.of(data, str(path))

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Map:
        if set(table) == {"map"}:
            return cls.of(table["map"])
        if set(table) == {"map_file"}:
            return cls.from_file(check_str(table["map_file"], "map_file"))
        raise RenameError(f"map rule: unknown option(s) {', '.join(sorted(set(table) - {'map'}))}")

    def table(self) -> dict[str, Any]:
        if self.source is not None:
            return {"map_file": self.source}
        return {"map": dict(self.items)}

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        mapping = dict(self.items)
        out = [e.renamed(mapping[e.name]) if e.name in mapping else e for e in entries]
        names = {e.name for e in entries}
        return out, unmatched_names([k for k in mapping if k not in names], "matched no tensor")

    def _where(self) -> str:
        return f"map file {self.source!r}" if self.source else "map"

    def __str__(self) -> str:
        if len(self.items) == 1 and self.source is None:
            return f"map {self.items[0][0]!r} -> {self.items[0][1]!r}"
        return f"{self._where()} ({len(self.items)} names)"


@dataclass(frozen=True)
class _Select(Rule):
    patterns: tuple[str, ...]
    compiled: tuple[Pattern, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        patterns = check_strs(self.patterns, f"{self.key} patterns")
        object.__setattr__(self, "patterns", patterns)
        object.__setattr__(self, "compiled", tuple(Pattern(p) for p in patterns))

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        hits = [0] * len(self.compiled)
        out = []
        for e in entries:
            matched = False
            for i, p in enumerate(self.compiled):
                if p.match(e.name):
                    hits[i] += 1
                    matched = True
            if matched == (self.key == "only"):
                out.append(e)
        missing = [p for p, n in zip(self.patterns, hits, strict=True) if not n]
        return out, unmatched_names(missing)

    def table(self) -> dict[str, Any]:
        return {self.key: list(self.patterns)}

    def __str__(self) -> str:
        return f"{self.key} " + ", ".join(repr(p) for p in self.patterns)


@dataclass(frozen=True)
class Only(_Select):
    """Keep only tensors whose name matches one of the patterns."""

    key = "only"


@dataclass(frozen=True)
class Exclude(_Select):
    """Drop tensors whose name matches one of the patterns."""

    key = "exclude"


@dataclass(frozen=True)
class StripPrefix(Rule):
    """Remove ``prefix`` from the names that start with it."""

    key = "strip_prefix"
    prefix: str

    def __post_init__(self) -> None:
        check_str(self.prefix, "strip_prefix")

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        return each_entry(entries, self._strip, "no name starts with it")

    def _strip(self, e: Entry) -> Entry | None:
        if not e.name.startswith(self.prefix):
            return None
        if e.name == self.prefix:
            raise RenameError(f"{e.name!r} would become an empty name")
        return e.renamed(e.name[len(self.prefix):])

    def __str__(self) -> str:
        return f"strip_prefix {self.prefix!r}"


@dataclass(frozen=True)
class AddPrefix(Rule):
    """Put ``prefix`` in front of every name."""

    key = "add_prefix"
    prefix: str

    def __post_init__(self) -> None:
        check_str(self.prefix, "add_prefix")

    def run(self, entries: list[Entry]) -> tuple[list[Entry], list[str]]:
        out = [e.renamed(self.prefix + e.name) for e in entries]
        return out, [] if out else ["matched nothing"]

    def __str__(self) -> str:
        return f"add_prefix {self.prefix!r}"
