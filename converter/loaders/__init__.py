"""Loading checkpoints into live models, variable by variable, with a report.

``load_into`` handles Keras 3 and tf.keras (tf-keras) models; ``converter.tf1.restore`` handles
TF1 graphs. TensorFlow and Keras are imported only when a model is given.
"""

from __future__ import annotations

from typing import Any

from ..errors import LoadError, option
from ..kinds import tf1_kind
from ..rules.presets import SLIM_NAMES as SLIM
from ..tensor import Checkpoint, as_checkpoint
from .match import Target, pair
from .report import LoadReport, Misfit, Pairing

__all__ = ["LoadReport", "Misfit", "Pairing", "Target", "load_into", "open_source", "pair"]


def read_source(source: Any, format: str | None = None) -> Checkpoint:
    """A path (any readable format), Checkpoint or dict of arrays, as a Checkpoint."""
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        from .. import api

        return api.read(source, format=format)
    return as_checkpoint(source)


def open_source(source: Any, rules: Any = None, format: str | None = None) -> Checkpoint:
    """A path (any readable format), Checkpoint or dict of arrays, with rules applied."""
    ckpt = read_source(source, format)
    return rules.apply(ckpt) if rules is not None else ckpt


def open_ordered(source: Any, rules: Any = None, format: str | None = None
                 ) -> tuple[Checkpoint, dict[str, int] | None]:
    """:func:`open_source` and the tensors' creation order in their new names (from before the
    rules, which may drop what tells it), or None when it is unknown."""
    from .order import creation_rank, renamed_rank

    raw = read_source(source, format)
    if rules is None:
        return raw, creation_rank(raw)
    return rules.apply(raw), renamed_rank(creation_rank(raw), raw, rules)




def check(report: LoadReport, strict: bool, what: str, *, narrowed: bool = False) -> None:
    """Raise LoadError (carrying ``report``) when a strict load does not fit. ``narrowed``: the
    caller chose the variables (``var_list``), so tensors none of them takes are only
    reported."""
    if not strict:
        return
    failed = report.missing or report.shape_mismatch or (report.unexpected and not narrowed)
    if failed:
        raise LoadError(f"{what}: {report.summary()} ({hint(report)})", report=report)


def _leaf(name: str) -> str:
    return name.rsplit("/", 1)[-1].removesuffix(":0")


def hint(report: LoadReport) -> str:
    """What would make this load work, in the caller's spelling."""
    slim = {_leaf(n) for n in report.unexpected} & set(SLIM)
    wanted = {_leaf(n) for n in report.missing}
    tips = []
    if report.missing and all(tf1_kind(n) != "variable" for n in report.missing):
        tips.append("the checkpoint holds no optimizer state for these: leave them out of "
                    "var_list to restore the model alone")
    elif slim and wanted & {SLIM[s] for s in slim}:
        tips.append(f"{option('keras-names')} renames TF1/slim weights/biases to kernel/bias")
    elif report.missing and report.unexpected:
        tips.append(f"rename rules ({option('rename')}) or {option('match-order')} pair the "
                    "rest")
    tips.append(f"{option('no-strict')} loads what matches")
    return "; ".join(tips)


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
        match: ``"name"`` (name, object graph, layer + weight name, layer structure, shape
            where names misfit, a single candidate left by shape) or ``"order"`` to also pair
            the rest in creation order where shapes agree (see :mod:`.order`).
        format: source format when it cannot be detected.

    Returns:
        A :class:`LoadReport`.

    Raises:
        LoadError: strict and the checkpoint does not fit (``.report`` holds the report, the
            message the option that would help); a name that matches several tensors, or
            same-shape tensors nothing orders (listing them); a model that is not built yet.
    """
    from .keras import load_keras

    return load_keras(model, source, rules=rules, strict=strict, match=match, format=format)
