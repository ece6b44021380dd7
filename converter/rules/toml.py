"""Rules files: TOML with one ``[[rule]]`` table per rule, in order, and an optional top-level
``strict = true``. Each table holds one key naming the rule kind (``rename``, ``map``,
``map_file``, ``only``, ``exclude``, ``strip_prefix``, ``add_prefix``, ``renumber``, ``preset``,
``cast``, ``transpose``, ``reshape``, ``merge_axes``, ``squeeze``, ``unsqueeze``, ``split``,
``concat``, ``reorder_gates``, ``add_constant``) plus that kind's options. Reading uses
``tomllib``; writing uses the small emitter below (TOML writers are not in the standard library).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import RenameError
from .core import Rule, parse_toml
from .names import AddPrefix, Exclude, Map, Only, Rename, Renumber, StripPrefix
from .presets import preset_from_table
from .transforms import (
    AddConstant,
    Cast,
    Concat,
    MergeAxes,
    ReorderGates,
    Reshape,
    Split,
    Squeeze,
    Transpose,
    Unsqueeze,
)

# The key naming a rule in its [[rule]] table -> what builds the rule from that table.
RULE_TABLES: dict[str, Callable[[Mapping[str, Any]], Rule]] = {
    cls.key: cls.from_table for cls in (
        Rename, Only, Exclude, StripPrefix, AddPrefix, Renumber, Cast, Transpose, Reshape,
        MergeAxes, Squeeze, Unsqueeze, Split, Concat,
        ReorderGates, AddConstant)
}
RULE_TABLES.update(map=Map.from_table, map_file=Map.from_table,
                   preset=preset_from_table)


def rule_from_table(table: Mapping[str, Any], where: str, base: Path | None = None) -> Rule:
    """One rule from its table; a relative ``map_file`` is taken from ``base``."""
    if not isinstance(table, Mapping):
        raise RenameError(f"{where}: expected a table, got {table!r}")
    keys = [k for k in table if k in RULE_TABLES]
    if len(keys) != 1:
        found = ", ".join(keys) if keys else f"none of {', '.join(table) or 'its keys'}"
        raise RenameError(f"{where}: a rule needs exactly one of {', '.join(RULE_TABLES)} "
                          f"(found {found})")
    if keys[0] == "map_file" and base is not None and isinstance(table["map_file"], str):
        table = {"map_file": str(base / table["map_file"])}
    try:
        return RULE_TABLES[keys[0]](table)
    except RenameError as exc:
        raise RenameError(f"{where}: {exc}") from None


def loads(text: str, where: str = "rules", base: Path | None = None
          ) -> tuple[list[Rule], bool]:
    """Rules and the ``strict`` flag from TOML text."""
    doc = parse_toml(text, where)
    unknown = sorted(set(doc) - {"rule", "strict"})
    if unknown:
        raise RenameError(f"{where}: unknown key(s) {', '.join(unknown)} (expected [[rule]] "
                          "tables and an optional strict = true)")
    strict = doc.get("strict", False)
    if not isinstance(strict, bool):
        raise RenameError(f"{where}: strict must be true or false")
    tables = doc.get("rule", [])
    if not isinstance(tables, list):
        raise RenameError(f"{where}: write rules as [[rule]] tables")
    return [rule_from_table(t, f"{where}: rule {i}", base) for i, t in enumerate(tables, 1)], \
        strict


def dumps(rules: Sequence[Rule], strict: bool = False) -> str:
    """TOML text that :func:`loads` turns back into equal rules."""
    lines = ["# converter rename rules, applied in order"]
    if strict:
        lines.append("strict = true")
    for rule in rules:
        lines += ["", "[[rule]]"]
        tables = []
        for key, value in rule.table().items():
            if isinstance(value, Mapping):
                inline = f"{_key(key)} = {_value(value)}"
                if len(inline) <= 100:
                    lines.append(inline)
                else:
                    tables.append((key, value))
            else:
                lines.append(f"{_key(key)} = {_value(value)}")
        for key, value in tables:
            lines.append(f"[rule.{_key(key)}]")
            lines += [f"{_key(k)} = {_value(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _basic(key)


def _basic(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", escaped) + '"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # Literal strings keep regex backslashes readable: 'hidden([123])/' -> 'dnn/layer\1/'.
        if "'" not in value and not _CONTROL.search(value):
            return f"'{value}'"
        return _basic(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise RenameError(f"cannot write {value!r} to TOML")
