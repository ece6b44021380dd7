"""Loading checkpoints into live models, variable by variable, with a report.

``load_into`` handles Keras 3 and tf.keras (tf-keras) models; ``converter.tf1.restore`` handles
TF1 graphs. TensorFlow and Keras are imported only when a model is given.
"""

from __future__ import annotations

from typing import Any

from ..errors import LoadError
from ..tensor import Checkpoint, as_checkpoint
from .match import Target, pair
from .report import LoadReport, Misfit, Pairing

__all__ = ["LoadReport", "Misfit", "Pairing", "Target", "load_into", "open_source", "pair"]


def open_source(source: Any, rules: Any = None, format: str | None = None) -> Checkpoint:
    """A path (any readable format), Checkpoint or dict of arrays, with rules applied."""
    from .. import api

    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        ckpt = api.read(source, format=format)
    else:
        ckpt = as_checkpoint(source)
    return rules.apply(ckpt) if rules is not None else ckpt


def check(report: LoadReport, strict: bool, what: str) -> None:
    if strict and not report.ok:
        raise LoadError(f"{what}: {report.summary()} (strict=False loads what matches; rename "
                        "rules map the rest)")


def load_into(model: Any, source: Any, *, rules: Any = None, strict: bool = True,
              match: str = "name", format: str | None = None) -> LoadReport:
    """Assign checkpoint tensors to a Keras model's variables and report what happened.

    Sources include tf.keras TF-format ``save_weights`` checkpoints and SavedModel
    directories (paired through their object graph: ``full_name`` s, then the layer structure
    when layers were renamed), Keras 2 ``.h5`` files and Keras 3 ``.weights.h5``/``.keras``
    files. The pairing stages are described in :mod:`converter.loaders.match`.

    Args:
        model: a built Keras 3 or tf.keras model (or layer).
        source: checkpoint path (any format), Checkpoint or dict of arrays.
        rules: :class:`converter.rules.Rules` applied to the checkpoint's names first.
        strict: raise :class:`LoadError` (assigning nothing) if any variable is missing, any
            checkpoint variable is unexpected, or a shape differs; else assign what fits.
        match: ``"name"`` (name, object graph, layer + weight name, layer structure, a single
            candidate left by shape) or ``"order"`` to also pair the rest by order and shape.
        format: source format when it cannot be detected.

    Returns:
        A :class:`LoadReport`.

    Raises:
        LoadError: strict and the checkpoint does not fit; a name that matches several
            tensors (listing them); a model that is not built yet.
    """
    from .keras import load_keras

    return load_keras(model, source, rules=rules, strict=strict, match=match, format=format)
