"""``import converter`` and file conversion stay free of TensorFlow."""

from __future__ import annotations

import subprocess
import sys


def test_import_and_conversion_do_not_import_tensorflow(tmp_path):
    code = f"""
import sys, numpy as np, converter
assert 'tensorflow' not in sys.modules
converter.write({{'a/b': np.arange(4.0)}}, r'{tmp_path}/m.ckpt', format='tf')
converter.convert(r'{tmp_path}/m.ckpt', r'{tmp_path}/m.safetensors').close()
converter.convert(r'{tmp_path}/m.safetensors', r'{tmp_path}/m.npz').close()
converter.convert(r'{tmp_path}/m.npz', r'{tmp_path}/m.h5').close()
heavy = [m for m in ('tensorflow', 'keras', 'torch', 'jax') if m in sys.modules]
assert not heavy, heavy
"""
    subprocess.run([sys.executable, "-c", code], check=True)
