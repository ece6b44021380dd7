"""Optimizer state into a compiled Keras 3 model, so that training continues where it stopped.

After the model's weights are loaded (the load report says which checkpoint tensor each
variable came from), every trained variable's slots are found in the source, converted where
the two optimizers keep them differently, and assigned to the Keras 3 optimizer's slot for that
variable; its step counter is set too. Supported pairs:

- TF1 ``AdamOptimizer`` (``v/Adam``, ``v/Adam_1``, ``beta1_power``) -> ``Adam`` or ``AdamW``:
  m and v as they are; iterations t from ``beta1_power`` = beta1^(t+1).
- TF1 ``MomentumOptimizer`` (``v/Momentum``) -> ``SGD(momentum>0)``: momentum =
  -learning_rate * accumulator; iterations from ``global_step``.
- TF1 ``RMSPropOptimizer`` (``v/RMSProp``, ``v/RMSProp_1``; ``v/RMSProp_2`` when centered) ->
  ``RMSprop``: rms -> velocity, momentum -> momentum, mg -> average_gradient.
- tf.keras ``Adam``, ``SGD`` (momentum), ``RMSprop`` (slot full names ``Adam/m/<variable>``),
  and the legacy ``Adam`` and ``SGD`` (``.OPTIMIZER_SLOT`` entries) -> the same Keras 3 class:
  slots as they are, ``iter`` -> iterations.

The update rules agree term by term (TF1's Adam adds ε to √v without bias correction, as Keras
3 does; TF1 Momentum accumulates gradients where Keras accumulates the steps, hence the factor;
TF1 RMSProp adds ε under the root, as Keras 3 does). Hyperparameters (learning rate, betas,
ε, momentum, ρ) come from the target optimizer: build it as the source was built. Anything
else is a :class:`LoadError` naming both optimizers, never a silent fresh start.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import LoadError, UsageError, option
from ..tensor import Checkpoint
from .report import LoadReport
from .source import read_source

TF1_SLOT = re.compile(r"^(?P<var>.+)/(?P<slot>Adam|Adam_1|Momentum|RMSProp|RMSProp_[12])$")
TF1_FAMILY = {"Adam": "adam", "Adam_1": "adam", "Momentum": "momentum", "RMSProp": "rmsprop",
              "RMSProp_1": "rmsprop", "RMSProp_2": "rmsprop"}
KERAS_FAMILY = {"m": "adam", "v": "adam", "velocity": "rmsprop", "average_gradient": "rmsprop",
                "momentum": "momentum", "rms": "legacy-rmsprop", "mg": "legacy-rmsprop",
                "vhat": "amsgrad"}
WITH = option("with-optimizer")
TARGETS = {"adam": ("Adam", "AdamW"), "momentum": ("SGD",), "rmsprop": ("RMSprop",)}


@dataclass
class Source:
    """A checkpoint's optimizer: its family, a label, and each variable's slots by role
    (``m``, ``v``, ``momentum``, ``velocity``, ``average_gradient``), keyed by the variable's
    tensor name in the checkpoint."""

    family: str
    label: str
    slots: dict[str, dict[str, str]] = field(default_factory=dict)
    iterations: int | None = None
    tf1: bool = False


def check_optimizer(model: Any) -> None:
    """``model`` must be a Keras 3 model compiled with an optimizer."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "iterations"):
        raise UsageError(f"{WITH} needs a compiled Keras 3 model: compile "
                         f"{getattr(model, 'name', 'the model')!r} with the optimizer to continue "
                         "with (model.compile(optimizer=..., loss=...)) in the factory")
    if not hasattr(optimizer, "_get_variable_index"):
        raise UsageError(f"{WITH} writes Keras 3 optimizers; this model is tf.keras")


