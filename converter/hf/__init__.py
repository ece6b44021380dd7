"""Hugging Face output: original TensorFlow checkpoints as directories transformers loads.

:func:`prepare` settles everything before a byte is written: the model family (from
``--family`` or detected from the names), the transformers class, the renamed and transposed
tensors, ``config.json`` and the tokenizer files. The ``hf`` format (:mod:`.writer`) then
writes the directory. Families are data: see :mod:`.family`.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConverterWarning, UsageError, keyword
from ..rules import Pattern, Plan, Rules, RuleWarning
from ..tensor import Checkpoint
from .config import build, read_config
from .family import Architecture, Family, detect, families, get, layer_number
from .hooks import HOOKS

__all__ = ["Prepared", "families", "original", "prepare", "recording"]

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
    tokenizer_config: dict[str, Any] = field(default_factory=dict)

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
    if ckpt.source.saved_model:  # its config sits beside saved_model.pb, not in variables/
        return Path(ckpt.source.saved_model)
    path = Path(ckpt.source.path)
    return path if path.is_dir() else path.parent


def _given_file(given: str | Path) -> Path:
    path = Path(given)
    if not path.is_file():
        raise UsageError(f"{path}: " + ("is a directory, not a config file" if path.is_dir()
                                         else "no such config file"))
    return path


def _config_file(family: Family, ckpt: Checkpoint, given: str | Path | None,
                 default: str | Path | None = None) -> Path | None:
    """The config: ``given``; else the release's own beside the checkpoint; else ``default``."""
    if given is not None:
        return _given_file(given)
    where = _beside(ckpt)
    if where is not None:
        for name in family.config_files:
            if (where / name).is_file():
                return where / name
    return _given_file(default) if default is not None else None


MAX_VOCAB = 64 << 20  # WordPiece vocabularies are a few hundred KB


def _tokenizer_config(family: Family, found: list[tuple[Path, str]]) -> dict[str, Any]:
    """``tokenizer_config.json``: whether the model is cased, from its WordPiece vocabulary
    (Google's cased releases keep upper-case pieces; transformers would lower-case them)."""
    cased_by = {t.to for t in family.tokenizers if t.case}
    for path, to in found:
        if to not in cased_by:
            continue
        if path.stat().st_size > MAX_VOCAB:
            raise UsageError(f"{path}: {path.stat().st_size} bytes is too large for a vocabulary")
        words = path.read_text(encoding="utf-8", errors="replace").splitlines()
        cased = any(any(c.isupper() for c in w.removeprefix("##")) for w in words
                    if not (w.startswith("[") and w.endswith("]")))
        return {"do_lower_case": not cased}
    return {}


def _tokenizers(family: Family, ckpt: Checkpoint) -> list[tuple[Path, str]]:
    where = _beside(ckpt)
    found: list[tuple[Path, str]] = []
    if where is None:
        return found
    # A SavedModel (a TF Hub export) keeps its vocabulary in assets/.
    places = [where, where / "assets"] if ckpt.source and ckpt.source.saved_model else [where]
    for tok in family.tokenizers:
        path = next((p / n for n in tok.sources for p in places if (p / n).is_file()), None)
        if path is not None:
            found.append((path, tok.to))
    return found


