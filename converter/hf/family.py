"""Model families: how the tensors of one original release become a transformers model, as data.

A family is a TOML file in ``converter/hf/families/`` (``ckpt formats --families`` lists them)::

    name = "bert"
    description = "Google BERT (run_pretraining / run_classifier TF1 checkpoints)"
    model_type = "bert"                       # config.json's model_type
    detect = ["bert/encoder/layer_0/attention/self/query/kernel"]  # every pattern must match
    config_files = ["bert_config.json"]      # looked for beside the checkpoint, first found
    expect = ["re:^bert\\\\."]                 # every output name must match one (else refused)
    require = ["bert.pooler.dense.weight"]   # each must match some output name (else refused)
    layers = ["re:^bert\\\\.encoder\\\\.layer\\\\.(\\\\d+)\\\\."]  # numbered blocks, alike

    [config]
    keep = ["n_embd", "n_head"]               # take only these source keys (gin: a few of many)
    rename = { n_embd = "hidden_size" }       # source config key -> transformers key
    drop = ["directionality"]                 # source keys that have no transformers meaning
    defaults = { hidden_act = "gelu" }        # when neither the file nor the shapes say
    required = ["num_attention_heads"]        # what the shapes cannot settle

    [config.infer]                            # what the shapes settle (checked against the file)
    vocab_size = { tensor = "bert/embeddings/word_embeddings", axis = 0 }
    num_hidden_layers = { count = "re:^bert/encoder/layer_(\\\\d+)/" }

    [shapes]                                  # output name -> its shape in config keys
    're:\\.query\\.weight$' = ["hidden_size", "hidden_size"]   # first match; "a*b" multiplies

    [[tokenizer]]                             # files beside the checkpoint, under HF's names
    from = ["vocab.txt"]
    to = "vocab.txt"

    [[rule]]                                  # rename rules (converter.rules TOML tables)
    rename = "/"
    ...

    [[reverse]]                               # transformers' names back to the release's
    rename = '\\.'                            # (``ckpt convert HF_DIR x.ckpt --from hf``),
    to = "/"                                  # checked to invert ``rule`` exactly

    hook = "transformers-tf2"                 # optional: see .hooks (then class, model_type
                                              # and config may come from the release's config)

    [[architecture]]                          # first whose ``when`` patterns all match
    class = "BertForPreTraining"
    when = ["cls/seq_relationship/output_weights"]
    variant = "pretraining"                   # optional: --family NAME:pretraining picks it
    config = { }                              # constants for config.json
    [config.infer] / expect / require / rule / reverse  # as above, for this architecture
                                              # (its reverse runs before the family's)

A family may name a ``base`` family (``base = "t5"``): it takes every top-level key of it that it
does not give itself (a table is replaced whole, not merged). ``auto_detect = false`` keeps a
family out of detection, for one whose tensors are named as another's (mT5 as T5 v1.1): it is
chosen with ``--family`` only.

``--family NAME:VARIANT`` picks the architecture whose ``variant`` is VARIANT (for a checkpoint
that holds more than one model, as ELECTRA's pretraining holds a generator and a
discriminator); without it the first that fits is chosen. ``layers`` patterns are each applied
on their own, so blocks numbered twice (ALBERT's groups of layers) are checked along both.
``[shapes]`` (top level or per architecture) gives the shape each output tensor matching a
pattern must have, as config keys, products of them or numbers
(``'re:\\.query\\.weight$' = ["hidden_size", "hidden_size"]``, ``"num_heads*d_kv"``);
``[source_shapes]`` does the same on the release's names and shapes. Both are checked once
config.json is settled, so a head that does not fit the model is refused before transformers
would call it mismatched. ``[config] flatten`` names tables in the release's
config whose keys count as top-level ones (ELECTRA's ``model_hparam_overrides``).

Patterns are the rules' patterns: globs, or ``re:`` regexes (searched), on the names the family
is applied to (the source's, after the user's own rules). Everything here is checked when the
file is loaded, so a broken family fails on first use with its file name, never mid-write.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from ..errors import RenameError, UsageError, keyword
from ..rules import Pattern, Rules
from ..rules.core import parse_toml
from ..rules.toml import rule_from_table
from .hooks import HOOKS

_TOP = {"name", "description", "model_type", "detect", "config_files", "expect", "require",
        "layers", "config", "tokenizer", "rule", "reverse", "architecture", "hook", "base",
        "auto_detect", "shapes", "source_shapes", "tied"}
_ARCH = {"class", "when", "config", "infer", "expect", "require", "rule", "reverse",
         "description", "tied", "variant", "shapes", "source_shapes", "ignore", "ignore_if",
         "accept", "unless"}
_CONFIG = {"rename", "drop", "keep", "defaults", "required", "infer", "flatten", "divides",
           "choices", "values"}
_DIM = re.compile(r"^([A-Za-z_]\w*|\d+)(\*([A-Za-z_]\w*|\d+))*$")  # n_head*d_kv, 3*n_embd


@dataclass(frozen=True)
class Infer:
    """A config value the tensor shapes settle: one axis of one tensor (``tensor``, ``axis``;
    a ``re:`` pattern takes the first name it matches), divided by another config value
    (``divide_by``), or how many distinct numbers the first group of ``count`` captures (the
    number of layers)."""

    key: str
    tensor: str | None = None
    axis: int = 0
    count: str | None = None
    divide_by: str | None = None
    optional: bool = False
    divide: int | None = None  # floor division by a constant (ELECTRA: heads = hidden // 64)
    at_least: int | None = None
    if_source: str = ""  # only when the release's config has this key
    add: int = 0  # GPT-2's <|endoftext|> is the last id: vocabulary size - 1

    def value(self, shapes: Mapping[str, tuple[int, ...]], config: Mapping[str, Any]
              ) -> int | None:
        """The value, or None when the tensor it is read from is not in the checkpoint."""
        if self.count is not None:
            regex = Pattern(self.count)
            numbers = set()
            for name in shapes:
                m = regex.match(name)
                if m is not None and m.re.groups:
                    numbers.add(int(m.group(1)))
            return len(numbers) or None
        if self.tensor is None:
            return None
        shape = shapes.get(self.tensor)
        if shape is None and self.tensor.startswith("re:"):
            # A release whose root object has more than one name (``model/``, ``encoder/``).
            regex = Pattern(self.tensor)
            shape = next((s for n, s in shapes.items() if regex.match(n)), None)
        if shape is None or not -len(shape) <= self.axis < len(shape):
            return None
        n = shape[self.axis]
        if self.divide_by is not None:
            by = config.get(self.divide_by)
            if not isinstance(by, int) or by <= 0 or n % by:
                return None
            n //= by
        if self.divide is not None:
            n //= self.divide
        if self.at_least is not None:
            n = max(n, self.at_least)
        return n + self.add


@dataclass(frozen=True)
class Architecture:
    """One transformers model class the family can produce, and when."""

    cls: str
    when: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    infer: tuple[Infer, ...] = ()
    expect: tuple[str, ...] = ()
    require: tuple[str, ...] = ()
    rules: tuple[Any, ...] = ()
    description: str = ""
    reverse: tuple[Any, ...] = ()
    tied: Mapping[str, str] = field(default_factory=dict)
    variant: str = ""
    shapes: tuple[tuple[str, tuple[int | str, ...]], ...] = ()
    source_shapes: tuple[tuple[str, tuple[int | str, ...]], ...] = ()
    # Keys of the release's config that describe another model of the checkpoint (ELECTRA's
    # hparams give the discriminator's sizes; the generator's follow from them).
    ignore: tuple[str, ...] = ()
    ignore_if: str = ""  # ignore them only when the release's config has this key
    # Patterns a release's config value may match instead of equalling ``config``'s.
    accept: Mapping[str, str] = field(default_factory=dict)
    # The way back does not take this variant for a config.json that says any of these
    # (``tie_word_embeddings = false``: the tied variant drops lm_head as a copy).
    unless: Mapping[str, Any] = field(default_factory=dict)

    def fits(self, names: Iterable[str]) -> bool:
        names = list(names)
        return all(any(Pattern(p).match(n) for n in names) for p in self.when)


@dataclass(frozen=True)
class Tokenizer:
    """A tokenizer file: the first of ``sources`` beside the checkpoint, copied as ``to``.
    ``case``: a WordPiece vocabulary that says whether the model is cased (upper-case pieces)
    and so the tokenizer's ``do_lower_case``, which transformers would otherwise default."""

    sources: tuple[str, ...]
    to: str
    case: bool = False


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    model_type: str
    detect: tuple[str, ...]
    architectures: tuple[Architecture, ...]
    config_files: tuple[str, ...] = ()
    expect: tuple[str, ...] = ()
    require: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    rules: tuple[Any, ...] = ()
    rename: Mapping[str, str] = field(default_factory=dict)
    drop: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    infer: tuple[Infer, ...] = ()
    tokenizers: tuple[Tokenizer, ...] = ()
    reverse: tuple[Any, ...] = ()
    tied: Mapping[str, str] = field(default_factory=dict)
    where: str = ""
    hook: str = ""  # a function of .hooks that settles the class, config and rank-bound rules
    keep: tuple[str, ...] | None = None
    auto_detect: bool = True
    shapes: tuple[tuple[str, tuple[int | str, ...]], ...] = ()
    source_shapes: tuple[tuple[str, tuple[int | str, ...]], ...] = ()
    flatten: tuple[str, ...] = ()
    divides: Mapping[str, str] = field(default_factory=dict)  # heads -> the size they split
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    # A release key whose values become another key's (gin's activation list -> T5's
    # feed_forward_proj): {key: (to, {release value, lists joined by ",": value})}.
    values: Mapping[str, tuple[str, Mapping[str, Any]]] = field(default_factory=dict)

    def matches(self, names: Iterable[str]) -> bool:
        names = list(names)
        return bool(self.detect) and all(
            any(Pattern(p).match(n) for n in names) for p in self.detect)

    def architecture(self, names: Iterable[str], variant: str | None = None) -> Architecture:
        """The first architecture that fits (of those with ``variant``, when one is asked)."""
        names = list(names)
        archs = self.architectures
        if variant:
            archs = tuple(a for a in archs if a.variant == variant)
            if not archs:
                known = sorted({a.variant for a in self.architectures if a.variant})
                raise UsageError(f"{self.name} has no variant {variant!r} (variants: "
                                 f"{', '.join(known) or 'none'})")
        for arch in archs:
            if arch.fits(names):
                return arch
        raise UsageError(f"{self.name}: the checkpoint fits none of "
                         f"{', '.join(a.cls for a in archs)}")

    def rules_for(self, arch: Architecture) -> Rules:
        return Rules((*self.rules, *arch.rules))

    def reverse_for(self, arch: Architecture) -> Rules | None:
        """transformers' names back to the release's, or None if the family has no way back."""
        if not self.reverse and not arch.reverse:
            return None
        return Rules((*arch.reverse, *self.reverse))

    def tied_for(self, arch: Architecture) -> dict[str, str]:
        """transformers' tied copies in this class (``lm_head.weight`` -> ``shared.weight``):
        a directory holding a copy that differs from its original is not this class."""
        return {**self.tied, **arch.tied}