def load_optimizer(model: Any, source: Any, report: LoadReport, *, rules: Any = None,
                   format: str | None = None) -> dict[str, Any]:
    """Carry the source's optimizer state into ``model.optimizer`` (built here if needed).

    Args:
        model: the compiled Keras 3 model the weights were just loaded into.
        source: the same checkpoint (path, Checkpoint or dict) the weights came from.
        report: the weights' load report; its pairings say which tensor each variable took.
        rules: the rename rules the weights were loaded with (slots are found under the
            checkpoint's own names).

    Returns:
        ``{"source", "target", "slots", "iterations"}`` for the report.
    """
    from .keras import variable_name

    check_optimizer(model)
    raw = read_source(source, format)
    origin: dict[str, str] = {}
    if rules is not None:  # slots keep their own names; only those the rules kept count
        plan = rules.plan(raw)
        origin = {r.name: r.sources[0] for r in plan}
        kept = {s for r in plan for s in r.sources}
        raw = Checkpoint({n: t for n, t in raw.items() if n in kept}, raw.metadata,
                         source=raw.source)
    found = find(raw)
    optimizer = model.optimizer
    target = type(optimizer).__name__
    if found is None:
        raise LoadError(f"{WITH}: the source holds no optimizer state (slots) that "
                        "could be carried over; was it dropped by a rule such as "
                        f"{option('drop-optimizer')}?")
    if found.family not in TARGETS or target not in TARGETS[found.family]:
        raise LoadError(f"{WITH}: cannot carry {found.label} state into a Keras 3 "
                        f"{target} optimizer (supported: TF1/tf.keras Adam -> Adam or AdamW, "
                        "Momentum -> SGD(momentum>0), RMSProp -> RMSprop)")
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    iterations = _iterations(found, optimizer, raw)
    optimizer.iterations.assign(iterations)
    lr = float(np.asarray(optimizer.learning_rate))
    tensor_of = {p.variable: origin.get(p.tensor, p.tensor) for p in report.pairings}
    count = 0
    for v in model.trainable_variables:
        name = variable_name(v)
        if name not in tensor_of:
            continue  # not loaded: its slots start fresh, like its values
        slots = found.slots.get(tensor_of[name])
        if not slots:
            raise LoadError(f"{WITH}: no {found.label} slots for {tensor_of[name]!r} "
                            f"(loaded into {name!r}) in the source")
        for role, values in _convert(found, slots, raw, optimizer, lr).items():
            target_slot = _slot(optimizer, role, v)
            if tuple(target_slot.shape) != values.shape:
                raise LoadError(f"{WITH}: slot {role} of {name!r} has shape "
                                f"{list(target_slot.shape)}, the source's {list(values.shape)}")
            target_slot.assign(values)
            count += 1
    return {"source": found.label, "target": target, "slots": count, "iterations": iterations}


def find(ckpt: Checkpoint) -> Source | None:
    """The optimizer whose state ``ckpt`` holds (TF1 slot names, tf.keras slot full names or
    legacy ``.OPTIMIZER_SLOT`` entries), or None."""
    tf1 = [(m.group("var"), m.group("slot")) for n in ckpt if (m := TF1_SLOT.match(n))]
    if tf1:
        families = {TF1_FAMILY[s] for _, s in tf1}
        if len(families) > 1:
            raise LoadError(f"{WITH}: the source holds state of several optimizers "
                            f"({', '.join(sorted(families))}); drop all but one with rules")
        family = families.pop()
        label = {"adam": "TF1 AdamOptimizer", "momentum": "TF1 MomentumOptimizer",
                 "rmsprop": "TF1 RMSPropOptimizer"}[family]
        out = Source(family, label, tf1=True)
        for var, slot in tf1:
            out.slots.setdefault(var, {})[slot] = f"{var}/{slot}"
        for var, slots in out.slots.items():
            out.slots[var] = _tf1_roles(family, slots)
        return out
    return _keras_slots(ckpt)


def _tf1_roles(family: str, slots: dict[str, str]) -> dict[str, str]:
    if family == "adam":
        return {"m": slots.get("Adam", ""), "v": slots.get("Adam_1", "")}
    if family == "momentum":
        return {"momentum": slots["Momentum"]}
    # TF1 creates rms, then mg when centered, then momentum: RMSProp, RMSProp_1[, RMSProp_2].
    if "RMSProp_2" in slots:
        return {"velocity": slots["RMSProp"], "average_gradient": slots["RMSProp_1"],
                "momentum": slots["RMSProp_2"]}
    return {"velocity": slots["RMSProp"], "momentum": slots.get("RMSProp_1", "")}


