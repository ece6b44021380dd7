"""``--to hf`` against the anchor: what transformers 4.57's own TensorFlow loaders made of the
same checkpoints (``load_tf_weights_in_*``, ``from_pretrained(..., from_tf=True)``).

Each directory under tests/data/hf/ holds a tiny checkpoint written by TensorFlow under an
original release's names, and what scripts/hf_reference/make_references.py (run with
TensorFlow and transformers 4.57) recorded from it: the model's full state dict
(reference.safetensors), its class and config (reference.json) and its logits on fixed inputs
(logits.npy). Our directory must hold exactly those tensors, bit for bit, and transformers 5,
loading it with no missing and no unexpected key, must reproduce the logits.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import converter

DATA = Path(os.environ.get("CONVERTER_HF_DATA") or Path(__file__).resolve().parent / "data" / "hf")
CASES = sorted(p.parent.name for p in DATA.glob("*/reference.json"))

# A pretraining checkpoint of ELECTRA holds both models; the generator is asked for by name.
CONVERT = {"electra_generator": {"family": "electra:generator"}}

# Buffers transformers 4.57 kept in state dicts that transformers 5 no longer saves or expects.
NOT_WEIGHTS = (".position_ids", ".attn.bias", ".attn.masked_bias", ".masked_bias")


def _source(case: Path) -> Path:
    for name in ("model.ckpt", "bert_model.ckpt", "tf_model.h5"):
        if (case / name).exists() or (case / (name + ".index")).exists():
            return case / name
    found = sorted(case.glob("*.index"))
    assert found, f"{case}: no checkpoint"
    return found[0].with_suffix("")


@pytest.fixture(scope="module")
def transformers():
    pytest.importorskip("torch")
    return pytest.importorskip("transformers")


@pytest.mark.parametrize("case", CASES)
def test_output_equals_transformers_4_57_and_reproduces_its_logits(case, tmp_path,
                                                                  transformers):
    import torch

    root = DATA / case
    ref = json.loads((root / "reference.json").read_text())
    expected = load_file(root / "reference.safetensors")
    out = tmp_path / "out"
    converter.convert(_source(root), out, to="hf", **CONVERT.get(case, {})).close()

    # Every tensor we wrote is the reference's, bit for bit.
    with converter.read(out) as ours:
        renamed: dict[str, str] = {}
        for name, tensor in ours.items():
            want = expected[renamed.get(name, name)]
            got = tensor.read()
            assert got.dtype == want.dtype and got.shape == want.shape, name
            assert got.tobytes() == want.tobytes(), name

    cls = getattr(transformers, ref["class"])
    model, info = cls.from_pretrained(out, output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}, info
    # ... and what transformers 5 builds from it (tied weights included) is the reference model.
    state = model.state_dict()
    for name, value in state.items():
        key = renamed.get(name, name)
        if key not in expected:
            assert name.endswith(NOT_WEIGHTS), f"{name} is not in the reference"
            continue
        assert value.numpy().tobytes() == expected[key].tobytes(), name

    model.eval()
    inputs = {k: torch.tensor(v) for k, v in ref["inputs"].items()}
    with torch.no_grad():
        result = model(**inputs)
    for file, output in ref["outputs"].items():
        want = np.load(root / file)
        np.testing.assert_allclose(getattr(result, output).numpy(), want, rtol=0, atol=1e-5)


def test_every_case_has_its_reference():
    assert CASES, f"no reference data under {DATA}"
    for case in CASES:
        assert (DATA / case / "reference.safetensors").is_file(), case
        outputs = json.loads((DATA / case / "reference.json").read_text())["outputs"]
        assert outputs and all((DATA / case / f).is_file() for f in outputs), case


def _has_way_back(case: str) -> bool:
    """Whether the family that converts the case's checkpoint knows the way back."""
    from converter.errors import UsageError
    from converter.hf.family import detect, families

    families()  # a family file that does not load fails here, not as "no case"
    with converter.read(_source(DATA / case)) as ckpt:
        try:
            fam = detect(list(ckpt))
            return fam.reverse_for(fam.architecture(list(ckpt))) is not None
        except UsageError:  # no family yet, or one whose class comes from the config
            return False


@pytest.mark.parametrize("case", [c for c in CASES if _has_way_back(c)])
def test_transformers_4_57_state_dict_goes_back_to_the_release(case, tmp_path):
    """The way back, from what transformers itself built: its state dict (tied copies
    included) read as a Hugging Face directory gives the release's own tensors, bit for bit,
    all but the optimizer state."""
    root = DATA / case
    ref = json.loads((root / "reference.json").read_text())
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "model.safetensors").write_bytes((root / "reference.safetensors").read_bytes())
    (hf / "config.json").write_text(json.dumps({**ref["config"],
                                                "architectures": [ref["class"]]}))
    kept = sorted(n for n, m in ref["mapping"].items() if m is not None)
    with converter.read(hf, format="hf") as back, converter.read(_source(root)) as release:
        assert sorted(back) == kept
        for name in kept:
            a, b = back[name].read(), release[name].read()
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
