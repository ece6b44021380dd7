"""Third-party formats through the ``converter.formats`` entry-point group, installed as a real
distribution (a ``.dist-info`` with ``entry_points.txt``) on the path of a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

PLUGIN = '''
"""A plugin format: an npz archive under another suffix, with a magic file name."""
from pathlib import Path

from converter.formats import npz
from converter.registry import Format

FORMAT = Format("fake", (".fake", ".fake.h5"), "fakeplug", "a plugin format for tests")


def sniff(path: Path) -> bool:
    return path.name.endswith(".fake") and path.is_file()


def read(path: Path, **opts):
    return npz.read(path, **opts)


def write(ckpt, path: Path, **opts):
    npz.write(ckpt, path, **opts)
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / "fakeplug").mkdir()
    (root / "fakeplug" / "__init__.py").write_text(PLUGIN)
    info = root / "fakeplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[converter.formats]\nfake = fakeplug:FORMAT\n")
    return root


def _run(code: str, plugin_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(plugin_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True)


def test_plugin_format_converts_and_is_detected(tmp_path, plugin_path):
    src = tmp_path / "m.npz"
    np.savez(src, w=np.arange(6, dtype=np.float32).reshape(2, 3))
    result = _run(f"""
        import sys
        import numpy as np
        import converter
        from converter import registry
        converter.convert(r"{src}", r"{tmp_path}/m.fake").close()
        assert "fakeplug" in sys.modules
        assert registry.detect(__import__("pathlib").Path(r"{tmp_path}/m.fake")).name == "fake"
        with converter.read(r"{tmp_path}/m.fake") as ckpt:
            w = ckpt["w"].read()
        assert w.tobytes() == np.arange(6, dtype=np.float32).tobytes(), w
        assert "fake" in registry.formats()
        print("ok")
    """, plugin_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    listing = subprocess.run([sys.executable, "-m", "converter", "formats"], capture_output=True,
                             text=True, env={**os.environ, "PYTHONPATH": str(plugin_path)})
    assert "fake" in listing.stdout and "a plugin format for tests" in listing.stdout


def test_plugins_are_not_looked_up_when_built_in_formats_settle_it(tmp_path, plugin_path):
    # Reading every distribution's metadata is a tenth of a small conversion's time.
    src = tmp_path / "m.npz"
    np.savez(src, w=np.arange(3.0))
    result = _run(f"""
        import importlib.metadata as md
        calls = []
        real = md.entry_points
        md.entry_points = lambda **kw: calls.append(kw) or real(**kw)
        import converter
        converter.convert(r"{src}", r"{tmp_path}/m.safetensors").close()
        converter.convert(r"{tmp_path}/m.safetensors", r"{tmp_path}/m2.npz", to="npz").close()
        assert not calls, calls
        try:
            converter.convert(r"{src}", r"{tmp_path}/m.unknown")
        except converter.UsageError as exc:
            assert "fake" in str(exc), exc  # the error lists plugins too
        assert calls
        print("ok")
    """, plugin_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_plugin_suffix_inside_a_built_in_one_is_chosen_by_name_alike_before_and_after(
        tmp_path, plugin_path):
    # A file named `.fake.h5`, a suffix the plugin claims, is still `.h5`: built-in suffixes
    # come first, whether or not the plugins happen to be loaded; `to=` picks the plugin.
    result = _run("""
        from pathlib import Path
        from converter import registry
        before = registry.by_suffix(Path("m.fake.h5")).name
        registry.formats()  # load the plugins
        after = registry.by_suffix(Path("m.fake.h5")).name
        print(before, after, registry.by_suffix(Path("m.fake")).name, registry.get("fake").name)
    """, plugin_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["hdf5", "hdf5", "fake", "fake"]


def test_plugins_loading_in_one_thread_are_waited_for_by_another(monkeypatch):
    import threading
    import time

    from converter import registry

    slow = registry.Format("slowfmt", (".slow",), "converter.formats.npz")

    def scan():
        time.sleep(0.2)
        return [slow]

    monkeypatch.setattr(registry, "_entry_point_formats", scan)
    monkeypatch.setattr(registry, "_table", None)
    monkeypatch.setattr(registry, "_plugin_names", set())
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    first = threading.Thread(target=registry.formats)
    first.start()
    time.sleep(0.05)  # the first thread is inside the scan
    assert registry.get("slowfmt") is slow
    first.join()
    assert registry.by_suffix(Path("m.npz")).name == "npz"


def test_reading_a_bundle_prefix_looks_no_plugin_up_and_a_plugin_still_reads_its_own_file(
        tmp_path, monkeypatch):
    # The prefix is named by its `.index`, a built-in suffix; only a file that no built-in
    # format claims sends the registry to the installed distributions.
    import types

    import converter
    from converter import registry

    prefix = tmp_path / "run.ckpt-7"
    converter.write({"w": np.arange(3, dtype=np.float32)}, prefix, format="tf")
    plug = types.ModuleType("plug_only")
    plug.sniff = lambda path: path.name.endswith(".plugonly")
    plug.read = lambda path: converter.as_checkpoint({"v": np.ones(2, np.int8)})
    monkeypatch.setitem(sys.modules, "plug_only", plug)
    scans: list[str] = []

    def scan():
        if not scans:
            raise AssertionError("plugins looked up to read a bundle prefix")
        return [registry.Format("plugonly", (".plugonly",), "plug_only", can_write=False)]

    monkeypatch.setattr(registry, "_entry_point_formats", scan)
    monkeypatch.setattr(registry, "_table", None)
    monkeypatch.setattr(registry, "_plugin_names", set())
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    with converter.read(prefix) as ckpt:
        assert ckpt["w"].read().tobytes() == np.arange(3, dtype=np.float32).tobytes()
    assert registry.detect(prefix).name == "tf"
    scans.append("allowed")
    (tmp_path / "m.plugonly").write_bytes(b"anything")
    assert registry.detect(tmp_path / "m.plugonly").name == "plugonly"
    with converter.read(tmp_path / "m.plugonly") as ckpt:
        assert list(ckpt) == ["v"]
