"""Keras 3 and tf.keras models: variables by path, assigned in place."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import check, open_source
from .match import Target, pair
from .report import LoadReport


def keras_targets(model: Any) -> tuple[list[Target], dict[str, Any]]:
    """Targets for every weight of ``model`` and the variables by target name."""
    targets, variables = [], {}
    model_name = getattr(model, "name", "")
    for v in model.weights:
        # Keras 3 variables have a path ("sequential/dense/kernel"); tf-keras names end in ":0".
        path = getattr(v, "path", None) or v.name
        name = path[:-2] if path.endswith(":0") else path
        aliases = [name]
        if model_name and name.startswith(model_name + "/"):
            aliases.append(name[len(model_name) + 1:])
        if name in variables:
            continue  # a shared layer's weight appears once
        dtype = np.dtype(_dtype(v))
        targets.append(Target(name, aliases, tuple(int(d) for d in v.shape), dtype))
        variables[name] = v
    return targets, variables


def _dtype(v: Any) -> str:
    dtype = v.dtype
    return getattr(dtype, "name", None) or str(dtype)


def load_keras(model: Any, source: Any, *, rules: Any = None, strict: bool = True,
               match: str = "name", format: str | None = None) -> LoadReport:
    ckpt = open_source(source, rules, format)
    targets, variables = keras_targets(model)
    report = pair(targets, ckpt, match=match)
    check(report, strict, f"loading {source if isinstance(source, str) else 'checkpoint'} "
                          f"into {getattr(model, 'name', 'model')}")
    for p in report.pairings:
        variables[p.variable].assign(np.asarray(ckpt[p.tensor].read()))
    return report
