"""What a tensor is for, judged from TF1 names: model variable, optimizer slot or counter.

TF2 object-based checkpoints are classified through their object graph instead (see
``formats/tfbundle/objgraph.py``); these name tables serve TF1 name-based checkpoints (slots by
suffix, Keras optimizers' state by scope), Keras 2 ``.h5`` optimizer weights and the
``drop-optimizer`` preset.
"""

from __future__ import annotations

import re
from typing import Literal

# Slot variable suffixes created by TF1 optimizers (``dense/kernel/Adam_1``) and BERT's AdamW.
SLOT_SUFFIX = re.compile(
    r"/(Adam|Adam_\d+|adam_m|adam_v|Momentum|RMSProp|RMSProp_\d+|Adagrad|AdagradDA\w*|Ftrl|Ftrl_\d+"
    r"|Adadelta|Adadelta_\d+|ProximalAdagrad|LazyAdam|LazyAdam_\d+|Nadam|Nadam_\d+|AdamW|AdamW_\d+)$"
)
# Mesh TensorFlow's Adafactor keeps a variable's state beside it: ``q_slot_vr``, ``q_slot_vc``,
# ``embedding_slot_v`` (factored rows, columns, or unfactored), ``..._slot_m`` with momentum.
MESH_SLOT = re.compile(r"_slot_(v|vr|vc|m)$")
# Optimizer accumulators that are not slots of one variable.
OPTIMIZER_SCALARS = re.compile(r"(^|/)(beta1_power|beta2_power)(_\d+)?$")
COUNTERS = re.compile(r"(^|/)(global_step|save_counter)$")
# Keras optimizers keep their state under a scope named for the optimizer class instead: in
# graph mode (canned Estimators, tf.keras 1.x ``fit``) under ``training/``, e.g.
# ``training/Adagrad/dnn/hiddenlayer_0/kernel/accumulator``, ``training/Adam/iter``,
# ``training/Adam/beta_1``; in Keras 2 ``.h5`` files as ``Adam/m/dense/kernel``,
# ``Adam/dense/kernel/m``, ``Adam/iter``; Keras 1 as ``training/Adam/Variable``,
# ``Adam/iterations``, ``Adam/lr``. Everything in the scope is a slot or a hyperparameter
# variable except the step count.
KERAS_OPTIMIZER_SCOPE = re.compile(
    r"^(training(_\d+)?/)?(Adadelta|Adafactor|Adagrad|Adam|AdamW|Adamax|Ftrl|Lion"
    r"|LossScaleOptimizer|Nadam|RMSprop|SGD)(_\d+)?/(?P<rest>.+)$"
)
KERAS_STEP = re.compile(r"^(iter|iterations|iteration)$")


def keras_optimizer_kind(name: str) -> Literal["slot", "counter"] | None:
    """``slot`` or ``counter`` for a name in a Keras optimizer's scope; None outside one."""
    m = KERAS_OPTIMIZER_SCOPE.match(name)
    if m is None:
        return None
    return "counter" if KERAS_STEP.match(m["rest"]) else "slot"


def optimizer_weight_kind(name: str) -> Literal["slot", "counter"]:
    """``counter`` or ``slot`` for a weight known to be an optimizer's (a Keras 2 ``.h5``
    file's ``optimizer_weights``, where the step is also a bare ``iteration``)."""
    return "counter" if KERAS_STEP.match(name.rpartition("/")[2]) else "slot"


# First characters a match can start with: a name starting or ending otherwise skips the
# patterns above (tf1_kind is asked of every tensor of a listing).
_SLOT_FIRST = frozenset("AMRFPLNa")  # the SLOT_SUFFIX words: Adam, Momentum, ..., adam_m
_SCOPE_FIRST = frozenset("AFLNRSt")  # KERAS_OPTIMIZER_SCOPE: Adam, Ftrl, ..., training
_MESH_ENDS = ("_slot_v", "_slot_vr", "_slot_vc", "_slot_m")


def tf1_kind(name: str) -> Literal["variable", "slot", "counter"]:
    """``slot``, ``counter`` or ``variable`` for a TF1 variable name."""
    end = name[:-1] if name.endswith("\n") else name  # where the patterns' $ matches too
    last = end.rpartition("/")[2]
    if last == "global_step" or last == "save_counter":  # COUNTERS
        return "counter"
    if last and (last[0] in _SLOT_FIRST and SLOT_SUFFIX.search(name)
                 or last[0] == "b" and OPTIMIZER_SCALARS.search(name)
                 or end.endswith(_MESH_ENDS)):
        return "slot"
    if name[:1] in _SCOPE_FIRST:
        return keras_optimizer_kind(name) or "variable"
    return "variable"
