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


def test_commands_import_only_what_they_use(tmp_path):
    # Start-up is much of what a small command costs: each command imports its own module,
    # and listing or converting a checkpoint imports no rules, graph readers, page writers,
    # progress bar, ml_dtypes or h5py it does not use.
    code = f"""
import contextlib, io, sys, numpy as np, converter
converter.write({{'a/b': np.arange(4.0)}}, r'{tmp_path}/m.ckpt', format='tf', force=True)
before = set(sys.modules)
from converter.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    assert main(sys.argv[1:]) == 0
loaded = set(sys.modules) - before
unused = ['converter.rules', 'converter.graphs', 'converter.inspect_html', 'converter.diff_html',
          'tqdm', 'ml_dtypes', 'h5py', 'converter.cli.' + ('convert' if sys.argv[1] == 'inspect'
                                                          else 'inspect')]
assert not [m for m in unused if m in loaded], [m for m in unused if m in loaded]
assert 'converter.cli.' + sys.argv[1] in loaded
"""
    for args in (["inspect", f"{tmp_path}/m.ckpt"],
                 ["convert", f"{tmp_path}/m.ckpt", f"{tmp_path}/m.safetensors", "-q"]):
        subprocess.run([sys.executable, "-c", code, *args], check=True)


def test_import_converter_loads_no_batch_diff_migrate_or_verify_code():
    code = """
import sys, converter
early = [m for m in ('converter.batch', 'converter.diff', 'converter.migrate', 'converter.verify',
                     'converter.loaders') if m in sys.modules]
assert not early, early
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_functions_named_like_their_modules_survive_importing_the_modules():
    # Importing a submodule binds it on its package: `converter.diff` must stay the function
    # whether the module was imported before, after or never.
    code = """
import converter
from converter.diff import DiffReport
import converter.batch.run, converter.migrate, converter.verify
for name in ('batch', 'diff', 'migrate', 'verify'):
    assert callable(getattr(converter, name)), name
assert converter.diff.__module__ == 'converter.diff' and converter.DiffReport is DiffReport
from converter import batch, verify
assert callable(batch) and callable(verify)
"""
    subprocess.run([sys.executable, "-c", code], check=True)
