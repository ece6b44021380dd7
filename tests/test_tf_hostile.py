"""Bundles that declare more than they hold, or are not files at all: refused in one line, in
time and memory bounded by their size."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import converter
from converter.errors import CorruptionError, FormatError
from tests.helpers import assert_same
from tests.hostile_bundles import (
    empty_strings,
    encode_entry,
    graph_dag,
    partitioned,
    string_body,
    strings_declaring,
    write_bundle,
)

HERE = Path(__file__).parent


@pytest.fixture
def alarm():
    """Fail instead of hanging: a blocked open or read is what these tests are about."""
    def expired(*_):
        raise AssertionError("blocked")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _bundle(directory: Path) -> Path:
    converter.write({"w": np.arange(6, dtype=np.float32)}, directory / "m.ckpt", format="tf")
    return directory / "m.ckpt"


def _as_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("which", [".index", ".data-00000-of-00001", "checkpoint"])
def test_fifo_in_place_of_a_file_is_refused(tmp_path, alarm, which, capsys):
    prefix = _bundle(tmp_path)
    fifo = tmp_path / "checkpoint" if which == "checkpoint" else Path(str(prefix) + which)
    _as_fifo(fifo)
    target = tmp_path if which == "checkpoint" else prefix
    with pytest.raises(FormatError, match="not a regular file") as info:
        with converter.read(target) as ckpt:
            ckpt["w"].read()
    assert str(fifo) in str(info.value)
    from converter.cli import main

    out = tmp_path / "out"
    out.mkdir()
    assert main(["convert", str(target), str(out / "o.safetensors")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"ckpt: error: {info.value}"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_shard_is_refused_before_a_writer_copies_its_span(tmp_path, alarm):
    prefix = _bundle(tmp_path)
    _as_fifo(Path(str(prefix) + ".data-00000-of-00001"))
    with pytest.raises(FormatError, match="FIFO"):
        converter.convert(prefix, tmp_path / "o.safetensors")


# --------------------------------------------------------------------------- strings


def test_string_count_beyond_the_span_is_refused_before_reading(tmp_path):
    prefix = strings_declaring(tmp_path / "s.ckpt", (1 << 40,))
    with converter.read(prefix) as ckpt:
        assert ckpt["s"].shape == (1 << 40,)
        with pytest.raises(CorruptionError, match=r"declares 1099511627776 strings"):
            ckpt["s"].read()


@pytest.mark.parametrize("lengths", [[0, 1, 127, 128, 300, 16383, 16384, 70000], [5] * 1000,
                                     [], [200]])
def test_string_lengths_of_any_width(tmp_path, lengths):
    items = [bytes([i % 251]) * n for i, n in enumerate(lengths)]
    data, value = string_body(items)
    from tests.hostile_bundles import DT_STRING, encode_entry, write_bundle

    prefix = write_bundle(tmp_path / "s.ckpt", {b"s": encode_entry(
        DT_STRING, (len(items),), 0, 0, len(data), value)}, data)
    with converter.read(prefix) as ckpt:
        assert_same(ckpt["s"].read(), np.array(items, dtype=object).reshape(len(items)))


def test_overlong_string_length_varint_is_refused(tmp_path):
    from tests.hostile_bundles import DT_STRING, encode_entry, write_bundle

    data = b"\xff" * 11 + b"\x00" + bytes(4)
    prefix = write_bundle(tmp_path / "s.ckpt", {b"s": encode_entry(DT_STRING, (1,), 0, 0, len(data),
                                                                   0)}, data)
    with converter.read(prefix) as ckpt, pytest.raises(CorruptionError, match="string"):
        ckpt["s"].read()


_HWM = ("def hwm():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1]) * 1024\n")
needs_hwm = pytest.mark.skipif(not os.path.exists("/proc/self/status"),
                               reason="peak memory is read from /proc/self/status")


def _peak(prefix: Path, read: str) -> tuple[int, int, str]:
    """Peak memory before and after ``read`` (code using ``prefix``) in a fresh process, and
    what it printed. VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's."""
    # numpy is loaded with the first values, not with converter: it is in the baseline.
    code = (_HWM + "import converter\nimport numpy\nbefore = hwm()\n" + read +
            "print(before, hwm())\n")
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    result = subprocess.run([sys.executable, "-c", code.replace("PREFIX", repr(str(prefix)))],
                            capture_output=True, text=True, env=env, check=True)
    *said, last = result.stdout.splitlines()
    before, after = (int(x) for x in last.split())
    return before, after, "\n".join(said)


@needs_hwm
def test_many_empty_strings_cost_their_object_array_only(tmp_path):
    n = 4_000_000
    prefix = empty_strings(tmp_path / "s.ckpt", n)
    # The object array itself takes 8 bytes an element; nothing else per element (a list of
    # lengths beside it took 8 more; the rest is the mapped span and one chunk of lengths).
    before, after, _ = _peak(prefix, "with converter.read(PREFIX) as c:\n"
                                     "    for t in c.values(): t.read()\n")
    assert after - before < 8 * n + (12 << 20)


# --------------------------------------------------------------------------- partitions


@pytest.mark.parametrize("grid, part", [((16000,), ()), ((40, 50), (2, 3)), ((4, 5, 6), ())])
def test_many_partitions_read(tmp_path, grid, part):
    prefix, value = partitioned(tmp_path / "p.ckpt", grid, part)
    with converter.read(prefix) as ckpt:
        assert_same(ckpt["v"].read(), value)


