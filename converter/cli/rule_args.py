"""Rename-rule flags shared by subcommands (``ckpt convert`` ...).

Every rule flag goes through one argparse action that appends ``(kind, value)`` to
``args.rule_steps``, so rules apply in the order they were given, across flag kinds, with
``--rules FILE.toml`` spliced in where it stands.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConverterWarning, RenameError, UsageError

if TYPE_CHECKING:  # the rules load when a command uses them, not on every start-up
    from ..rules import Rules
    from ..rules.plan import Drop, PlanRow

# flag, kind, metavar, help
FLAGS = (
    ("--rename", "rename", "PATTERN=REPLACEMENT",
     r"regex substitution with groups, e.g. 'hidden([123])/=dnn/layer\1/'"),
    ("--map", "map", "OLD=NEW",
     "rename one tensor exactly (repeatable; consecutive maps apply at once: A=B B=A swaps)"),
    ("--map-file", "map_file", "FILE", "exact renames from a JSON object or TOML table"),
    ("--only", "only", "PATTERN", "keep only matching names (glob; 're:' for a regex)"),
    ("--exclude", "exclude", "PATTERN", "drop matching names, e.g. '*/Adam*'"),
    ("--strip-prefix", "strip_prefix", "PREFIX", "remove PREFIX from names that start with it"),
    ("--add-prefix", "add_prefix", "PREFIX", "put PREFIX in front of every name"),
    ("--preset", "preset", "NAME[:OPT=VALUE,...]",
     "drop-optimizer, use-ema, tf2-names, keras-names, tf1-lstm-to-keras (repeatable)"),
    ("--cast", "cast", "FROM:TO", "cast values, e.g. float32:bfloat16 (not bit-exact)"),
    ("--rules", "rules", "FILE.toml", "rules from a TOML file, applied at this point"),
)


class RuleStep(argparse.Action):
    """Append ``(kind, value)`` to ``namespace.rule_steps``; ``kind`` is the action's const."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        steps = list(getattr(namespace, "rule_steps", None) or [])
        steps.append((self.const, values))
        namespace.rule_steps = steps


def add_rule_args(parser: argparse.ArgumentParser, *, dry_run: bool = True,
                  applies_to: str = "") -> None:
    """Add the rule flags, ``--strict-rules`` and (``dry_run``) ``--dry-run`` to ``parser``;
    ``applies_to`` says in the help what the rules apply to, when not the only input."""
    where = f"applied to {applies_to}, " if applies_to else "applied "
    group = parser.add_argument_group(
        "rename rules", f"{where}in command-line order; see the README, \"Rename rules\"")
    for flag, kind, metavar, text in FLAGS:
        group.add_argument(flag, action=RuleStep, const=kind, dest="rule_steps",
                           metavar=metavar, help=text)
    group.add_argument("--strict-rules", action="store_true",
                       help="a rule that matches nothing is an error, not a warning")
    if dry_run:
        group.add_argument("--dry-run", action="store_true",
                           help="print the old -> new table and write nothing")


def split_rename(text: str) -> tuple[str, str]:
    """Split ``PATTERN=REPLACEMENT`` at the first ``=`` that is neither escaped (``\\=``) nor
    part of ``(?=``, ``(?<=`` or ``(?P=``."""
    for i, c in enumerate(text):
        if c != "=":
            continue
        backslashes = len(text[:i]) - len(text[:i].rstrip("\\"))
        if backslashes % 2 or text[:i].endswith(("(?", "(?<", "(?P")):
            continue
        if i == 0:
            break
        return text[:i], text[i + 1:]
    raise UsageError(f"--rename {text!r}: expected PATTERN=REPLACEMENT (put harder patterns in "
                     "a --rules TOML file)")


def _pair(flag: str, text: str, sep: str, example: str) -> tuple[str, str]:
    left, found, right = text.partition(sep)
    if not (found and left and right):
        raise UsageError(f"{flag} {text!r}: expected {example}")
    return left, right


def parse_preset(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME[:OPT=VALUE,...]`` → name and options (values read as TOML, else as strings)."""
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, value = _pair("--preset", item, "=", "NAME:OPTION=VALUE,...")
        try:
            from ..rules.core import parse_toml

            options[key] = parse_toml(f"v = {value}", "--preset")["v"]
        except RenameError:  # not a TOML value: take the text as a string
            options[key] = value
    return name, options


def step_rules(kind: str, value: str) -> Rules:
    from ..rules import Rules

    """The rules one flag stands for."""
    if kind == "rename":
        return Rules().rename(*split_rename(value))
    if kind == "map":
        old, new = _pair("--map", value, "=", "OLD=NEW")
        return Rules().map({old: new})
    if kind == "map_file":
        return Rules().map_file(value)
    if kind in ("only", "exclude", "strip_prefix", "add_prefix", "cast"):
        return getattr(Rules(), kind)(value)
    if kind == "preset":
        name, options = parse_preset(value)
        return Rules().preset(name, **options)
    if kind == "rules":
        return Rules.from_toml(Path(value))
    raise UsageError(f"unknown rule flag kind {kind!r}")


def rules_from_args(args: argparse.Namespace) -> Rules | None:
    """The rules the flags ask for, in command-line order; None when there are none."""
    steps = getattr(args, "rule_steps", None) or []
    if not steps:
        return None
    from ..rules import Rules

    rules = Rules(strict=bool(getattr(args, "strict_rules", False)))
    for kind, value in steps:
        rules = rules + step_rules(kind, value)
    return rules


def format_plan(rows: Iterable[PlanRow], dropped: Iterable[Drop | str] = (),
                warnings: Sequence[str] = ()) -> str:
    """The ``--dry-run`` table: new name, old name, shape, dtype, transform; then the dropped
    names (with the rule that dropped each) and warnings."""
    from ..rules.plan import Drop, Plan

    drops = [d if isinstance(d, Drop) else Drop(d, "") for d in dropped]
    return Plan(list(rows), drops, list(warnings)).table()


def dry_run_report(rules: Rules | None, checkpoint: Mapping[str, Any], as_json: bool = False
                   ) -> str:
    """What ``--dry-run`` prints: the plan of ``rules`` (none: the identity) for
    ``checkpoint``, as a table or as JSON."""
    from ..rules import Rules

    plan = (rules or Rules()).plan(checkpoint)
    return plan.to_json() if as_json else plan.table()


@contextmanager
def rule_warnings_to_stderr(quiet: bool = False) -> Iterator[None]:
    """Print rules that matched nothing as ``ckpt: warning: ...`` lines (nothing with
    ``quiet``) instead of Python's warning format; other warnings pass through."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConverterWarning)
        yield
    for w in caught:
        if not issubclass(w.category, ConverterWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        elif not quiet:
            print(f"ckpt: warning: {w.message}", file=sys.stderr)
