"""Hugging Face output: original TensorFlow checkpoints as directories transformers loads.

:func:`prepare` settles everything before a byte is written: the model family (from
``--family`` or detected from the names), the transformers class, the renamed and transposed
tensors, ``config.json`` and the tokenizer files. The ``hf`` format (:mod:`.writer`) then
writes the directory. Families are data: see :mod:`.family`.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..rules import Pattern, Plan, Rules, RuleWarning
from ..tensor import Checkpoint
from .config import build, read_config
from .family import Architecture, Family, detect, families, get, layer_number

__all__ = ["Prepared", "families", "prepare", "recording"]

# transformers' own default for save_pretrained (5 × 10⁹ before transformers 5).
DEFAULT_MAX_SHARD_SIZE = 50 * 10**9


@dataclass
class Prepared:
    """What a Hugging Face directory will hold; nothing is read or written yet."""

    family: Family
    architecture: Architecture
    checkpoint: Checkpoint  # the tensors under their transformers names, lazily
    plan: Plan  # source name -> transformers name, with transforms, and what was dropped
    config: dict[str, Any]
    config_file: Path | None
    tokenizers: list[tuple[Path, str]]

    @property
    def dropped(self) -> list[str]:
        return [d.name for d in self.plan.dropped]


_RECORDING: ContextVar[list[Prepared] | None] = ContextVar("hf_recording", default=None)


@contextmanager
def recording() -> Iterator[list[Prepared]]:
    """Collect what every Hugging Face output written inside the block held (the CLI's
    summary: family, class, what was dropped), as :func:`converter.outputs.recording` collects
    the files."""
    found: list[Prepared] = []
    token = _RECORDING.set(found)
    try:
        yield found
    finally:
        _RECORDING.reset(token)


def _beside(ckpt: Checkpoint) -> Path | None:
    """The directory the checkpoint's files are in, where its release keeps its config."""
    if ckpt.source is None or not ckpt.source.path:
        return None
    path = Path(ckpt.source.path)
    return path if path.is_dir() else path.parent


def _config_file(family: Family, ckpt: Checkpoint, given: str | Path | None) -> Path | None:
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise UsageError(f"{path}: no such config file")
        return path
    where = _beside(ckpt)
    for name in family.config_files if where is not None else ():
        if (where / name).is_file():
            return where / name
    return None


def _tokenizers(family: Family, ckpt: Checkpoint) -> list[tuple[Path, str]]:
    where = _beside(ckpt)
    found = []
    for tok in family.tokenizers if where is not None else ():
        for name in tok.sources:
            if (where / name).is_file():
                found.append((where / name, tok.to))
                break
    return found


def _check_names(family: Family, arch: Architecture, plan: Plan) -> None:
    """Refuse a tensor with no place in the model, and numbered blocks that differ: each
    would be an unexpected or a missing key when transformers loads the directory."""
    expect = [Pattern(p) for p in (*family.expect, *arch.expect)]
    for row in plan.rows:
        if expect and not any(p.match(row.name) for p in expect):
            raise UsageError(f"{family.name}: {row.old!r} has no place in {arch.cls} (it "
                             f"would be {row.name!r}); drop it with --exclude or choose "
                             f"another --family")
    for p in (*family.require, *arch.require):
        if not any(Pattern(p).match(row.name) for row in plan.rows):
            raise UsageError(f"{family.name}: the checkpoint has nothing for "
                             f"{p.removeprefix('re:')} of {arch.cls}; is it a complete "
                             f"{family.name} checkpoint?")
    for pattern in family.layers:  # each on its own: a block may be numbered twice
        blocks: dict[str, set[int]] = defaultdict(set)
        for row in plan.rows:
            found = layer_number((pattern,), row.name)
            if found is not None:
                blocks[found[0]].add(found[1])
        numbers = set().union(*blocks.values()) if blocks else set()
        for shape, have in sorted(blocks.items()):
            if have != numbers:
                gap = min(numbers - have)
                where = shape[len(pattern) + 1:].replace("#", str(gap))  # past "PATTERN:"
                raise UsageError(f"{family.name}: {where} is missing, while other layers "
                                 f"have it")


