"""Running a list of rules, and the plan it reports.

Rules run one after another over all entries (consecutive maps as one simultaneous map); after
each, names are checked for collisions and the source names that vanished are recorded as
dropped by that rule. A rule that matched nothing is a note (a warning for ``apply``, a line of
the plan) or, when strict, an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .. import dtypes
from ..errors import RenameError
from .core import Entry, Rule
from .names import Map


class Drop(NamedTuple):
    """A source name that a rule dropped."""

    name: str
    rule: str


@dataclass
class Outcome:
    entries: list[Entry]
    dropped: list[Drop]
    warnings: list[str]


def run_rules(rules: Sequence[Rule], entries: list[Entry], strict: bool) -> Outcome:
    """Run ``rules`` in order; raise :class:`RenameError` naming the rule on any error, on a
    collision, and (``strict``) on a rule that matched nothing."""
    dropped: list[Drop] = []
    notes: list[str] = []
    for label, rule in _steps(rules):
        try:
            after, unmatched = rule.run(entries)
        except RenameError as exc:
            raise RenameError(f"{label}: {exc}") from None
        _check_collisions(after, label)
        kept = {s for e in after for s in e.sources}
        dropped += [Drop(s, label) for e in entries for s in e.sources if s not in kept]
        if unmatched:
            message = f"{label}: {'; '.join(unmatched)}"
            if strict:
                raise RenameError(f"{message} (strict rules: every rule must match)")
            notes.append(message)
        entries = after
    return Outcome(entries, dropped, notes)


def _steps(rules: Sequence[Rule]) -> Iterator[tuple[str, Rule]]:
    """The rules as they run, each with its label. Consecutive maps run as one simultaneous
    map: a rename of ``A`` to ``B`` and of ``B`` to ``A`` is a swap, which one map after the
    other could never do (the first would collide with ``B``)."""
    i, n = 0, len(rules)
    while i < n:
        j = i + 1
        while isinstance(rules[i], Map) and j < n and isinstance(rules[j], Map):
            j += 1
        if j == i + 1:
            yield f"rule {j} ({rules[i]})", rules[i]
        else:
            label = f"rules {i + 1}-{j} ({'; '.join(str(r) for r in rules[i:j])})"
            try:
                # Every rule in rules[i:j] is a Map (the loop above stopped at the first other).
                yield label, Map.merged([r for r in rules[i:j] if isinstance(r, Map)])
            except RenameError as exc:
                raise RenameError(f"{label}: {exc}") from None
        i = j


def _check_collisions(entries: list[Entry], label: str) -> None:
    seen: dict[str, Entry] = {}
    for e in entries:
        other = seen.setdefault(e.name, e)
        if other is not e:
            raise RenameError(f"{label}: {_sources(other)} and {_sources(e)} would both become "
                              f"{e.name!r}; make the rules tell them apart or drop one")


def _sources(e: Entry) -> str:
    return " + ".join(repr(s) for s in e.sources)


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PlanRow:
    """One tensor of the result: its new name, the source name(s), shape, dtype, transforms."""

    name: str
    sources: tuple[str, ...]
    shape: tuple[int, ...] | None
    dtype: str | None
    transform: str

    @property
    def old(self) -> str:
        return " + ".join(self.sources)

    @classmethod
    def of(cls, e: Entry) -> PlanRow:
        dtype = dtypes.name_of(e.dtype) if e.dtype is not None else None
        return cls(e.name, e.sources, e.shape, dtype, "; ".join(e.transforms))


@dataclass
class Plan:
    """What rules do to a checkpoint: ``rows`` (new name, old name, shape, dtype, transform),
    ``dropped`` source names with the rule that dropped each, and ``warnings`` (rules that
    matched nothing). ``str(plan)`` is a table; ``plan.to_json()`` is for scripts."""

    rows: list[PlanRow]
    dropped: list[Drop] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[PlanRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def names(self) -> dict[str, str]:
        """``{new name: old name}`` of the kept tensors."""
        return {r.name: r.old for r in self.rows}

    def as_dict(self) -> dict[str, Any]:
        return {
            "tensors": [{"name": r.name, "source": list(r.sources),
                         "shape": None if r.shape is None else list(r.shape),
                         "dtype": r.dtype, "transform": r.transform or None} for r in self.rows],
            "dropped": [{"name": d.name, "rule": d.rule} for d in self.dropped],
            "warnings": list(self.warnings),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.as_dict(), indent=indent)

    def table(self) -> str:
        """The plan as an aligned text table; an unchanged name shows ``=`` as its old name."""
        header = ("new name", "old name", "shape", "dtype", "transform")
        body = [(r.name, "=" if r.sources == (r.name,) else r.old,
                 "?" if r.shape is None else "[" + ", ".join(map(str, r.shape)) + "]",
                 r.dtype or "?", r.transform) for r in self.rows]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                 for row in [header, *body]]
        lines.append(f"{len(self.rows)} tensors kept, {len(self.dropped)} dropped")
        if self.dropped:
            width = max(len(d.name) for d in self.dropped)
            lines += [f"  dropped {d.name.ljust(width)}  by {d.rule}".rstrip() if d.rule
                      else f"  dropped {d.name}" for d in self.dropped]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    __str__ = table
