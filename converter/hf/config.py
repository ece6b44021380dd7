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

from ..errors import UsageError, keyword
from ..rules import Pattern
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


def translate(family: Family, source: Mapping[str, Any], where: str = "the config"
              ) -> dict[str, Any]:
    """The release's config under transformers' key names (and values, where
    ``[config.values]`` maps them)."""
    out: dict[str, Any] = {}
    nested = {k: v for k in family.flatten if isinstance(v := source.get(k), Mapping)}
    for key, value in [*source.items(), *(kv for v in nested.values() for kv in v.items())]:
        if key in family.values:
            to, table = family.values[key]
            said = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            if said not in table:
                raise UsageError(f"{where}: {key} {value!r} has no transformers equivalent "
                                 f"(known: {', '.join(table)})")
            out[to] = table[said]
            continue
        if key in nested or key in family.drop or (
                family.keep is not None and key not in family.keep):
            continue
        out[family.rename.get(key, key)] = value
    return out


def build(family: Family, arch: Architecture, source: Mapping[str, Any] | None,
          shapes: Mapping[str, tuple[int, ...]], where: str, given_file: bool = False
          ) -> dict[str, Any]:
    """config.json's content. ``source`` is the release's config (None when there is none),
    ``where`` names it in errors, ``given_file`` says the caller named it. A value the shapes
    settle must agree with the config; one they cannot settle must come from the config or
    the family's defaults; sizes are integers, heads divide what they split, and values with
    a fixed vocabulary (activations) are among those the release's code knew."""
    ignored = arch.ignore if not arch.ignore_if or arch.ignore_if in (source or {}) else ()
    given = {k: v for k, v in translate(family, source or {}, where).items()
             if k not in ignored}
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
    _architecture_config(arch, given, config, where)
    missing = [k for k in family.required if k not in config]
    if missing:
        if source is None:
            hint = f"no config gives {', '.join(missing)}"
            fix = f"pass {keyword('config')} FILE with it"
        else:
            hint = f"{where} does not give {', '.join(missing)}"
            fix = ("add it to that file" if given_file
                   else f"pass {keyword('config')} FILE with it")
        raise UsageError(f"{family.name}: {hint}, which the shapes do not settle; {fix}")
    _check_values(family, config, where)
    config["model_type"] = family.model_type
    config["architectures"] = [arch.cls]
    return dict(sorted(config.items()))


def _architecture_config(arch: Architecture, given: Mapping[str, Any], config: dict[str, Any],
                         where: str) -> None:
    """The class's own values (T5's feed-forward kind, from its tensor names). Where the
    release's config says too, it must agree: exactly, or within ``accept``'s pattern (the
    names say "gated", the config which activation)."""
    for key, value in arch.config.items():
        if key not in given:
            config[key] = value
            continue
        pattern = arch.accept.get(key)
        ok = given[key] == value if pattern is None else (
            isinstance(given[key], str) and Pattern(pattern).match(given[key]) is not None)
        if not ok:
            raise UsageError(f"{where}: {key} is {given[key]!r}, but the checkpoint's tensors "
                             f"are those of {value!r}")


def _check_values(family: Family, config: Mapping[str, Any], where: str) -> None:
    for key in (*family.required, *(i.key for i in family.infer)):
        value = config.get(key)
        if key in config and (not isinstance(value, int) or isinstance(value, bool)):
            raise UsageError(f"{where}: {key} must be an integer, not {value!r}")
    for part, whole in family.divides.items():
        a, b = config.get(part), config.get(whole)
        if isinstance(a, int) and isinstance(b, int) and (a <= 0 or b % a):
            raise UsageError(f"{where}: {part} = {a} does not divide {whole} = {b}")
    for key, allowed in family.choices.items():
        if key in config and config[key] not in allowed:
            raise UsageError(f"{where}: {key} {config[key]!r} is not one the {family.name} "
                             f"release knows ({', '.join(map(str, allowed))})")
