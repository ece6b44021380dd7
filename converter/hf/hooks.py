"""Family hooks: the part of a mapping that renames and fixed layouts cannot say.

A family names its hook with ``hook = "NAME"``. The hook sees the source's names and shapes and
the config file beside it, and returns the transformers class, ``config.json``'s content and
rules (run before the family's own ``[[rule]]`` tables) that depend on a tensor's rank or on
the class. A hook holds no names of its own: those stay in the family's TOML.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..rules.core import Rule
from ..rules.names import Exclude, Rename
from ..rules.transforms import Squeeze, Transpose


@dataclass(frozen=True)
class Hooked:
    """What a hook settled: the class, config.json's content and rules to run first."""

    cls: str
    config: dict[str, Any]
    rules: tuple[Rule, ...] = ()


# (family name, source shapes by name, the release's config or None, where that config is)
Hook = Callable[[str, Mapping[str, tuple[int, ...]], Mapping[str, Any] | None, str], Hooked]


def _exact(names: list[str]) -> str:
    return "re:^(?:" + "|".join(re.escape(n) for n in sorted(names)) + ")$"


def keras_snake(name: str) -> str:
    """The layer name Keras 2 gives a model of class ``name`` (``tf_keras``'s to_snake_case)."""
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    return name if not name.startswith("_") else "private" + name


def transformers_tf2(family: str, shapes: Mapping[str, tuple[int, ...]],
                     config: Mapping[str, Any] | None, where: str) -> Hooked:
    """``tf_model.h5`` as transformers' TF classes saved it, read the way transformers 4.x's
    ``load_tf2_weights_in_pytorch_model`` read it (``convert_tf_weight_name_to_pt_weight_name``
    and ``apply_transpose``).

    - The class is config.json's ``architectures[0]`` without the ``TF`` prefix; the weights'
      first name component must be the Keras layer name of ``TF<class>``.
    - ``kernel`` weights: rank 4 (conv2d, ``[kh, kw, in, out]``) permuted ``(3, 2, 0, 1)``, any
      other rank reversed (dense ``[in, out]`` -> ``[out, in]``, conv1d ``[k, in, out]`` ->
      ``[out, in, k]``); so are ``pointwise_kernel``/``depthwise_kernel`` and weights under an
      ``emb_projs``/``out_projs`` level.
    - A ``bias`` of shape ``[1, n]`` (TF's Conv1D, GPT-2 and kin) is squeezed to ``[n]``: every
      PyTorch bias is 1-D, and transformers squeezed to the PyTorch shape.
    - Keras 2 saves a weight that two layers share (a tied embedding) in both layers' groups;
      the reader names the second copy ``<layer>/<name>``: it is dropped.
    - A base-model class (``BertModel``, not ``BertForPreTraining``) has no prefix in PyTorch:
      the main layer's name (``bert``) is taken out when every weight is under it.
    """
    if config is None:
        raise UsageError(f"{family}: no config.json beside the weights; pass --config with "
                         "the config.json that transformers saved with them")
    archs = config.get("architectures")
    if (not isinstance(config.get("model_type"), str) or not isinstance(archs, list)
            or not archs or not isinstance(archs[0], str)):
        raise UsageError(f"{where}: not a transformers config (it needs model_type and "
                         "architectures)")
    cls = archs[0].removeprefix("TF")
    names = list(shapes)
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    layer = keras_snake("TF" + cls)
    main = [t for t in tops if re.fullmatch(re.escape(layer) + r"(_\d+)?", t)]
    if len(main) != 1:
        found = ", ".join(sorted(t for t in tops if t.startswith("tf"))) or ", ".join(sorted(tops))
        raise UsageError(f"{family}: the weights are {found}'s, not TF{cls}'s (the class "
                         f"{where} names)")
    rules: list[Rule] = []
    copies = [n for n in names if "/" in n and n.split("/", 1)[1] in shapes]
    if copies:
        rules.append(Exclude((_exact(copies),)))
    own = [n for n in names if n not in copies]
    by_axes: dict[tuple[int, ...], list[str]] = {}
    biases = []
    for name in own:
        shape = shapes[name]
        # The name as convert_tf_weight_name_to_pt_weight_name splits it, level zero removed.
        split = re.sub(r"/[^/]*___([^/]*)/", r"/\1/", name).replace("_._", "/")
        parts = re.sub(r"//+", "/", split).split("/")[1:]
        last = parts[-1] if parts else name
        if last == "kernel" and len(shape) == 4:
            by_axes.setdefault((3, 2, 0, 1), []).append(name)
        elif len(shape) > 1 and (last in ("kernel", "pointwise_kernel", "depthwise_kernel")
                                 or "emb_projs" in parts or "out_projs" in parts):
            by_axes.setdefault(tuple(range(len(shape) - 1, -1, -1)), []).append(name)
        if last == "bias" and len(shape) == 2 and shape[0] == 1:
            biases.append(name)
    rules.extend(Transpose(_exact(group), axes) for axes, group in sorted(by_axes.items()))
    if biases:
        rules.append(Squeeze(_exact(biases), 0))
    if cls.endswith("Model") and "Head" not in cls:
        seconds = {n.split("/")[1] for n in own if n.count("/") >= 2}
        if len(seconds) == 1 and all(n.count("/") >= 2 for n in own):
            prefix = seconds.pop()
            if "___" not in prefix and "_._" not in prefix:
                rules.append(Rename(f"^([^/]*)/{re.escape(prefix)}/", r"\1/"))
    content = {**config, "architectures": [a.removeprefix("TF") if isinstance(a, str) else a
                                           for a in archs]}
    return Hooked(cls, dict(sorted(content.items())), tuple(rules))


HOOKS: dict[str, Hook] = {"transformers-tf2": transformers_tf2}
