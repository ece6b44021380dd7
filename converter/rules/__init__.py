"""Rename rules: an ordered list of rules applied to the names of a checkpoint, lazily.

Each rule is a function of a tensor's name (and of what the reader knows about it: kind,
attrs, shape, dtype); value transforms wrap the tensor so its data is converted only when read.
Build rules in code (:class:`Rules`), from a TOML file (:meth:`Rules.from_toml`) or from CLI
flags (``converter.cli.rule_args``); the README's "Rename rules" section describes the vocabulary.

Example:
    >>> from converter.rules import Rules
    >>> rules = Rules().preset("drop-optimizer").rename(r"hidden([123])/", r"dnn/layer\\1/")
    >>> print(rules.plan(converter.read("model.ckpt-1000")))
    >>> converter.write(rules.apply(converter.read("model.ckpt-1000")), "new.safetensors")
"""

from __future__ import annotations

from .core import Entry, Pattern, Rule, RuleWarning
from .names import AddPrefix, Exclude, Map, Only, Rename, Renumber, StripPrefix
from .plan import Drop, Plan, PlanRow
from .presets import (
    PRESETS,
    DropOptimizer,
    KerasNames,
    Preset,
    Tf1LstmToKeras,
    Tf2Names,
    UseEma,
    preset,
)
from .ruleset import Rules
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

__all__ = [
    "PRESETS", "AddConstant", "AddPrefix", "Cast", "Concat", "Drop", "DropOptimizer", "Entry",
    "Exclude", "KerasNames", "Map", "MergeAxes", "Only", "Pattern", "Plan", "PlanRow", "Preset",
    "Rename", "Renumber", "ReorderGates", "Reshape", "Rule", "RuleWarning", "Rules", "Split",
    "Squeeze", "StripPrefix", "Tf1LstmToKeras", "Tf2Names", "Transpose", "Unsqueeze", "UseEma",
    "preset",
]
