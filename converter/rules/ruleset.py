"""``Rules``: an ordered list of rename rules, built in code, from TOML or from CLI flags."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import RenameError
from ..tensor import Checkpoint, Tensor, as_checkpoint
from . import toml
from .core import Entry, Rule, RuleWarning
from .names import AddPrefix, Exclude, Map, Only, Rename, Renumber, StripPrefix
from .plan import Plan, PlanRow, run_rules
from .presets import preset
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


class Rules:
    """An ordered list of rules, applied to names one rule after another.

    Builder methods return a new ``Rules`` with one more rule, so they chain::

        rules = (Rules().preset("drop-optimizer")
                 .only("hidden[123]/*")
                 .rename(r"hidden([123])/", r"dnn/layer\\1/"))
        new_ckpt = rules.apply(converter.read("model.ckpt-1000"))
        print(rules.plan(ckpt))          # the old -> new table

    A rule that matches nothing is a :class:`RuleWarning` (``apply``) or a line in
    ``Plan.warnings`` (``plan``); with ``strict=True`` it is a :class:`RenameError`.

    Args:
        rules: rule objects (``Rename``, ``Map``, ``Only`` ... from ``converter.rules``).
        strict: make a rule that matches nothing an error.
    """

    def __init__(self, rules: Iterable[Rule] = (), *, strict: bool = False) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        for r in self.rules:
            if not isinstance(r, Rule):
                raise TypeError(f"expected rule objects, got {r!r}")
        self.strict = strict

    # -- building

    def then(self, rule: Rule) -> Rules:
        """These rules followed by ``rule``."""
        return Rules((*self.rules, rule), strict=self.strict)

    def rename(self, pattern: str, to: str) -> Rules:
        """Regex substitution with groups: ``rename(r"hidden([123])/", r"dnn/layer\\1/")``."""
        return self.then(Rename(pattern, to))

    def map(self, mapping: Mapping[str, str]) -> Rules:
        """Exact renames ``{old: new}``."""
        return self.then(Map.of(mapping))

    def map_file(self, path: str | os.PathLike[str]) -> Rules:
        """Exact renames from a JSON object or TOML table of ``"old" = "new"``."""
        return self.then(Map.from_file(path))

    def only(self, *patterns: str) -> Rules:
        """Keep only names matching a pattern (glob, or ``re:`` + regex)."""
        return self.then(Only(patterns))

    def exclude(self, *patterns: str) -> Rules:
        """Drop names matching a pattern (glob, or ``re:`` + regex)."""
        return self.then(Exclude(patterns))

    def strip_prefix(self, prefix: str) -> Rules:
        return self.then(StripPrefix(prefix))

    def add_prefix(self, prefix: str) -> Rules:
        return self.then(AddPrefix(prefix))

    def preset(self, name: str, **options: Any) -> Rules:
        """A named preset: ``drop-optimizer``, ``use-ema``, ``tf2-names``, ``keras-names``,
        ``tf1-lstm-to-keras`` (options as keyword arguments, e.g. ``forget_bias=0.0``)."""
        return self.then(preset(name, **options))

    def cast(self, spec: str, match: str = "*") -> Rules:
        """Cast values: ``cast("float32:bfloat16")`` (not bit-exact, by design)."""
        return self.then(Cast(spec, match))

    def transpose(self, pattern: str, axes: Sequence[int]) -> Rules:
        return self.then(Transpose(pattern, tuple(axes)))

    def reshape(self, pattern: str, shape: Sequence[int]) -> Rules:
        return self.then(Reshape(pattern, tuple(shape)))

    def merge_axes(self, pattern: str, axes: Sequence[int]) -> Rules:
        """Merge consecutive axes ``[first, last]`` into one (``[h, heads, d]`` to
        ``[h, heads * d]`` with ``[1, 2]``), for any sizes."""
        return self.then(MergeAxes(pattern, tuple(axes)))

    def renumber(self, pattern: str, offset: int) -> Rules:
        """Add ``offset`` to the number the pattern's first group captures."""
        return self.then(Renumber(pattern, offset))

    def squeeze(self, pattern: str, axis: int = 0) -> Rules:
        """Drop an axis of length 1 (``[1, in, out]`` conv1d weights to ``[in, out]``)."""
        return self.then(Squeeze(pattern, axis))

    def unsqueeze(self, pattern: str, axis: int = 0) -> Rules:
        """Insert an axis of length 1 (undoes :meth:`squeeze`)."""
        return self.then(Unsqueeze(pattern, axis))

    def split(self, pattern: str, into: Sequence[str], axis: int = -1,
              sizes: Sequence[int] | None = None) -> Rules:
        """Split along ``axis`` into parts named by templates (``\\1`` = first ``*``)."""
        return self.then(Split(pattern, tuple(into), axis,
                               None if sizes is None else tuple(sizes)))

    def concat(self, parts: Sequence[str], into: str, axis: int = -1) -> Rules:
        """Join the tensors matching ``parts`` (in that order) into one named ``into``."""
        return self.then(Concat(tuple(parts), into, axis))

    def reorder_gates(self, pattern: str, order: str, axis: int = -1) -> Rules:
        """Reorder equal blocks along ``axis``: ``order="ijfo->ifjo"``."""
        return self.then(ReorderGates(pattern, order, axis))

    def add_constant(self, pattern: str, value: float, axis: int = -1,
                     block: int | None = None, blocks: int | None = None) -> Rules:
        return self.then(AddConstant(pattern, value, axis, block, blocks))

    def __add__(self, other: Rules) -> Rules:
        return Rules((*self.rules, *other.rules), strict=self.strict or other.strict)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rules) and (self.rules, self.strict) == (other.rules,
                                                                          other.strict)

    def __repr__(self) -> str:
        return f"Rules([{', '.join(str(r) for r in self.rules)}], strict={self.strict})"

    # -- TOML

    def to_toml(self) -> str:
        """The rules as a TOML rules file (see the README's "Rename rules")."""
        return toml.dumps(self.rules, self.strict)

    @classmethod
    def from_toml(cls, source: str | os.PathLike[str]) -> Rules:
        """Rules from a TOML file, or from TOML text (a ``str`` holding a newline).

        A relative ``map_file`` is read from the rules file's directory.
        """
        if isinstance(source, str) and "\n" in source:
            rules, strict = toml.loads(source)
        else:
            path = Path(source)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise RenameError(f"rules file {str(path)!r}: {exc.strerror or exc}") from None
            rules, strict = toml.loads(text, f"rules file {str(path)!r}", path.parent)
        return cls(rules, strict=strict)

    # -- applying

    def _run(self, entries: list[Entry], strict: bool | None) -> Any:
        return run_rules(self.rules, entries, self.strict if strict is None else strict)

    def apply(self, checkpoint: Checkpoint | Mapping[str, Any], *,
              strict: bool | None = None) -> Checkpoint:
        """A new Checkpoint with the rules applied, lazily: renamed tensors are the same
        tensors under new names (nothing is read), transformed ones compute their values
        when read, dropped ones are gone. Metadata and source are carried over; closing the
        result closes ``checkpoint``.

        Raises:
            RenameError: naming the rule, on an invalid rule, a collision, a transform that
                does not fit a tensor, or (strict) a rule that matched nothing.
        """
        ckpt = as_checkpoint(checkpoint)
        outcome = self._run([Entry.of_tensor(n, t) for n, t in ckpt.items()], strict)
        for message in outcome.warnings:
            warnings.warn(message, RuleWarning, stacklevel=2)
        tensors: dict[str, Tensor] = {e.name: e.tensor() for e in outcome.entries}
        return Checkpoint(tensors, ckpt.metadata, source=ckpt.source, closers=[ckpt.close])

    def plan(self, source: Checkpoint | Mapping[str, Any] | Iterable[str], *,
             strict: bool | None = None) -> Plan:
        """What the rules would do, without reading any data.

        Args:
            source: a Checkpoint (or dict of arrays), or bare names (shapes and dtypes then
                show as unknown and kinds are judged from the names).

        Returns:
            A :class:`Plan`: rows of (new name, old name, shape, dtype, transform), the
            dropped names, and warnings for rules that matched nothing.
        """
        if isinstance(source, Mapping):
            entries = [Entry.of_tensor(n, t) for n, t in as_checkpoint(source).items()]
        elif isinstance(source, str):
            raise TypeError("plan() takes a checkpoint or a list of names, not one string")
        else:
            entries = [Entry.of_name(n) for n in source]
        outcome = self._run(entries, strict)
        return Plan([PlanRow.of(e) for e in outcome.entries], outcome.dropped, outcome.warnings)