def _check_shapes(family: Family, arch: Architecture, shapes: dict[str, tuple[int, ...]],
                  config: dict[str, Any]) -> None:
    """Refuse a tensor whose shape does not fit the model config.json describes: transformers
    would call it mismatched, or fail in the middle of loading."""
    for pattern, dims in (*family.shapes, *arch.shapes):
        if not all(isinstance(config.get(d), int) for d in dims if isinstance(d, str)):
            continue  # a size this config does not have: nothing to check against
        want = tuple(config[d] if isinstance(d, str) else d for d in dims)
        regex = Pattern(pattern)
        for name, shape in shapes.items():
            if tuple(shape) != want and regex.match(name):
                keys = ", ".join(f"{d}={config[d]}" for d in dims if isinstance(d, str))
                raise UsageError(f"{family.name}: {name} has shape {tuple(shape)}, but "
                                 f"{arch.cls} needs {want} ({keys}); is it from another "
                                 f"model, or the config from another checkpoint?")


def _plan(rules: Rules, ckpt: Checkpoint) -> Plan:
    # A family's rules cover every head and variant; that some match nothing says nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuleWarning)
        return rules.plan(ckpt, strict=False)


def prepare(ckpt: Checkpoint, *, family: str | None = None,
            config: str | Path | None = None) -> Prepared:
    """Everything the Hugging Face directory for ``ckpt`` will hold, checked.

    Args:
        ckpt: the source checkpoint (after the caller's own rules).
        family: a family name (``ckpt formats --families``), detected from the names if None;
            ``NAME:VARIANT`` picks the architecture of that variant (``electra:generator``).
        config: the release's config file, if it is not beside the checkpoint under the name
            its release gives it (``bert_config.json``, ``hparams.json`` ...).

    Raises:
        UsageError: one line naming what does not fit (family, config key, tensor).
    """
    names = list(ckpt)
    name, _, variant = (family or "").partition(":")
    fam = get(name) if name else detect(names)
    if name and not fam.matches(names):
        raise UsageError(f"the checkpoint is not a {fam.name} checkpoint (no tensor matches "
                         f"{', '.join(fam.detect)})")
    arch = fam.architecture(names, variant or None)
    rules = fam.rules_for(arch)
    plan = _plan(rules, ckpt)
    _check_names(fam, arch, plan)
    file = _config_file(fam, ckpt, config)
    source = read_config(file) if file is not None else None
    shapes = {n: t.shape for n, t in ckpt.items()}
    content = build(fam, arch, source, shapes, str(file) if file else "the checkpoint")
    _check_shapes(fam, arch, shapes, content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuleWarning)
        out = rules.apply(ckpt, strict=False)
    out.metadata = {"format": "pt"}  # what transformers' own save_pretrained writes
    prepared = Prepared(fam, arch, out, plan, content, file, _tokenizers(fam, ckpt))
    found = _RECORDING.get()
    if found is not None:
        found.append(prepared)
    return prepared


def describe(prepared: Prepared) -> str:
    """The ``--dry-run`` table: each source tensor, its transformers name and its transforms."""
    p = prepared
    lines = [f"family {p.family.name}: {p.architecture.cls}"
             + (f", config from {p.config_file}" if p.config_file else "")]
    width = max((len(r.old) for r in p.plan.rows), default=0)
    for row in p.plan.rows:
        how = f"  ({row.transform})" if row.transform else ""
        lines.append(f"  {row.old:<{width}} -> {row.name}{how}")
    if p.dropped:
        lines.append(f"dropped {len(p.dropped)}: {_short(p.dropped)}")
    for path, to in p.tokenizers:
        lines.append(f"tokenizer {path.name} -> {to}")
    return "\n".join(lines)


def _short(names: list[str], n: int = 6) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


