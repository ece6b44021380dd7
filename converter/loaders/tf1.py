"""Restoring checkpoints into TF1 graphs (``tf.compat.v1``) variable by variable.

``restore`` pairs the graph's variables with checkpoint tensors (after rename rules), writes the
matched tensors under the variables' names into a private bundle, and points each variable's
initializer at it (``tf.compat.v1.train.init_from_checkpoint``). Running the initializers —
``restore`` does when given a session, and so does any later
``global_variables_initializer()`` — loads the checkpoint values, so the classic "initializer
after restore wiped the weights" cannot happen.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .match import Target, pair
from .order import check_order_from
from .report import LoadReport, check
from .source import open_source

_scratch: list[str] = []


def _scratch_dir() -> Path:
    if not _scratch:
        _scratch.append(tempfile.mkdtemp(prefix="converter-tf1-"))
        atexit.register(shutil.rmtree, _scratch[0], True)
    return Path(_scratch[0])


def restore(source: Any, *, rules: Any = None, var_list: list | None = None,
            strict: bool = True, session: Any = None, match: str = "name",
            format: str | None = None, order_from: str | os.PathLike[str] | None = None
            ) -> LoadReport:
    """Restore ``source`` into the default graph's variables.

    Every variable in ``var_list`` pairs with a checkpoint tensor, optimizer state included
    (slots, ``beta1_power``, ``global_step``, EMA shadows), so a training graph restored from
    its own checkpoint continues exactly where it stopped.

    Args:
        source: checkpoint path (any format), Checkpoint or dict of arrays.
        rules: :class:`converter.rules.Rules` applied to the checkpoint names first.
        var_list: the variables to restore (default: ``tf.compat.v1.global_variables()``). As
            with ``tf.compat.v1.train.Saver(var_list)``, checkpoint tensors none of them takes
            are reported as unexpected, not an error.
        strict: raise LoadError when anything is missing, unexpected or misfit; with False,
            restore what matches and report the rest (e.g. a new branch's variables as missing).
        session: if given, run the matched variables' (new) initializers in it now.
        match: ``"name"`` or ``"order"`` (see :func:`converter.load_into`).
        order_from: a ``.meta`` whose variables give the tensors' creation order for
            ``match="order"`` (default: the ``.meta`` beside a TF1 checkpoint, if any).

    Returns:
        A :class:`converter.loaders.LoadReport`; optimizer state the graph does not hold (an
        inference graph) is listed as ``ignored``.

    Raises:
        LoadError: strict and the checkpoint does not fit (``.report`` says how).
    """
    check_order_from(order_from, match)
    import tensorflow as tf

    v1 = tf.compat.v1
    variables = list(var_list) if var_list is not None else v1.global_variables()
    by_name = {v.op.name: v for v in variables}
    targets = [Target(name, [name], tuple(v.shape.as_list()),
                      np.dtype(v.dtype.base_dtype.as_numpy_dtype))
               for name, v in by_name.items()]
    ckpt, order, _ = open_source(source, rules, format, order_from)
    report = pair(targets, ckpt, match=match, state=True, order=order)
    check(report, strict, "restoring into the graph", narrowed=var_list is not None)
    if not report.pairings:
        return report
    from .. import api

    prefix = Path(tempfile.mkdtemp(dir=_scratch_dir())) / "restore"
    api.write({p.variable: ckpt[p.tensor] for p in report.pairings}, prefix, format="tf",
              state_file=False)
    v1.train.init_from_checkpoint(str(prefix), {p.variable: by_name[p.variable]
                                                for p in report.pairings})
    if session is not None:
        session.run([by_name[p.variable].initializer for p in report.pairings])
    return report