def _check_names(family: Family, arch: Architecture, plan: Plan, back: str | None = None
                 ) -> None:
    """Refuse a tensor with no place in the model, and numbered blocks that differ: each
    would be an unexpected or a missing key when transformers loads the directory. ``back``
    names the Hugging Face directory when checking the way back from it."""
    expect = [Pattern(p) for p in (*family.expect, *arch.expect)]
    for row in plan.rows:
        if expect and not any(p.match(row.name) for p in expect):
            if back is not None:
                raise UsageError(f"{back}: {row.name!r} has no place in {family.name}'s "
                                 f"{arch.cls}, so it has no original name")
            raise UsageError(f"{family.name}: {row.old!r} has no place in {arch.cls} (it "
                             f"would be {row.name!r}); drop it with an exclude rule or choose "
                             f"another {keyword('family')}")
    for p in (*family.require, *arch.require):
        if not any(Pattern(p).match(row.name) for row in plan.rows):
            raise UsageError(f"{back or family.name}: the checkpoint has nothing for "
                             f"{p.removeprefix('re:')} of {arch.cls}; is it a complete "
                             f"{family.name} checkpoint?")
    for pattern in family.layers:  # each on its own: a block may be numbered twice
        blocks: dict[str, set[int]] = defaultdict(set)
        for row in plan.rows:
            found = layer_number((pattern,), row.name)
            if found is not None:
                blocks[found[0]].add(found[1])
        numbers = set().union(*blocks.values()) if blocks else set()
        if numbers and numbers != set(range(max(numbers) + 1)):
            # transformers numbers blocks 0..N-1: a gap would load as a block left random.
            gap = min(set(range(max(numbers) + 1)) - numbers)
            where = min(blocks)[len(pattern) + 1:].replace("#", str(gap))
            raise UsageError(f"{family.name}: {where} is missing: the checkpoint has blocks "
                             f"{', '.join(map(str, sorted(numbers)))}, not 0 to "
                             f"{max(numbers)}")
        for shape, have in sorted(blocks.items()):
            if have != numbers:
                gap = min(numbers - have)
                where = shape[len(pattern) + 1:].replace("#", str(gap))  # past "PATTERN:"
                raise UsageError(f"{family.name}: {where} is missing, while other layers "
                                 f"have it")


def _check_source_shapes(family: Family, arch: Architecture,
                         shapes: dict[str, tuple[int, ...]], config: dict[str, Any]) -> None:
    """Refuse a release's tensor whose shape does not fit the model config.json describes
    (``source_shapes``, on the release's names): transformers would call it mismatched, or
    fail in the middle of loading."""
    for pattern, dims in (*family.source_shapes, *arch.source_shapes):
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


def _check_shapes(family: Family, arch: Architecture, plan: Plan,
                  config: dict[str, Any]) -> None:
    """Refuse a tensor whose shape is not the one the config gives the model's parameter:
    transformers would load it as a mismatched key, or not at all."""
    compiled = [(Pattern(p), dims) for p, dims in (*arch.shapes, *family.shapes)]
    for row in plan.rows:
        dims = next((d for p, d in compiled if p.match(row.name)), None)
        if dims is None or row.shape is None:
            continue
        want = []
        for dim in dims:
            size = 1
            for key in (dim.split("*") if isinstance(dim, str) else ()):
                if key.isdigit():
                    size *= int(key)
                    continue
                if not isinstance(config.get(key), int):
                    raise UsageError(f"{family.where} [shapes]: config has no {key} for "
                                     f"{row.name}")
                size *= config[key]
            want.append(dim if isinstance(dim, int) else size)
        if list(row.shape) != want:
            said = ", ".join(dict.fromkeys(
                f"{k}={config[k]}" for d in dims if isinstance(d, str)
                for k in d.split("*") if not k.isdigit()))
            raise UsageError(f"{family.name}: {row.old!r} becomes {row.name} of shape "
                             f"{list(row.shape)}, but {arch.cls} with {said} needs {want}")


def _plan(rules: Rules, ckpt: Checkpoint) -> Plan:
    # A family's rules cover every head and variant; that some match nothing says nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuleWarning)
        return rules.plan(ckpt, strict=False)


