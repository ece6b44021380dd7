"""What a tensor is for, judged from TF1 names: model variable, optimizer slot or counter.

TF2 object-based checkpoints are classified through their object graph instead (see
``formats/tfbundle/objgraph.py``); these name tables serve TF1 name-based checkpoints and the
``drop-optimizer`` preset.
"""

from __future__ import annotations

import re

# Slot variable suffixes created by TF1 optimizers (``dense/kernel/Adam_1``) and BERT's AdamW.
SLOT_SUFFIX = re.compile(
    r"/(Adam|Adam_\d+|adam_m|adam_v|Momentum|RMSProp|RMSProp_\d+|Adagrad|AdagradDA\w*|Ftrl|Ftrl_\d+"
    r"|Adadelta|Adadelta_\d+|ProximalAdagrad|LazyAdam|LazyAdam_\d+|Nadam|Nadam_\d+|AdamW|AdamW_\d+)$"
)
# Optimizer accumulators that are not slots of one variable.
OPTIMIZER_SCALARS = re.compile(r"(^|/)(beta1_power|beta2_power)(_\d+)?$")
COUNTERS = re.compile(r"(^|/)(global_step|save_counter)$")


def tf1_kind(name: str) -> str:
    """``slot``, ``counter`` or ``variable`` for a TF1 variable name."""
    if COUNTERS.search(name):
        return "counter"
    if SLOT_SUFFIX.search(name) or OPTIMIZER_SCALARS.search(name):
        return "slot"
    return "variable"