def _strs(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{what}: expected a string or a list of strings")
    return tuple(value)


def _table(value: Any, what: str, known: set[str] | None = None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{what}: expected a table")
    if known is not None and set(value) - known:
        raise UsageError(f"{what}: unknown key(s) {', '.join(sorted(set(value) - known))}")
    return value


def _infers(table: Any, where: str) -> tuple[Infer, ...]:
    out = []
    for key, spec in _table(table, where).items():
        spec = _table(spec, f"{where}.{key}", {"tensor", "axis", "count", "divide_by",
                                                "optional", "divide", "at_least",
                                                "if_source", "add"})
        for option in ("divide", "at_least"):
            if option in spec and (not isinstance(spec[option], int) or spec[option] < 1):
                raise UsageError(f"{where}.{key}: {option} must be a positive integer")
        if ("tensor" in spec) == ("count" in spec):
            raise UsageError(f"{where}.{key}: give one of tensor or count")
        infer = Infer(key, **spec)
        for p in filter(None, (infer.count, infer.tensor)):
            Pattern(p)
        out.append(infer)
    return tuple(out)


def _rules(tables: Any, where: str) -> tuple[Any, ...]:
    if tables is None:
        return ()
    if not isinstance(tables, list):
        raise UsageError(f"{where}: expected [[rule]] tables")
    try:
        return tuple(rule_from_table(t, f"{where} rule {i + 1}") for i, t in enumerate(tables))
    except RenameError as exc:
        raise UsageError(str(exc)) from None


def _patterns(value: Any, what: str) -> tuple[str, ...]:
    patterns = _strs(value or [], what)
    try:
        for p in patterns:
            Pattern(p)
    except RenameError as exc:
        raise UsageError(f"{what}: {exc}") from None
    return patterns


def _doc(text: str, where: str) -> dict[str, Any]:
    try:
        return parse_toml(text, where)
    except RenameError as exc:
        raise UsageError(str(exc)) from None


def _shapes(value: Any, where: str) -> tuple[tuple[str, tuple[int | str, ...]], ...]:
    out = []
    for pattern, dims in _table(value, where).items():
        if not isinstance(dims, list) or not all(
                (isinstance(d, int) and not isinstance(d, bool) and d >= 0)
                or (isinstance(d, str) and _DIM.match(d)) for d in dims):
            raise UsageError(f"{where} {pattern!r}: dims must be sizes or config keys "
                             f"(``num_heads*d_kv``)")
        out.append((_patterns(pattern, f"{where} {pattern!r}")[0], tuple(dims)))
    return tuple(out)


def parse(text: str, where: str, bases: Mapping[str, Mapping[str, Any]] | None = None
          ) -> Family:
    """A family from its TOML text; UsageError naming ``where`` on anything malformed.
    ``bases`` are the other families' TOML documents by name, for a family that names a
    ``base``: it takes every top-level key of that family it does not give itself."""
    doc = _doc(text, where)
    if "base" in doc:
        base = (bases or {}).get(doc["base"]) if isinstance(doc["base"], str) else None
        if base is None or "base" in base:
            raise UsageError(f"{where}: base {doc['base']!r} is not a family without a base")
        doc = {**base, **{k: v for k, v in doc.items() if k != "base"}}
    unknown = set(doc) - _TOP
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    hook = doc.get("hook", "")
    if not isinstance(hook, str):
        raise UsageError(f"{where}: hook must be a string")
    if hook:
        if hook not in HOOKS:
            raise UsageError(f"{where}: unknown hook {hook!r} (known: {', '.join(HOOKS)})")
    # With a hook, the class and model_type may come from the release's config instead.
    for key in ("name",) if hook else ("name", "model_type"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise UsageError(f"{where}: {key} must be a non-empty string")
    config = _table(doc.get("config"), f"{where} [config]", _CONFIG)
    archs = []
    for i, a in enumerate(doc.get("architecture") or []):
        w = f"{where} architecture {i + 1}"
        a = _table(a, w, _ARCH)
        if not isinstance(a.get("class"), str):
            raise UsageError(f"{w}: class must be a string")
        archs.append(Architecture(
            a["class"], _patterns(a.get("when"), f"{w} when"), _table(a.get("config"), w),
            _infers(a.get("infer"), f"{w} infer"), _patterns(a.get("expect"), f"{w} expect"),
            _patterns(a.get("require"), f"{w} require"), _rules(a.get("rule"), w),
            str(a.get("description", "")), _rules(a.get("reverse"), f"{w} reverse"),
            _tied(a.get("tied"), f"{w} tied"), str(a.get("variant", "")),
            _shapes(a.get("shapes"), f"{w} shapes"),
            _shapes(a.get("source_shapes"), f"{w} source_shapes"),
            _strs(a.get("ignore") or [], f"{w} ignore"), str(a.get("ignore_if", "")),
            _accept(a.get("accept"), f"{w} accept"), _table(a.get("unless"), f"{w} unless")))
    if not archs and not hook:
        raise UsageError(f"{where}: needs at least one [[architecture]]")
    tokenizers = []
    for i, t in enumerate(doc.get("tokenizer") or []):
        t = _table(t, f"{where} tokenizer {i + 1}", {"from", "to", "case"})
        if not isinstance(t.get("to"), str) or "/" in t["to"]:
            raise UsageError(f"{where} tokenizer {i + 1}: to must be a file name")
        tokenizers.append(Tokenizer(_strs(t.get("from"), f"{where} tokenizer {i + 1}"),
                                    t["to"], _bool(t.get("case", False), f"{where} case")))
    layers = _patterns(doc.get("layers"), f"{where} layers")
    for p in layers:
        if not Pattern(p).regex.groups:
            raise UsageError(f"{where} layers: {p!r} must capture the layer number")
    rename = _table(config.get("rename"), f"{where} [config] rename")
    if not all(isinstance(v, str) for v in rename.values()):
        raise UsageError(f"{where} [config] rename: values must be key names")
    return Family(
        name=doc["name"], description=str(doc.get("description", "")),
        model_type=str(doc.get("model_type", "")),
        detect=_patterns(doc.get("detect"), f"{where} detect"),
        architectures=tuple(archs),
        config_files=_strs(doc.get("config_files") or [], f"{where} config_files"),
        expect=_patterns(doc.get("expect"), f"{where} expect"),
        require=_patterns(doc.get("require"), f"{where} require"), layers=layers,
        rules=_rules(doc.get("rule"), where), rename=rename,
        drop=_strs(config.get("drop") or [], f"{where} [config] drop"),
        defaults=_table(config.get("defaults"), f"{where} [config] defaults"),
        required=_strs(config.get("required") or [], f"{where} [config] required"),
        infer=_infers(config.get("infer"), f"{where} [config.infer]"),
        tokenizers=tuple(tokenizers), reverse=_rules(doc.get("reverse"), f"{where} reverse"),
        tied=_tied(doc.get("tied"), f"{where} tied"), where=where, hook=hook,
        keep=(_strs(config["keep"], f"{where} [config] keep") if "keep" in config else None),
        auto_detect=_bool(doc.get("auto_detect", True), f"{where} auto_detect"),
        shapes=_shapes(doc.get("shapes"), f"{where} [shapes]"),
        source_shapes=_shapes(doc.get("source_shapes"), f"{where} [source_shapes]"),
        flatten=_strs(config.get("flatten") or [], f"{where} [config] flatten"),
        divides=_tied(config.get("divides"), f"{where} [config] divides"),
        choices=_choices(config.get("choices"), f"{where} [config] choices"),
        values=_values(config.get("values"), f"{where} [config.values]"))


def _accept(value: Any, what: str) -> dict[str, str]:
    accept = _tied(value, what)
    _patterns(list(accept.values()), what)
    return accept


def _values(value: Any, what: str) -> dict[str, tuple[str, dict[str, Any]]]:
    out = {}
    for key, spec in _table(value, what).items():
        spec = _table(spec, f"{what}.{key}", {"to", "map"})
        if not isinstance(spec.get("to"), str) or not isinstance(spec.get("map"), dict):
            raise UsageError(f"{what}.{key}: needs to = KEY and map = {{ VALUE = VALUE }}")
        out[key] = (spec["to"], spec["map"])
    return out


def _choices(value: Any, what: str) -> dict[str, tuple[Any, ...]]:
    out = {}
    for key, allowed in _table(value, what).items():
        if not isinstance(allowed, list) or not allowed:
            raise UsageError(f"{what}: {key} needs a list of the values allowed")
        out[key] = tuple(allowed)
    return out


def _tied(value: Any, what: str) -> dict[str, str]:
    tied = _table(value, what)
    if not all(isinstance(v, str) for v in tied.values()):
        raise UsageError(f"{what}: values must be tensor names")
    return tied


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{what}: expected true or false")
    return value


@cache
def families() -> dict[str, Family]:
    """The families shipped in the package, by name."""
    found: dict[str, Family] = {}
    items = [(f"families/{item.name}", item.read_text(encoding="utf-8"))
             for item in sorted(resources.files(__package__).joinpath("families").iterdir(),
                                key=lambda p: p.name) if item.name.endswith(".toml")]
    docs = {}
    for where, text in items:
        doc = _doc(text, where)
        if isinstance(doc.get("name"), str):
            docs[doc["name"]] = doc
    for where, text in items:
        fam = parse(text, where, docs)
        if fam.name in found:
            raise UsageError(f"{where}: family {fam.name!r} is defined twice")
        found[fam.name] = fam
    return found


def get(name: str) -> Family:
    known = families()
    if name not in known:
        raise UsageError(f"unknown model family {name!r} (known: {', '.join(known)})")
    return known[name]


def detect(names: Iterable[str]) -> Family:
    """The one family whose ``detect`` patterns all match; UsageError when none or several do."""
    names = list(names)
    found = [f for f in families().values() if f.auto_detect and f.matches(names)]
    if len(found) == 1:
        return found[0]
    if not found:
        sample = ", ".join(sorted(names)[:3])
        raise UsageError(f"cannot tell the model family from the tensor names ({sample}, ...); "
                         f"pass {keyword('family')} (one of: {', '.join(families())})")
    raise UsageError(f"the tensor names fit several model families "
                     f"({', '.join(f.name for f in found)}); pass {keyword('family')}")


def layer_number(patterns: tuple[str, ...], name: str) -> tuple[str, int] | None:
    """``(name with the layer number taken out, number)`` for a name in a numbered block."""
    for p in patterns:
        m = Pattern(p).match(name)
        if m is not None:
            start, end = m.span(1)
            return f"{p}:{name[:start]}#{name[end:]}", int(m.group(1))
    return None