def prepare(ckpt: Checkpoint, *, family: str | None = None,
            config: str | Path | None = None,
            default_config: str | Path | None = None) -> Prepared:
    """Everything the Hugging Face directory for ``ckpt`` will hold, checked.

    Args:
        ckpt: the source checkpoint (after the caller's own rules).
        family: a family name (``ckpt formats --families``), detected from the names if None;
            ``NAME:VARIANT`` picks the architecture of that variant (``electra:generator``).
        config: the release's config file, if it is not beside the checkpoint under the name
            its release gives it (``bert_config.json``, ``hparams.json`` ...).
        default_config: a config used only when none lies beside the checkpoint.

    Raises:
        UsageError: one line naming what does not fit (family, config key, tensor).
    """
    names = list(ckpt)
    name, _, variant = (family or "").partition(":")
    fam = get(name) if name else detect(names)
    if name and not fam.matches(names):
        where = ckpt.source.path if ckpt.source is not None else "the checkpoint"
        looks = [f.name for f in families().values() if f.auto_detect and f.matches(names)]
        raise UsageError(f"{where}: not a checkpoint of the {fam.name} family (no tensor "
                         f"matches {', '.join(fam.detect)})"
                         + (f"; it looks like {' or '.join(looks)}" if looks else ""))
    file = _config_file(fam, ckpt, config, default_config)
    named = config is not None or (default_config is not None and file == Path(default_config))
    source = read_config(file) if file is not None else None
    shapes = {n: t.shape for n, t in ckpt.items()}
    where = str(file) if file else "the checkpoint"
    hooked = HOOKS[fam.hook](fam.name, shapes, source, where) if fam.hook else None
    arch = Architecture(hooked.cls, description=f"from {where}") if hooked else (
        fam.architecture(names, variant or None))
    rules = fam.rules_for(arch)
    if hooked:
        rules = Rules((*hooked.rules, *rules.rules))
    plan = _plan(rules, ckpt)
    _check_names(fam, arch, plan)
    content = hooked.config if hooked else build(fam, arch, source, shapes, where,
                                                 given_file=named)
    _check_source_shapes(fam, arch, shapes, content)
    _check_shapes(fam, arch, plan, content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuleWarning)
        out = rules.apply(ckpt, strict=False)
    out.metadata = {"format": "pt"}  # what transformers' own save_pretrained writes
    tokenizers = _tokenizers(fam, ckpt)
    if fam.tokenizers and not tokenizers:
        wanted = " or ".join(n for t in fam.tokenizers for n in t.sources)
        warnings.warn(f"{fam.name}: no tokenizer file ({wanted}) beside the checkpoint; the "
                      "directory has weights and config only", ConverterWarning, stacklevel=2)
    prepared = Prepared(fam, arch, out, plan, content, file, tokenizers,
                        _tokenizer_config(fam, tokenizers))
    found = _RECORDING.get()
    if found is not None:
        found.append(prepared)
    return prepared


def _family_of(config: dict[str, Any], family: str | None, where: str) -> Family:
    if family:
        return get(family.partition(":")[0])  # the variant is what config.json's class says
    model_type = config.get("model_type")
    found = [f for f in families().values() if f.model_type == model_type]
    # Of two releases of one model (Google's BERT, Model Garden's), the one with a way back.
    back = [f for f in found if f.reverse or any(a.reverse for a in f.architectures)]
    if len(back) == 1:
        return back[0]
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(f"{where}: no model family makes model_type {model_type!r} "
                         f"(known: {', '.join(families())})")
    raise UsageError(f"{where}: model_type {model_type!r} is made by several families "
                     f"({', '.join(f.name for f in found)}); pass {keyword('family')}")