def _keras_slots(ckpt: Checkpoint) -> Source | None:
    by_full = {t.attrs.get("full_name"): n for n, t in ckpt.items()
               if t.kind == "variable" and t.attrs.get("full_name")}
    slots: dict[str, dict[str, str]] = {}
    names: set[str] = set()
    for n, t in ckpt.items():
        if t.kind != "slot":
            continue
        if t.attrs.get("slot_of") in ckpt:  # OptimizerV2 (legacy): .OPTIMIZER_SLOT entries
            var, role = t.attrs["slot_of"], t.attrs.get("slot_name", "")
        else:  # tf.keras optimizers: full name "<optimizer>/<slot>/<variable's full name>"
            parts = t.attrs.get("full_name", "").split("/", 2)
            if len(parts) < 3 or parts[2] not in by_full:
                continue
            var, role = by_full[parts[2]], parts[1]
        slots.setdefault(var, {})[role] = n
        names.add(role)
    if not slots:
        return None
    families = {KERAS_FAMILY.get(r, r) for r in names}
    if names == {"m"}:  # the newer tf.keras SGD calls its momentum m
        family = "momentum"
        slots = {var: {"momentum": s["m"]} for var, s in slots.items()}
    elif families == {"adam"}:
        family = "adam"
    elif families <= {"rmsprop", "momentum"} and "rmsprop" in families:
        family = "rmsprop"
    elif families == {"momentum"}:
        family = "momentum"
    else:
        family = "+".join(sorted(families))
    label = {"adam": "tf.keras Adam", "momentum": "tf.keras SGD (momentum)",
             "rmsprop": "tf.keras RMSprop"}.get(family, f"tf.keras optimizer ({family} slots)")
    counters = [t for t in ckpt.values() if t.kind == "counter" and
                t.attrs.get("object_path", "").startswith("optimizer/")]
    iterations = int(np.asarray(counters[0].read())) if counters else None
    return Source(family, label, slots, iterations)


def _iterations(found: Source, optimizer: Any, ckpt: Checkpoint) -> int:
    if found.tf1 and found.family == "adam":
        # TF1 Adam keeps beta1_power = beta1^(t+1) after t steps; Keras 3 uses iterations + 1.
        powers = [n for n in ckpt if re.search(r"(^|/)beta1_power$", n)]
        if powers:
            power = float(np.asarray(ckpt[powers[0]].read()))
            beta = float(optimizer.beta_1)
            steps = math.log(power) / math.log(beta) - 1 if 0 < power < 1 else -1
            if steps < -1e-3 or abs(steps - round(steps)) > 1e-3:
                raise LoadError(f"{WITH}: beta1_power {power:g} is no power of the "
                                f"target Adam's beta_1={beta:g}; build it with the source's "
                                "beta1")
            return int(round(steps))
    if found.tf1:
        counters = [n for n in ckpt if re.search(r"(^|/)global_step$", n)]
        return int(np.asarray(ckpt[counters[0]].read())) if counters else 0
    return found.iterations or 0


def _convert(found: Source, slots: dict[str, str], ckpt: Checkpoint, optimizer: Any,
             lr: float) -> dict[str, np.ndarray]:
    """Source slot values in the target's terms, by the target's slot role."""
    out = {}
    for role, name in slots.items():
        if not name:
            raise LoadError(f"{WITH}: {found.label} state is incomplete ({role} "
                            "slot missing)")
        values = np.asarray(ckpt[name].read())
        if found.family == "momentum" and found.tf1:
            values = (-lr * values.astype(np.float64)).astype(values.dtype)
        out[role] = values
    if found.family == "rmsprop":
        if not getattr(optimizer, "momentum", 0):
            out.pop("momentum", None)  # TF1 keeps the slot even at momentum 0; Keras does not
        if getattr(optimizer, "centered", False) and "average_gradient" not in out:
            raise LoadError(f"{WITH}: the target RMSprop is centered, the source "
                            f"{found.label} is not")
        if not getattr(optimizer, "centered", False):
            out.pop("average_gradient", None)
    if found.family == "momentum" and not getattr(optimizer, "momentum", 0):
        raise LoadError(f"{WITH}: cannot carry {found.label} state into SGD "
                        "without momentum; compile the target with SGD(momentum=...)")
    return out


def _slot(optimizer: Any, role: str, variable: Any) -> Any:
    lists = {"m": "_momentums", "v": "_velocities", "velocity": "_velocities",
             "average_gradient": "_average_gradients",
             "momentum": "momentums" if type(optimizer).__name__ == "SGD" else "_momentums"}
    return getattr(optimizer, lists[role])[optimizer._get_variable_index(variable)]