@pytest.mark.parametrize("grid", [(3000,), (30, 40)])
@pytest.mark.parametrize("fault", ["overlap", "gap"])
def test_overlapping_or_incomplete_partitions_are_refused(tmp_path, grid, fault):
    prefix, _ = partitioned(tmp_path / "p.ckpt", grid, (2,) * len(grid), **{fault: True})
    with converter.read(prefix) as ckpt:
        with pytest.raises(CorruptionError, match="exactly once"):
            ckpt["v"].read()


def test_partitions_off_a_grid(tf_fixtures):
    """TF's shard policy cuts parts into rows of their own: still read, values exact."""
    import pickle

    fixture = tf_fixtures["sharded_sliced"]
    if fixture["skipped"]:
        pytest.skip(fixture["notes"])
    with open(fixture["expected"], "rb") as f:
        expected = pickle.load(f)
    with converter.read(fixture["prefix"]) as ckpt:
        for name, value in expected.items():
            assert_same(ckpt[name].read(), value, name)


def test_cover_check_agrees_with_pairwise_overlaps():
    from converter.formats.tfbundle.slices import covers_exactly

    rng = np.random.default_rng(0)
    for _ in range(300):
        full = tuple(int(x) for x in rng.integers(1, 5, size=rng.integers(1, 4)))
        boxes = []
        for _ in range(int(rng.integers(1, 7))):
            box = []
            for size in full:
                a = int(rng.integers(0, size))
                box.append((a, int(rng.integers(a + 1, size + 1))))
            boxes.append(box)
        cells = np.zeros(full, dtype=int)
        for box in boxes:
            cells[tuple(slice(a, b) for a, b in box)] += 1
        assert covers_exactly(boxes, full) == bool((cells == 1).all()), (full, boxes)


# --------------------------------------------------------------------------- object graph


@needs_hwm
def test_deep_shared_object_graph_is_refused_in_bounded_memory(tmp_path):
    prefix = graph_dag(tmp_path / "g.ckpt", 3000)
    size = sum(f.stat().st_size for f in tmp_path.iterdir())
    before, after, said = _peak(prefix, "try:\n"
                                        "    converter.read(PREFIX)\n"
                                        "except converter.errors.CorruptionError as e:\n"
                                        "    print(e)\n")
    assert "object paths would take" in said
    assert after - before < 16 * size + (4 << 20)


def test_shallow_shared_object_graph_keeps_shortest_paths(tmp_path):
    prefix = graph_dag(tmp_path / "g.ckpt", 4, name_length=1)
    with converter.read(prefix) as ckpt:
        paths = {name: ckpt[name].attrs["object_path"] for name in ckpt if name.startswith("k")}
    assert paths == {f"k1{A}": "a", f"k2{A}": "a/a", f"k3{A}": "a/a/a", f"k0{A}": ""}


A = "/.ATTRIBUTES/VARIABLE_VALUE"


def _reference_paths(nodes):
    """Object paths as breadth-first search spelled them before paths were bounded: the
    shortest path that avoids optimizer nodes, else the shortest, names escaped as in keys."""
    from collections import deque

    from converter.formats.tfbundle.objgraph import is_optimizer

    def escaped(name):
        return name.replace(".", "..").replace("/", ".S")

    optimizer = [is_optimizer(node) for node in nodes]
    paths, model_path, seen = {}, {}, set()
    queue = deque([(0, "", False)])
    while queue:
        node_id, path, via = queue.popleft()
        if not 0 <= node_id < len(nodes) or (node_id, via) in seen:
            continue
        seen.add((node_id, via))
        paths.setdefault(node_id, path)
        if not via:
            model_path.setdefault(node_id, path)
        for local, child in nodes[node_id].children:
            part = escaped(local)
            queue.append((child, f"{path}/{part}" if path else part, via or optimizer[node_id]))
    return {i: model_path.get(i, paths.get(i, "")) for i in range(len(nodes))}


def test_object_paths_of_random_graphs_are_the_breadth_first_ones():
    from converter.formats.tfbundle.objgraph import Node, classify

    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        nodes = [Node() for _ in range(n)]
        for i, node in enumerate(nodes):
            for _ in range(int(rng.integers(0, 4))):
                names = ["", "x", "layer", "a/b", "iter", "_variables"]
                node.children.append((names[int(rng.integers(0, len(names)))],
                                      int(rng.integers(0, n + 1))))
            node.attributes.append(("VARIABLE_VALUE", f"v{i}", f"k{i}"))
        expected = _reference_paths(nodes)
        got = classify(nodes)
        assert {int(k[1:]): a["object_path"] for k, a in got.items()} == {
            i: expected[i] for i in range(n)}


@pytest.mark.parametrize("field", [0x18, 0x20, 0x28])  # shard, offset, size
def test_an_entry_with_a_varint_too_long_is_refused_naming_the_tensor(tmp_path, field):
    # The scalar shape seen before in "a", "b" takes the one-pass reader up to its varint.
    good = encode_entry(1, (), 0, 0, 4, 123)
    bad = good[:4] + bytes([field]) + b"\xff" * 11 + b"\x01" + good[4:]
    prefix = write_bundle(tmp_path / "m", {b"a": good, b"b": bad}, b"\0" * 4)
    with pytest.raises(CorruptionError, match=r"m\.index: tensor 'b': malformed entry "
                                              r"\(varint longer than 10 bytes\)"):
        converter.read(prefix)