def original(ckpt: Checkpoint, config: dict[str, Any], *, family: str | None = None,
             where: str = "the directory") -> Checkpoint:
    """A Hugging Face model's tensors under its original release's names (a TF1 checkpoint
    that the release's own code restores): the family's ``reverse`` rules, checked to invert
    its forward rules exactly, name for name and shape for shape.

    Args:
        ckpt: the weights of a Hugging Face directory.
        config: its ``config.json``, whose ``model_type`` picks the family and whose
            ``architectures`` the class.
        family: the family, when the model type does not settle it.
    """
    fam = _family_of(config, family, where)
    if all(fam.reverse_for(a) is None for a in fam.architectures):
        raise UsageError(f"{where}: the {fam.name} family has no way back to the original "
                         "names; read it as safetensors to keep transformers' names")
    classes = config.get("architectures") or []
    if not isinstance(classes, list):
        raise UsageError(f"{where}: architectures must be a list of class names, not "
                         f"{classes!r}")
    candidates = [a for a in fam.architectures if a.cls in classes
                  and not any(config.get(k) == v for k, v in a.unless.items())]
    if not candidates:
        raise UsageError(f"{where}: {fam.name} has no way back from "
                         f"{', '.join(map(str, classes)) or 'an unnamed class'} (known: "
                         f"{', '.join(dict.fromkeys(a.cls for a in fam.architectures))})")
    if all(fam.reverse_for(a) is None for a in candidates):
        raise UsageError(f"{where}: the {fam.name} family has no way back to the original "
                         "names; read it as safetensors to keep transformers' names")
    # One class may come from several variants (T5's feed-forward kinds, tied or not): the
    # variant is the one whose tied copies are copies, and whose way back gives names the way
    # there would take as that very variant. Variants with more tied copies are tried first:
    # a directory saved with a copy that equals its original is the tied model.
    candidates.sort(key=lambda a: -len(fam.tied_for(a)))
    problem = ""
    for arch in candidates:
        untied = _untied(fam.tied_for(arch), ckpt)
        if untied:
            problem = problem or (f"{untied} differs from {fam.tied_for(arch)[untied]}, so the "
                                  f"model is not the {arch.cls} whose weights are tied")
            continue
        reverse = fam.reverse_for(arch)
        if reverse is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuleWarning)
            back = reverse.apply(ckpt, strict=False)
        if _architecture(fam, back) is not arch:
            problem = problem or f"the tensors do not make the {arch.cls} they are named for"
            continue
        _undone(fam, arch, reverse, ckpt, back, where)
        return back
    raise UsageError(f"{where}: {problem}")


def _architecture(fam: Family, ckpt: Checkpoint) -> Architecture | None:
    """The architecture the way there would take for ``ckpt``, None if none fits: on the way
    back that is the directory's problem, not the family's."""
    try:
        return fam.architecture(list(ckpt))
    except UsageError:
        return None


def _untied(tied: dict[str, str], ckpt: Checkpoint) -> str | None:
    """The first tied copy present in ``ckpt`` whose values differ from its original's."""
    for copy, original_name in tied.items():
        if copy in ckpt and original_name in ckpt:
            a, b = ckpt[copy], ckpt[original_name]
            if a.shape != b.shape or a.dtype != b.dtype or \
                    a.read().tobytes() != b.read().tobytes():
                return copy
    return None


def _undone(fam: Family, arch: Architecture, reverse: Rules, ckpt: Checkpoint,
            back: Checkpoint, where: str) -> None:
    """The way back must be the way there undone: each tensor, renamed back and then forward
    by the family's own rules, is again itself (name and shape)."""
    forward = _plan(fam.rules_for(arch), back)
    there = {r.old: (r.name, r.shape) for r in forward.rows}
    for row in _plan(reverse, ckpt).rows:
        got = there.get(row.name)
        if got != (row.old, ckpt[row.old].shape):
            raise UsageError(f"{where}: {row.old!r} has no original {fam.name} name (back as "
                             f"{row.name!r}, which maps to {got[0] if got else 'nothing'!r})")
    _check_names(fam, arch, forward, back=where)  # what the way there would accept


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
        lines.append(f"dropped {len(p.dropped)}: {short_list(p.dropped)}")
    for path, to in p.tokenizers:
        lines.append(f"tokenizer {path.name} -> {to}")
    if p.tokenizer_config:
        lines.append(f"tokenizer_config.json {json.dumps(p.tokenizer_config)}")
    return "\n".join(lines)


def short_list(names: list[str], n: int = 6) -> str:
    """The first ``n`` names and how many more: what a summary line has room for."""
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


