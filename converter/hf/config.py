"""``config.json`` for a transformers model: the release's own config translated, checked against
what the tensor shapes settle, completed from the family's defaults.

Config files are read as JSON (``bert_config.json``, GPT-2's ``hparams.json``, a transformers
``config.json``) or as gin bindings (Mesh TensorFlow's ``operative_config.gin``: ``name = value``
lines, of which the last dotted part of the name is the key).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .family import Architecture, Family

MAX_CONFIG = 4 << 20  # a config is a few KB; refuse to parse a huge file given by mistake


def read_config(path: Path) -> dict[str, Any]:
    """The key/value pairs of a config file; UsageError naming the file if it is not one."""
    try:
        if path.stat().st_size > MAX_CONFIG:
            raise UsageError(f"{path}: {path.stat().st_size} bytes is too large for a config")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the config ({exc})") from None
    if path.suffix == ".gin":
        return _gin(text, path)
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{path}: not a JSON config ({exc})") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: a config must be a JSON object")
    return doc


def _gin(text: str, path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    statement = ""
    for line in text.splitlines():
        line = line.split("#", 1)[0].rstrip()
        if not line or line.startswith(("import ", "include ")):
            continue
        # A binding continues over lines while its brackets are open.
        statement = f"{statement} {line.strip()}" if statement else line.strip()
        if statement.count("[") + statement.count("(") > (
                statement.count("]") + statement.count(")")):
            continue
        name, sep, value = statement.partition("=")
        statement = ""
        if not sep:
            continue
        key = name.strip().rsplit("/", 1)[-1].rsplit(".", 1)[-1]
        try:
            out[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue  # a reference (@fn, %MACRO): not a value a config.json could hold
    if not out:
        raise UsageError(f"{path}: no gin bindings with values")
    return out


def translate(family: Family, source: Mapping[str, Any]) -> dict[str, Any]:
    """The release's config under transformers' key names."""
    out: dict[str, Any] = {}
    nested = {k: v for k in family.flatten if isinstance(v := source.get(k), Mapping)}
    for key, value in [*source.items(), *(kv for v in nested.values() for kv in v.items())]:
        if key in nested or key in family.drop or (
                family.keep is not None and key not in family.keep):
            continue
        out[family.rename.get(key, key)] = value
    return out


def build(family: Family, arch: Architecture, source: Mapping[str, Any] | None,
          shapes: Mapping[str, tuple[int, ...]], where: str) -> dict[str, Any]:
    """config.json's content. ``source`` is the release's config (None when there is none),
    ``where`` names it in errors. A value the shapes settle must agree with the config; one
    they cannot settle must come from the config or the family's defaults."""
    ignored = arch.ignore if not arch.ignore_if or arch.ignore_if in (source or {}) else ()
    given = {k: v for k, v in translate(family, source or {}).items() if k not in ignored}
    config: dict[str, Any] = {**family.defaults, **given}
    inferred: dict[str, int] = {}
    for infer in (*family.infer, *arch.infer):
        if infer.if_source and infer.if_source not in (source or {}):
            continue
        value = infer.value(shapes, {**config, **inferred})
        if value is None:
            if infer.optional:
                continue
            raise UsageError(f"{family.name}: cannot tell {infer.key} from the checkpoint "
                             f"({infer.tensor or infer.count} is not there); is it a "
                             f"{family.name} checkpoint?")
        if infer.key in given and given[infer.key] != value:
            raise UsageError(f"{where}: {infer.key} is {given[infer.key]!r}, but the "
                             f"checkpoint's shapes say {value}")
        inferred[infer.key] = value
    config.update(inferred)
    config.update(arch.config)
    missing = [k for k in family.required if k not in config]
    if missing:
        said = f"{where} does not give" if source is not None else "no config gives"
        raise UsageError(f"{family.name}: {said} {', '.join(missing)}, which the shapes do not "
                         f"settle; pass --config FILE with it")
    config["model_type"] = family.model_type
    config["architectures"] = [arch.cls]
    return dict(sorted(config.items()))
