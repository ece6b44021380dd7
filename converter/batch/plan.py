"""Where each batch item's output goes, and the checks made on every output before anything
is written: inside DIR once resolved, one item per output, and what identifies a conversion
for ``resume``."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from pathlib import Path
from typing import Any

from .. import registry
from .archive import MAX_DEPTH
from .items import Item, is_url

PATH_MAX = 4000  # a little under Linux's 4096, which counts the whole path with its NUL


def output_name(item: Item, to: str) -> tuple[str, str]:
    """``(parent, leaf)`` of the item's output, relative to DIR (POSIX separators)."""
    fmt = registry.get(to)
    parent, _, name = item.rel.replace(os.sep, "/").rpartition("/")
    for suffix in sorted((s for f in registry.formats().values() for s in f.suffixes), key=len,
                         reverse=True):
        if name.lower().endswith(suffix) and name != suffix:
            name = name[: -len(suffix)]
            break
    # Directory outputs (a TF prefix, npy, hf) are named after the item alone.
    suffix = "" if fmt.name in ("tf", "npy") or not fmt.suffixes else fmt.suffixes[0]
    return parent, name + suffix


def output_for(item: Item, out: Path, to: str) -> Path:
    parent, leaf = output_name(item, to)
    return out / parent / leaf


def shown(item: Item, out: str | Path, to: str) -> str:
    """Where the item's output goes, as the manifest records it (a URL for remote outputs)."""
    if item.problem:
        return ""
    parent, leaf = output_name(item, to)
    if is_url(str(out)):
        return "/".join(p for p in (str(out).rstrip("/"), parent, leaf) if p)
    return str(Path(out) / parent / leaf)


def output_problem(item: Item, out: str | Path, to: str) -> tuple[str | None, str]:
    """``(problem, key)``: why the item's output cannot be written (or None), and the resolved
    output path that identifies it among the batch's outputs."""
    parent, leaf = output_name(item, to)
    rel = f"{parent}/{leaf}" if parent else leaf
    if rel.count("/") > MAX_DEPTH:
        return f"{item.key}: output nested more than {MAX_DEPTH} directories deep", ""
    parts = rel.split("/")
    if leaf in ("", ".", "..") or any(p in ("", ".", "..") for p in parts) \
            or posixpath.isabs(rel):
        return f"{item.key}: output {rel!r} would lie outside --out", ""
    if is_url(str(out)):
        return None, f"{str(out).rstrip('/')}/{rel}"
    root = Path(os.path.realpath(out))
    try:
        target = Path(os.path.realpath(Path(out).joinpath(*parts)))
    except (OSError, RuntimeError) as exc:  # RuntimeError: a link loop, before Python 3.13
        return f"{item.key}: output {rel!r} cannot be resolved ({exc})", ""
    if root not in target.parents:
        return f"{item.key}: output {rel!r} resolves to {target}, outside --out {root}", ""
    if len(os.fsencode(target)) > PATH_MAX:
        return f"{item.key}: output path is longer than {PATH_MAX} bytes", ""
    return None, str(target)


def check_outputs(items: list[Item], out: str | Path, to: str) -> dict[str, str]:
    """Problems by item key: outputs outside ``out``, and collisions (two items onto one
    output, or one output inside a directory that is another item's output)."""
    problems: dict[str, str] = {}
    owner: dict[str, Item] = {}
    for item in items:
        if item.problem:
            problems[item.key] = item.problem
            continue
        problem, key = output_problem(item, out, to)
        if problem:
            problems[item.key] = problem
            continue
        other = owner.get(key)
        if other is not None:
            why = f"output {key} is also the output of {{}}"
            problems[item.key] = f"{item.key}: " + why.format(other.key)
            problems.setdefault(other.key, f"{other.key}: " + why.format(item.key))
            continue
        owner[key] = item
    if to != "tf":  # a bundle's outputs sit beside its prefix; other writers may make a directory
        for key, item in owner.items():
            parent = posixpath.dirname(key)
            while parent and parent != posixpath.dirname(parent):
                other = owner.get(parent)
                if other is not None:
                    problems[item.key] = (f"{item.key}: output {key} would be inside {parent}, "
                                          f"the output of {other.key}")
                    problems.setdefault(other.key, f"{other.key}: output {parent} would be "
                                                   f"the directory holding {item.key}'s output")
                    break
                parent = posixpath.dirname(parent)
    return problems


def conversion_key(to: str, rules: Any, options: tuple[tuple[str, Any], ...]) -> str:
    """What identifies how items are converted: a changed format, rules or writer option
    means an item done before is not done for this batch."""
    if rules is None:
        text = None
    else:
        try:
            text = rules.to_toml()
        except Exception:  # rules made in code may hold what TOML cannot say
            text = repr(rules)
    blob = json.dumps({"to": to, "rules": text, "options": [list(o) for o in options]},
                      sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
