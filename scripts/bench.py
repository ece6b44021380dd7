"""Benchmark ``ckpt`` / ``converter`` against TensorFlow and ``cp`` on TF checkpoint bundles.

usage: python scripts/bench.py [--kinds many,bert,big] [--repeat 3] [--workdir DIR] [--json OUT]
                               [--before CHECKOUT]

Fixtures are TF1 name-based bundles made by ``scripts/bench_fixtures.py``, written by
TensorFlow itself (``--fixture-writer tf``, the default) or by converter's writer
(``--fixture-writer converter``): ``many`` (20k small tensors, 78 MiB), ``bert`` (BERT-base with
adam_m/adam_v slots, 1.25 GiB) and ``big`` (16 tensors, 1.4 GiB); ``--quick`` uses a 2.8 MiB
bundle written by converter. ``--make-ckpt SCRIPT`` makes them with another script, run as
``python SCRIPT PREFIX KIND``. They are made once into ``--workdir`` (default
``<tempdir>/bench-data``) as ``<workdir>/<kind>/model.ckpt`` and reused by later runs, whoever
wrote them.

What is measured, for every kind (ours vs baseline):

* ``inspect``: ``ckpt inspect PREFIX`` vs ``tf.train.load_checkpoint(PREFIX)`` +
  ``get_variable_to_shape_map()``; both read only the index.
* ``inspect --stats``: ``ckpt inspect PREFIX --stats`` (every tensor's statistics, streaming)
  vs ``cat DATAFILES > /dev/null`` (reading the bytes once), run in turns (ours, cat, ours,
  cat, ...) so that load from other processes falls on both alike; the row also gives the range
  of the per-turn ratios. ``--stats-only`` runs only these rows.
* ``read``: ``converter.read(PREFIX)`` and ``t.read()`` of every tensor vs
  ``load_checkpoint`` + ``get_tensor`` of every name; both touch every element of every array
  (``np.add.reduce`` over a flat view) so lazily mapped data is really read.
* ``to-hf`` (bert): ``ckpt convert PREFIX DIR --to hf`` vs transformers 4.x's own route
  (TensorFlow, ``load_tf_weights_in_bert``, ``save_pretrained``) in the environment
  ``--hf-reference-python`` names.
* ``remote`` (``--remote``): against a moto S3 server on 127.0.0.1 in the bench process,
  ``ckpt convert s3://.../model.ckpt OUT.safetensors`` of a 512 MiB bundle vs fsspec's
  ``get_file`` of its objects (each fsynced), and the bytes the server sent for
  ``ckpt inspect s3://...``.
* ``sweep`` (``--sweep``, only these rows): ``ckpt convert PREFIX OUT.safetensors`` of 256 MiB,
  1.4 GiB and 4 GiB bundles vs ``cp DATAFILE OUT && sync OUT``, run in turns (ours, cp, ours,
  cp, ...; ``--repeat`` defaults to 5 here): medians, and the range of the per-turn ratios.
* ``diff``, ``verify`` (``--diff-verify``, only these rows; ``--repeat`` defaults to 5): on the
  ``big`` bundle (``--quick``: the small one) and a copy of its files, ``ckpt verify PREFIX``
  vs ``cat DATAFILE > /dev/null`` and ``ckpt diff PREFIX COPY`` vs ``cat DATAFILE COPYDATA >
  /dev/null``, in turns, each with the page cache warm and cold: for the cold rows the data
  files' pages are dropped (``os.sync`` then ``posix_fadvise(POSIX_FADV_DONTNEED)``, no root
  needed) before every timed run of either side.
* ``to-safetensors``, ``to-npz``: ``ckpt convert PREFIX OUT -q --force`` vs ``cp DATAFILE OUT &&
  sync OUT`` (the cost of copying the bytes once); for safetensors also the plain TF path:
  ``load_checkpoint`` + ``get_tensor`` of every name + ``safetensors.numpy.save_file`` + fsync
  (``ckpt convert`` fsyncs its outputs, so the baselines do too).
* ``before`` (``--before CHECKOUT``, on ``many``, ``bert``, ``big`` and ``--quick``): inspect,
  to-safetensors, to-npz, to-h5, safetensors-to-tf and npz-to-safetensors run by this
  checkout's code and by CHECKOUT's (another checkout of this repository, e.g. an earlier
  commit), in turns (ours, before, ours, before, ...): medians, ours/before and the range of
  the per-turn ratios. Both
  sides run as ``python -m converter`` with ``PYTHONPATH`` set to their checkout, from an empty
  working directory (``-m`` puts the working directory first on ``sys.path``), so they pay the
  same start-up; a child run the same way first checks that each side imports its own
  ``converter`` and the script stops (exit 2) if not. The JSON report names both files.

How: every measurement is a separate child process (``subprocess.Popen``), so interpreter and
import start-up is included in the wall time and the peak RSS is the child's own, taken from
``os.wait4(pid, 0)`` (``ru_maxrss``, KiB on Linux; it covers the child and the processes it
waited for, e.g. ``cp`` and ``sync`` under ``sh``). Each command runs once untimed to warm the
page cache, then ``--repeat`` timed runs; the table shows medians. Before each run outputs are
removed and dirty pages flushed (``os.sync``, untimed), so one run's writeback does not land in
the next one's time. Children get ``TF_CPP_MIN_LOG_LEVEL=3``. The script only reports; it asserts
nothing about timings.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

KINDS = ("many", "bert", "big")
SWEEP = ("256m", "big", "4g")  # the size sweep's bundles: 256 MiB, 1.4 GiB, 4 GiB
QUICK = "quick"  # a few MiB written by converter itself: a smoke test that needs no TensorFlow
FIXTURES = Path(__file__).resolve().with_name("bench_fixtures.py")
ROOT = FIXTURES.parent.parent  # the checkout this script is in: "ours" in the --before rows
BEFORE_KINDS = ("many", "bert", "big", QUICK)

# Child programs, run as ``python -c CODE ARGS...``. TOUCH reads every element of an array.
TOUCH = """
import numpy as np
def touch(a):
    a = np.asarray(a)
    if a.dtype.hasobject:
        return len(a.reshape(-1))
    flat = a.reshape(-1)
    try:
        return np.add.reduce(flat)
    except TypeError:  # dtypes without add (e.g. some ml_dtypes): reduce the raw bytes
        return np.bitwise_xor.reduce(flat.view(np.uint8))
"""

OURS_READ = TOUCH + """
import sys, converter
ckpt = converter.read(sys.argv[1])
try:
    for name in ckpt:
        touch(ckpt[name].read())
finally:
    ckpt.close()
"""

TF_INSPECT = """
import sys, tensorflow as tf
r = tf.train.load_checkpoint(sys.argv[1])
r.get_variable_to_shape_map()
"""

TF_READ = TOUCH + """
import sys, tensorflow as tf
r = tf.train.load_checkpoint(sys.argv[1])
for name in r.get_variable_to_shape_map():
    touch(r.get_tensor(name))
"""

TF_SAFETENSORS = """
import os, sys, numpy as np, tensorflow as tf
from safetensors.numpy import save_file
r = tf.train.load_checkpoint(sys.argv[1])
# get_tensor returns numpy scalars (not arrays) for 0-d tensors; save_file needs arrays
tensors = {name: np.asarray(r.get_tensor(name)) for name in r.get_variable_to_shape_map()}
save_file(tensors, sys.argv[2])
fd = os.open(sys.argv[2], os.O_RDONLY)
try:
    os.fsync(fd)
finally:
    os.close(fd)
"""


@dataclass
class Measurement:
    """Medians over the timed runs of one command."""

    seconds: float | None  # None: the command failed
    peak_rss_mib: float | None
    runs: list[float]
    error: str | None = None


@dataclass
class Row:
    kind: str
    task: str
    ours_s: float | None
    baseline: str
    baseline_s: float | None
    ratio: float | None
    ours_rss_mib: float | None
    baseline_rss_mib: float | None
    ours_error: str | None = None
    baseline_error: str | None = None
    ratio_range: tuple[float, float] | None = None  # lowest and highest ratio of one turn


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def ckpt_command() -> list[str]:
    """The ``ckpt`` console script next to this interpreter, else ``python -m converter``."""
    script = Path(sys.executable).parent / "ckpt"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "converter"]

# The route transformers 4.x offered (removed in transformers 5): its TensorFlow loader into a
# PyTorch model, then save_pretrained. Run by the Python of an environment that has them.
HF_OLD_ROUTE = """
import json, sys
from transformers import BertConfig, BertForPreTraining, load_tf_weights_in_bert
config = BertConfig(**json.load(open(sys.argv[2])))
model = BertForPreTraining(config)
load_tf_weights_in_bert(model, config, sys.argv[1])
model.save_pretrained(sys.argv[3])
"""
# A frozen graph's constants read by TensorFlow: its protobuf parse and every Const's values.
TF_GRAPHDEF = TOUCH + """
import sys, tensorflow as tf
graph = tf.compat.v1.GraphDef.FromString(open(sys.argv[1], "rb").read())
for node in graph.node:
    if node.op == "Const":
        touch(tf.make_ndarray(node.attr["value"].tensor))
"""
# A SavedModel with two signatures, written by TensorFlow (the graphs row's fixture).
MAKE_SAVED_MODEL = """
import sys, tensorflow as tf
class M(tf.Module):
    def __init__(self):
        self.w = tf.Variable(tf.random.normal([512, 512]))
    @tf.function(input_signature=[tf.TensorSpec([None, 512], tf.float32)])
    def serve(self, x):
        return {"y": tf.matmul(x, self.w)}
    @tf.function(input_signature=[tf.TensorSpec([None, 512], tf.float32, name="z")])
    def other(self, z):
        return {"out": tf.nn.relu(tf.matmul(z, self.w))}
m = M()
tf.saved_model.save(m, sys.argv[1], signatures={"serving_default": m.serve, "other": m.other})
"""
BERT_BASE_CONFIG = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                    "intermediate_size": 3072, "vocab_size": 30522,
                    "max_position_embeddings": 512, "type_vocab_size": 2}


def python_code(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def run_once(argv: list[str], outputs: list[Path],
             prepare: Callable[[], None] | None = None, env: dict[str, str] | None = None,
             cwd: Path | None = None) -> tuple[float, float, str | None]:
    """Run ``argv`` as a child; return (wall seconds, child peak RSS in MiB, error or None).
    ``prepare`` runs untimed just before the child starts, after the flush. ``env`` defaults
    to ``child_env()``, ``cwd`` to this process's."""
    for out in outputs:
        remove(out)
    os.sync()  # untimed: flush what earlier runs left dirty
    if prepare is not None:
        prepare()
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, env=child_env() if env is None else env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped; keep Popen quiet
        error = None
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-5:]
            error = f"exit {proc.returncode}: " + " | ".join(tail)
    return elapsed, usage.ru_maxrss / 1024, error


def measure(argv: list[str], repeat: int, outputs: Sequence[Path] = ()) -> Measurement:
    """One untimed warm-up run, then ``repeat`` timed runs; medians of time and peak RSS."""
    python_c = argv[0] == sys.executable and argv[1:2] == ["-c"]
    label = shlex.join([*argv[:2], "<code>", *argv[3:]] if python_c else argv)
    print(f"  {label}", file=sys.stderr, flush=True)
    _, _, error = run_once(argv, list(outputs))
    if error:
        print(f"    FAILED: {error}", file=sys.stderr, flush=True)
        return Measurement(None, None, [], error)
    times, rss = [], []
    for _ in range(repeat):
        elapsed, peak, error = run_once(argv, list(outputs))
        if error:
            print(f"    FAILED: {error}", file=sys.stderr, flush=True)
            return Measurement(None, None, times, error)
        times.append(elapsed)
        rss.append(peak)
    for out in outputs:
        remove(out)
    print(f"    {statistics.median(times):.3f} s, {statistics.median(rss):.0f} MiB",
          file=sys.stderr, flush=True)
    return Measurement(statistics.median(times), statistics.median(rss), times)


def measure_turns(ours: list[str], base: list[str], repeat: int,
                  outputs: tuple[Sequence[Path], Sequence[Path]] = ((), ()),
                  evict: Sequence[Path] = (),
                  envs: tuple[dict[str, str] | None, dict[str, str] | None] = (None, None),
                  cwd: Path | None = None
                  ) -> tuple[Measurement, Measurement, tuple[float, float] | None]:
    """One untimed warm-up run of each, then ``repeat`` turns of ours then base; medians of
    each, and the range of the per-turn ratios (ours / base of the same turn). ``outputs``
    (ours, base) are removed before each run and after the last; the pages of ``evict`` are
    dropped from the page cache before every timed run of either side. ``envs`` (ours, base)
    and ``cwd`` go to ``run_once``."""
    prepare = (lambda: evict_pages(evict)) if evict else None
    made = {id(ours): list(outputs[0]), id(base): list(outputs[1])}
    env = {id(ours): envs[0], id(base): envs[1]}
    for argv in (ours, base):
        print(f"  {shlex.join(argv)}", file=sys.stderr, flush=True)
        _, _, error = run_once(argv, made[id(argv)], env=env[id(argv)], cwd=cwd)
        if error:
            print(f"    FAILED: {error}", file=sys.stderr, flush=True)
            failed = Measurement(None, None, [], error)
            other = Measurement(None, None, [], "not run: the other command failed")
            return (failed, other, None) if argv is ours else (other, failed, None)
    runs: dict[str, list[tuple[float, float]]] = {"ours": [], "base": []}
    for _ in range(repeat):
        for who, argv in (("ours", ours), ("base", base)):
            elapsed, peak, error = run_once(argv, made[id(argv)], prepare, env[id(argv)], cwd)
            if error:
                print(f"    FAILED: {error}", file=sys.stderr, flush=True)
                return (Measurement(None, None, [], error),
                        Measurement(None, None, [], error), None)
            runs[who].append((elapsed, peak))
    for out_path in (*outputs[0], *outputs[1]):
        remove(out_path)
    out = []
    for who in ("ours", "base"):
        times = [t for t, _ in runs[who]]
        peak = statistics.median(p for _, p in runs[who])
        out.append(Measurement(statistics.median(times), peak, times))
        print(f"    {who}: {out[-1].seconds:.3f} s, {peak:.0f} MiB", file=sys.stderr, flush=True)
    ratios = [a / b for a, b in zip(out[0].runs, out[1].runs, strict=True) if b]
    return out[0], out[1], (min(ratios), max(ratios)) if ratios else None


def evict_pages(paths: Sequence[Path]) -> None:
    """Drop the cached pages of ``paths``, so the next read comes from the disk. Only clean
    pages go, hence the caller's ``os.sync`` first; any user who can open a file may ask."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def bundle_ready(prefix: Path) -> bool:
    index = prefix.with_name(prefix.name + ".index")
    return index.is_file() and bool(data_files(prefix))


def data_files(prefix: Path) -> list[Path]:
    return sorted(prefix.parent.glob(prefix.name + ".data-*-of-*"))


def fixture_command(prefix: Path, kind: str, make_ckpt: Path | None,
                    writer: str) -> list[str]:
    """The child that writes ``kind`` at ``prefix``. In a child: numpy in this process would
    inflate every later child's peak RSS, which starts from this process's at fork."""
    if make_ckpt is not None and kind != QUICK:
        return [sys.executable, str(make_ckpt), str(prefix), kind]
    writer = "converter" if kind == QUICK else writer
    return [sys.executable, str(FIXTURES), str(prefix), kind, "--writer", writer]


def make_bundle(workdir: Path, kind: str, make_ckpt: Path | None,
                writer: str = "tf") -> tuple[Path, float | None]:
    """Make (or reuse) ``<workdir>/<kind>/model.ckpt``; return it and the seconds spent making."""
    final = workdir / kind
    prefix = final / "model.ckpt"
    if kind == QUICK:
        shutil.rmtree(final, ignore_errors=True)
        final.mkdir(parents=True)
        subprocess.run(fixture_command(prefix, kind, None, writer), check=True, env=child_env(),
                       stdout=sys.stderr)
        return prefix, None
    if bundle_ready(prefix):
        print(f"reusing {prefix}", file=sys.stderr, flush=True)
        return prefix, None
    staging = workdir / f"{kind}.tmp"  # renamed into place only when complete
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    print(f"making {kind} bundle in {final} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run(fixture_command(staging / "model.ckpt", kind, make_ckpt, writer),
                   check=True, env=child_env(), stdout=sys.stderr)
    elapsed = time.perf_counter() - start
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    print(f"made {kind} in {elapsed:.1f} s", file=sys.stderr, flush=True)
    return prefix, elapsed


def row(kind: str, task: str, ours: Measurement, name: str, base: Measurement,
        ratio_range: tuple[float, float] | None = None) -> Row:
    ratio = None
    if ours.seconds is not None and base.seconds:
        ratio = ours.seconds / base.seconds
    return Row(kind, task, ours.seconds, name, base.seconds, ratio, ours.peak_rss_mib,
               base.peak_rss_mib, ours.error, base.error, ratio_range)


def bench_stats(kind: str, prefix: Path, repeat: int) -> Row:
    """``ckpt inspect --stats`` against reading the data files once with ``cat``, in turns."""
    print(f"[{kind}] inspect --stats", file=sys.stderr, flush=True)
    ours, base, ratios = measure_turns([*ckpt_command(), "inspect", str(prefix), "--stats"],
                                       cat_command(data_files(prefix)), repeat)
    return row(kind, "inspect --stats", ours, "cat data", base, ratios)


def bench_sweep(workdir: Path, outdir: Path, repeat: int, make_ckpt: Path | None,
                writer: str) -> list[Row]:
    """``ckpt convert PREFIX OUT.safetensors`` against ``cp`` + ``sync`` of the data at each
    size of SWEEP, in turns (ours, cp, ours, cp, ...): a disk's throughput drifts by a factor
    of two within minutes, so only ratios of the same turn mean much; the row's range gives
    their spread."""
    rows = []
    for kind in SWEEP:
        prefix, _ = make_bundle(workdir, kind, make_ckpt, writer)
        size = sum(p.stat().st_size for p in data_files(prefix))
        print(f"[sweep {kind}] to-safetensors ({size / 2**30:.2f} GiB)", file=sys.stderr,
              flush=True)
        out = outdir / f"{kind}.sweep.safetensors"
        cp, copies = copy_command(data_files(prefix), outdir, f"{kind}.sweep")
        ours, base, ratios = measure_turns(
            [*ckpt_command(), "convert", str(prefix), str(out), "-q", "--force"], cp, repeat,
            ([out], copies))
        rows.append(row(f"{kind} sweep", "to-safetensors", ours, "cp+sync data", base, ratios))
    return rows


def copy_bundle(prefix: Path, workdir: Path) -> Path:
    """A copy of the bundle's index and data files at ``<workdir>/<kind>.copy/model.ckpt``
    (``diff`` needs two files; one compared with itself could be read once), kept while its
    files match the source's in size and mtime."""
    sources = [prefix.with_name(prefix.name + ".index"), *data_files(prefix)]
    final = workdir / f"{prefix.parent.name}.copy"
    copy = final / prefix.name

    def same(src: Path) -> bool:
        dst = final / src.name
        if not dst.is_file():
            return False
        a, b = src.stat(), dst.stat()
        return (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns)

    if all(same(src) for src in sources) and len(data_files(copy)) == len(sources) - 1:
        print(f"reusing {copy}", file=sys.stderr, flush=True)
        return copy
    staging = workdir / f"{prefix.parent.name}.copy.tmp"  # renamed into place when complete
    print(f"copying {prefix} to {copy} ...", file=sys.stderr, flush=True)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for src in sources:
        shutil.copy2(src, staging / src.name)  # keeps the mtime that ``same`` compares
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return copy


def bench_diff_verify(workdir: Path, repeat: int, kind: str, make_ckpt: Path | None,
                      writer: str) -> list[Row]:
    """``ckpt verify`` and ``ckpt diff`` (of the bundle and a copy of it) against ``cat`` of
    the data they read, in turns, with the page cache warm and then cold (the data files'
    pages dropped before every timed run): both should stream each file once, at read speed."""
    prefix, _ = make_bundle(workdir, kind, make_ckpt, writer)
    copy = copy_bundle(prefix, workdir)
    data, copy_data = data_files(prefix), data_files(copy)
    size = sum(p.stat().st_size for p in data)
    ckpt = ckpt_command()
    rows = []
    for cache in ("warm", "cold"):
        for task, ours, base, name, files in (
                ("verify", [*ckpt, "verify", str(prefix)], cat_command(data), "cat data", data),
                ("diff", [*ckpt, "diff", str(prefix), str(copy)],
                 cat_command([*data, *copy_data]), "cat data + copy", [*data, *copy_data])):
            print(f"[{kind}] {task}, page cache {cache} ({size / 2**30:.2f} GiB per file set)",
                  file=sys.stderr, flush=True)
            a, b, ratios = measure_turns(ours, base, repeat,
                                         evict=files if cache == "cold" else ())
            rows.append(row(kind, f"{task} (cache {cache})", a, name, b, ratios))
    return rows


def cat_command(sources: list[Path]) -> list[str]:
    """``cat SRC... > /dev/null``: the cost of reading the bytes once."""
    return ["sh", "-c", f"cat {shlex.join(str(s) for s in sources)} > /dev/null"]


def copy_command(sources: list[Path], outdir: Path, tag: str) -> tuple[list[str], list[Path]]:
    """``cp SRC DST && sync DST`` for each source: the cost of moving the bytes once."""
    copies = [outdir / f"{tag}.cp{i}" for i in range(len(sources))]
    script = " && ".join(f"cp {shlex.quote(str(s))} {shlex.quote(str(c))}"
                         f" && sync {shlex.quote(str(c))}"
                         for s, c in zip(sources, copies, strict=True))
    return ["sh", "-c", script], copies


def bench_hf(prefix: Path, outdir: Path, repeat: int, old_python: Path | None) -> list[Row]:
    """BERT-base with its Adam slots into a Hugging Face directory, against transformers 4.x's
    own route (TensorFlow + load_tf_weights_in_bert + save_pretrained) when ``old_python``
    names an environment that has it."""
    config = outdir / "bert_config.json"
    config.write_text(json.dumps(BERT_BASE_CONFIG))
    print("[bert] to-hf", file=sys.stderr, flush=True)
    out = outdir / "bert-hf"
    ours = measure([*ckpt_command(), "convert", str(prefix), str(out), "--to", "hf",
                    "--config", str(config), "-q", "--force"], repeat, [out])
    if old_python is None:
        base = Measurement(None, None, [], "skipped (no --hf-reference-python)")
    else:
        old = outdir / "bert-hf-old"
        base = measure([str(old_python), "-c", HF_OLD_ROUTE, str(prefix), str(config), str(old)],
                       repeat, [old])
    return [row("bert", "to-hf (encoder; Adam slots dropped)", ours, "tf + transformers 4.x", base)]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def make_frozen_graph(path: Path, constants: int = 25, side: int = 1024) -> None:
    """A frozen GraphDef of ``constants`` float32 ``side`` x ``side`` Const nodes (100 MiB by
    default), encoded here (GraphDef.node = 1; NodeDef name 1, op 2, attr 5; AttrValue type 6,
    tensor 8; TensorProto dtype 1, shape 2, tensor_content 4), so ours needs no TensorFlow."""
    import numpy as np

    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        for i in range(constants):
            content = rng.standard_normal((side, side)).astype("<f4").tobytes()
            shape = _field(2, _field(1, side)) + _field(2, _field(1, side))
            tensor = _field(1, 1) + _field(2, shape) + _field(4, content)
            attrs = (_field(5, _field(1, b"dtype") + _field(2, _field(6, 1)))
                     + _field(5, _field(1, b"value") + _field(2, _field(8, tensor))))
            f.write(_field(1, _field(1, f"layer_{i}/kernel".encode()) + _field(2, b"Const")
                           + attrs))


def bench_graphs(workdir: Path, repeat: int) -> list[Row]:
    """``ckpt inspect`` of a SavedModel against ``saved_model_cli show --all``, and reading a
    100 MiB frozen graph's constants against TensorFlow's GraphDef parse and make_ndarray."""
    rows = []
    pb = workdir / "frozen-100mib.pb"
    if not pb.is_file():
        make_frozen_graph(pb)
    print("[graphs] frozen graph", file=sys.stderr, flush=True)
    ours = measure(python_code(OURS_READ, str(pb)), repeat)
    base = measure(python_code(TF_GRAPHDEF, str(pb)), repeat)
    rows.append(row("frozen 100 MiB", "read every constant", ours, "tf GraphDef + make_ndarray",
                    base))
    ours = measure([*ckpt_command(), "inspect", str(pb)], repeat)
    rows.append(row("frozen 100 MiB", "inspect", ours, "tf GraphDef + make_ndarray", base))
    sm = workdir / "saved_model"
    if not (sm / "saved_model.pb").is_file():
        subprocess.run(python_code(MAKE_SAVED_MODEL, str(sm)), check=True, env=child_env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print("[graphs] saved model", file=sys.stderr, flush=True)
    ours = measure([*ckpt_command(), "inspect", str(sm)], repeat)
    cli = Path(sys.executable).with_name("saved_model_cli")
    base = measure([str(cli), "show", "--all", "--dir", str(sm)], repeat)
    rows.append(row("SavedModel", "inspect (signatures)", ours, "saved_model_cli show --all",
                    base))
    return rows


def bench_kind(kind: str, prefix: Path, outdir: Path, repeat: int, with_tf: bool) -> list[Row]:
    ckpt = ckpt_command()
    src = str(prefix)
    rows: list[Row] = []
    skipped = Measurement(None, None, [], "skipped (--quick)")
    print(f"[{kind}] inspect", file=sys.stderr, flush=True)
    ours = measure([*ckpt, "inspect", src], repeat)
    base = measure(python_code(TF_INSPECT, src), repeat) if with_tf else skipped
    rows.append(row(kind, "inspect", ours, "tf load_checkpoint", base))

    rows.append(bench_stats(kind, prefix, repeat))

    print(f"[{kind}] read", file=sys.stderr, flush=True)
    ours = measure(python_code(OURS_READ, src), repeat)
    base = measure(python_code(TF_READ, src), repeat) if with_tf else skipped
    rows.append(row(kind, "read", ours, "tf get_tensor", base))

    shards = data_files(prefix)
    cp, copies = copy_command(shards, outdir, kind)
    base_cp = measure(cp, repeat, copies)
    for suffix in ("safetensors", "npz", "h5"):
        task = f"to-{suffix}"
        print(f"[{kind}] {task}", file=sys.stderr, flush=True)
        out = outdir / f"{kind}.{suffix}"
        ours = measure([*ckpt, "convert", src, str(out), "-q", "--force"], repeat, [out])
        rows.append(row(kind, task, ours, "cp+sync data", base_cp))
        if suffix == "safetensors" and with_tf:
            tf_out = outdir / f"{kind}.tf.{suffix}"
            base = measure(python_code(TF_SAFETENSORS, src, str(tf_out)), repeat, [tf_out])
            rows.append(row(kind, task, ours, "tf+save_file", base))
        if suffix == "safetensors" and kind == "bert":
            # Dropping the Adam slots: only the kept tensors' bytes are read and written.
            kept = outdir / f"{kind}.kept.{suffix}"
            lean = measure([*ckpt, "convert", src, str(kept), "-q", "--force", "--preset",
                            "drop-optimizer"], repeat, [kept])
            rows.append(row(kind, f"{task} drop-optimizer ({kept_share(src)})", lean,
                            "to-safetensors", ours))
    # The other directions: safetensors -> TF bundle, npz -> safetensors.
    for source, dest, task in ((f"{kind}.safetensors", f"{kind}.back.ckpt", "safetensors-to-tf"),
                               (f"{kind}.npz", f"{kind}.back.safetensors", "npz-to-safetensors")):
        print(f"[{kind}] {task}", file=sys.stderr, flush=True)
        source_path = outdir / source
        subprocess.run([*ckpt, "convert", src, str(source_path), "-q", "--force"], check=True,
                       env=child_env())
        target = outdir / dest
        produced = [target.with_name(target.name + ".index"), outdir / "checkpoint",
                    target.with_name(target.name + ".data-00000-of-00001"), target]
        ours = measure([*ckpt, "convert", str(source_path), str(target), "-q", "--force"],
                       repeat, produced)
        cp, copies = copy_command([source_path], outdir, task)
        rows.append(row(kind, task, ours, "cp+sync source", measure(cp, repeat, copies)))
    return rows


def kept_share(src: str) -> str:
    """Tensor bytes ``--preset drop-optimizer`` keeps, of all (what it reads and writes)."""
    import converter
    from converter.rules import Rules

    with converter.read(src) as ckpt:
        kept = Rules().preset("drop-optimizer").apply(ckpt)
        return f"{kept.nbytes / 1e6:.0f} of {ckpt.nbytes / 1e6:.0f} MB"


def skipped(r: Row) -> bool:
    return bool(r.baseline_error and r.baseline_error.startswith("skipped"))


def fmt(value: float | None, spec: str) -> str:
    if value is None:
        return "FAILED"
    if spec == ".3f" and 0 < abs(value) < 0.01:  # per-item overheads: keep the digits
        return format(value, ".2e")
    return format(value, spec)


def print_table(rows: list[Row]) -> None:
    header = ("kind", "task", "ours (s)", "baseline", "base (s)", "ours/base", "range",
              "ours RSS MiB", "base RSS MiB")
    cells = [header] + [
        (r.kind, r.task, fmt(r.ours_s, ".3f"), r.baseline,
         "-" if skipped(r) else fmt(r.baseline_s, ".3f"),
         "-" if r.ratio is None else f"{r.ratio:.2f}",
         "-" if r.ratio_range is None else f"{r.ratio_range[0]:.2f}-{r.ratio_range[1]:.2f}",
         "-" if r.ours_rss_mib is None and not r.ours_error else fmt(r.ours_rss_mib, ".0f"),
         "-" if skipped(r) else fmt(r.baseline_rss_mib, ".0f"))
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    left = {0, 1, 3}
    for i, line in enumerate(cells):
        print("  ".join(c.ljust(w) if j in left else c.rjust(w)
                        for j, (c, w) in enumerate(zip(line, widths, strict=True))).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        for who, error in (("ours", r.ours_error), (r.baseline, r.baseline_error)):
            if error and not (who == r.baseline and skipped(r)):
                print(f"! {r.kind} {r.task} {who}: {error}")


def parse_kinds(text: str) -> list[str]:
    if text == "none":  # only the batch (or --graphs) rows
        return []
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"kinds must be among {','.join(KINDS)}; got {text!r}")
    return kinds


MAKE_MANY_CKPTS = """
import sys, numpy as np, converter
root, count, floats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
for i in range(count):
    data = {f"layer_{j}/kernel": rng.standard_normal(floats // 4, dtype=np.float32)
            for j in range(4)}
    converter.write(data, f"{root}/run{i % 10}/model.ckpt-{i}", format="tf")
"""

CONVERT_LOOP = """
import sys, time, pathlib, converter
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for index in sorted(src.rglob("*.index")):
    prefix = index.with_suffix("")
    dst = out / prefix.relative_to(src).parent / (prefix.name + ".safetensors")
    converter.convert(prefix, dst, force=True).close()
"""


def bench_batch(workdir: Path, outdir: Path, repeat: int, count: int) -> list[Row]:
    """``ckpt batch`` over many small checkpoints: the speed-up of 2 workers over 1, and the
    cost per item beyond the conversion itself (the same conversions in one process)."""
    ckpt = ckpt_command()
    rows = []
    for label, floats in (("batch", 1 << 20), ("batch-tiny", 64)):
        src = workdir / f"{label}-{count}"
        if not src.is_dir():
            subprocess.run(python_code(MAKE_MANY_CKPTS, str(src), str(count), str(floats)),
                           check=True, env=child_env())
        out = outdir / label
        base = [*ckpt, "batch", str(src), "--to", "safetensors", "--out", str(out), "-q"]
        print(f"[{label}] {count} items", file=sys.stderr, flush=True)
        one = measure([*base, "--jobs", "1"], repeat, [out])
        if label == "batch":
            two = measure([*base, "--jobs", "2"], repeat, [out])
            rows.append(row(label, f"{count} items, jobs 2", two, "jobs 1", one))
            # The same with deflate: CPU-bound, where more workers should pay off.
            npz = [*ckpt, "batch", str(src), "--to", "npz", "--compress", "--out", str(out), "-q"]
            one = measure([*npz, "--jobs", "1"], repeat, [out])
            two = measure([*npz, "--jobs", "2"], repeat, [out])
            rows.append(row(label, f"{count} items npz deflate, jobs 2", two, "jobs 1", one))
        else:
            loop = measure(python_code(CONVERT_LOOP, str(src), str(out)), repeat, [out])
            per_item = Measurement(
                None if one.seconds is None or loop.seconds is None
                else (one.seconds - loop.seconds) / count, None, [], one.error or loop.error)
            rows.append(row(label, f"{count} items, jobs 1", one, "one-process loop", loop))
            rows.append(row(label, "overhead per item", per_item, "-", Measurement(
                None, None, [], "skipped (not a baseline)")))
    return rows


# The remote baseline: fsspec's get of the bundle's objects into a directory, each file
# fsynced (as ckpt convert fsyncs its output) — the cost of downloading the bytes once.
FSSPEC_GET = """
import os, sys, fsspec
fs, _ = fsspec.core.url_to_fs(sys.argv[1])
out = sys.argv[2]
os.makedirs(out, exist_ok=True)
for path in sys.argv[3:]:
    target = os.path.join(out, path.rpartition("/")[2])
    fs.get_file(path, target)
    fd = os.open(target, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
"""


# The servers of the remote rows, each in a child process of its own (a server in this
# process would count in every child's peak RSS, which starts from ours at fork). It prints
# its port, then serves until killed. ``moto``: an S3 server counting the bytes it sends
# (GET /__count__ answers and resets the count). ``files DIR``: DIR's files over HTTP with
# Range requests streamed from disk.
SERVER = """
import io, os, re, sys, threading
kind = sys.argv[1]
if kind == "moto":
    from moto.moto_server.werkzeug_app import (DomainDispatcherApplication, MotoRequestHandler,
                                               create_backend_app)
    from werkzeug.serving import make_server
    app, sent = DomainDispatcherApplication(create_backend_app), [0]
    def counting(environ, start_response):
        if environ.get("PATH_INFO") == "/__count__":
            body, sent[0] = str(sent[0]).encode(), 0
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]
        def body():
            for chunk in app(environ, start_response):
                sent[0] += len(chunk)
                yield chunk
        return body()
    server = make_server("127.0.0.1", 0, counting, True, request_handler=MotoRequestHandler)
else:
    import functools, http.server
    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass
        def send_head(self):
            m = re.fullmatch(r"bytes=(\\d+)-(\\d*)", self.headers.get("Range", ""))
            path = self.translate_path(self.path)
            if m is None or not os.path.isfile(path):
                return super().send_head()
            size = os.path.getsize(path)
            start = int(m.group(1))
            end = min(int(m.group(2)) + 1 if m.group(2) else size, size)
            f = open(path, "rb")
            f.seek(start)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            self.send_header("Content-Length", str(end - start))
            self.end_headers()
            return Part(f, end - start)
    class Part:  # the range streamed from disk, as a web server sends it
        def __init__(self, f, n):
            self.f, self.n = f, n
        def read(self, size=-1):
            size = self.n if size < 0 else min(size, self.n)
            data = self.f.read(size)
            self.n -= len(data)
            return data
        def close(self):
            self.f.close()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=sys.argv[2]))
print(server.server_address[1], flush=True)
server.serve_forever()
"""


PUT = """
import sys, s3fs
fs = s3fs.S3FileSystem(endpoint_url=sys.argv[1])
fs.mkdir("bench")
for f in sys.argv[2:]:
    fs.put_file(f, "bench/mid/" + f.rpartition("/")[2])
"""


def _server(*args: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(python_code(SERVER, *args), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=child_env(), text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.strip().isdigit():
        proc.kill()
        raise RuntimeError(f"the {args[0]} server did not start")
    return proc, int(line)


def bench_remote(workdir: Path, outdir: Path, repeat: int) -> list[Row]:
    """A 512 MiB bundle on a moto S3 server on 127.0.0.1 and on a plain HTTP server with
    ranges: ``ckpt convert URL OUT.safetensors`` vs fsspec's ``get_file`` of its objects from
    the same server (download only, fsynced as our output is), in turns, and the bytes the S3
    server sent for ``ckpt inspect s3://...``. moto reads a whole object for every GET, ranged
    or not, so its row rewards few requests (fsspec's get makes a dozen of 50 MiB, ten at a
    time; we make one per run of tensors); the HTTP row is the cost of our reading."""
    try:
        import moto  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as exc:
        missing = Measurement(None, None, [], f"skipped ({exc.name} is not installed)")
        return [row("remote 512 MiB", "convert s3:// to safetensors", missing, "fsspec get",
                    missing)]
    import urllib.request

    prefix, _ = make_bundle(workdir, "mid", None, "converter")
    files = [prefix.with_name(prefix.name + ".index"), *data_files(prefix)]
    size = sum(f.stat().st_size for f in files)
    ckpt = ckpt_command()
    out, got = outdir / "remote.safetensors", outdir / "remote-get"
    rows = []
    moto_proc, port = _server("moto")
    http_proc, http_port = _server("files", str(prefix.parent))
    endpoint = f"http://127.0.0.1:{port}"
    saved = dict(os.environ)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", FSSPEC_S3_ENDPOINT_URL=endpoint)
    try:
        # Uploaded by a child: 512 MiB passing through this process would stay in its RSS.
        subprocess.run(python_code(PUT, endpoint, *map(str, files)), check=True,
                       env=child_env())
        for label, url, objects in (
                ("s3:// (moto)", "s3://bench/mid/model.ckpt",
                 [f"bench/mid/{f.name}" for f in files]),
                ("http:// (ranges)", f"http://127.0.0.1:{http_port}/model.ckpt",
                 [f"http://127.0.0.1:{http_port}/{f.name}" for f in files])):
            print(f"[remote] 512 MiB bundle, {label}", file=sys.stderr, flush=True)
            ours, base, ratios = measure_turns(
                [*ckpt, "convert", url, str(out), "-q", "--force"],
                python_code(FSSPEC_GET, url, str(got), *objects), repeat, ([out], [got]))
            rows.append(row("remote 512 MiB", f"convert {label} to safetensors", ours,
                            "fsspec get", base, ratios))
        with urllib.request.urlopen(f"{endpoint}/__count__") as r:
            r.read()  # reset
        listed = measure([*ckpt, "inspect", "s3://bench/mid/model.ckpt"], 1)
        with urllib.request.urlopen(f"{endpoint}/__count__") as r:
            fetched = int(r.read()) // 2  # the warm-up run and the timed one
        rows.append(row("remote 512 MiB", f"inspect s3:// (fetched {fetched} of {size} "
                        f"bytes, {100 * fetched / size:.4f}%)", listed, "-",
                        Measurement(None, None, [], "skipped (not a baseline)")))
    finally:
        for proc in (moto_proc, http_proc):
            proc.kill()
            proc.wait()
        os.environ.clear()
        os.environ.update(saved)
    return rows


COMPILE = """
import compileall, pathlib, sys, converter
compileall.compile_dir(pathlib.Path(converter.__file__).parent, quiet=1)
"""


def compile_package(env: dict[str, str] | None = None) -> None:
    """Byte-compile converter as ``pip install`` does. A checkout installed in editable mode
    under ``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module in every timed run,
    which is start-up a user does not pay. In a child: importing converter (and numpy) here
    would raise every later child's peak RSS, which wait4 reports from the fork on. ``env``
    (e.g. ``checkout_env``) says which converter."""
    subprocess.run(python_code(COMPILE), check=True, env=child_env() if env is None else env)


@dataclass
class Before:
    """The other checkout of the --before rows, and where both sides run from."""

    root: Path
    label: str  # the baseline column: "before <commit>" (or the directory's name)
    cwd: Path  # an empty directory: neither checkout's code sits on ``python -m``'s path
    converter: str = ""  # converter.__file__ as its children import it
    ours_converter: str = ""


def checkout_env(root: Path) -> dict[str, str]:
    """The children's environment with ``root``'s code first (and only) on PYTHONPATH."""
    env = child_env()
    env["PYTHONPATH"] = str(root)
    return env


def module_command() -> list[str]:
    return [sys.executable, "-m", "converter"]


def imported_converter(root: Path, cwd: Path) -> str:
    """``converter.__file__`` of a child run as the --before rows run theirs."""
    done = subprocess.run(python_code("import converter; print(converter.__file__)"),
                          env=checkout_env(root), cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return f"(import failed: {tail[0]})"
    return done.stdout.strip()


def checkout_label(root: Path) -> str:
    """``before <short commit>`` when ``root`` is the top of a git checkout, else its name."""
    try:
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel",
                              "--short", "HEAD"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return f"before {root.name}"
    lines = top.stdout.split()
    if len(lines) == 2 and Path(lines[0]).resolve() == root:
        return f"before {lines[1]}"
    return f"before {root.name}"


def prepare_before(root: Path, workdir: Path) -> Before:
    """Check that the children of each side (``root`` and ours) import that side's converter
    and byte-compile both; raise ValueError with a one-line reason otherwise."""
    root = root.resolve()
    if not (root / "converter" / "__init__.py").is_file():
        raise ValueError(f"{root}: no converter package (give a checkout of this repository)")
    if root == ROOT:
        raise ValueError(f"{root}: is this script's own checkout; give another one")
    cwd = workdir / "before-cwd"
    shutil.rmtree(cwd, ignore_errors=True)
    cwd.mkdir(parents=True)
    before = Before(root, checkout_label(root), cwd)
    for side, found in ((root, "converter"), (ROOT, "ours_converter")):
        path = imported_converter(side, cwd)
        if not Path(path).resolve().is_relative_to(side / "converter"):
            raise ValueError(f"{side}: its children import converter from {path}, not from "
                             f"{side / 'converter'}")
        setattr(before, found, path)
        compile_package(checkout_env(side))
    return before


def bench_before(kind: str, prefix: Path, outdir: Path, repeat: int,
                 before: Before) -> list[Row]:
    """A bundle's rows run by our code and by ``before``'s, in turns: both as
    ``python -m converter`` from the same empty directory, outputs in sibling directories of
    the same file names, so nothing but the code differs."""
    envs = (checkout_env(ROOT), checkout_env(before.root))
    side_dirs = (outdir / "ours", outdir / "before")
    for d in side_dirs:
        d.mkdir(exist_ok=True)
    src = str(prefix)
    rows = []

    def turns(task: str, args: Callable[[Path], list[str]],
              outputs: Callable[[Path], list[Path]]) -> None:
        print(f"[{kind}] {task}: ours ({ROOT}) and {before.label} ({before.root}), in turns",
              file=sys.stderr, flush=True)
        ours, base, ratios = measure_turns(
            [*module_command(), *args(side_dirs[0])], [*module_command(), *args(side_dirs[1])],
            repeat, (outputs(side_dirs[0]), outputs(side_dirs[1])), envs=envs, cwd=before.cwd)
        rows.append(row(kind, task, ours, before.label, base, ratios))

    turns("inspect", lambda d: ["inspect", src], lambda d: [])
    for suffix in ("safetensors", "npz", "h5"):
        name = f"{kind}.{suffix}"
        turns(f"to-{suffix}", lambda d, n=name: ["convert", src, str(d / n), "-q", "--force"],
              lambda d, n=name: [d / n])
    for source, dest, task in ((f"{kind}.safetensors", f"{kind}.back.ckpt", "safetensors-to-tf"),
                               (f"{kind}.npz", f"{kind}.back.safetensors", "npz-to-safetensors")):
        # One source, made by our code, for both sides.
        source_path = outdir / f"before-src.{source}"
        subprocess.run([*module_command(), "convert", src, str(source_path), "-q", "--force"],
                       check=True, env=envs[0], cwd=before.cwd)
        turns(task, lambda d, t=dest, sp=source_path: ["convert", str(sp), str(d / t), "-q",
                                                       "--force"],
              lambda d, t=dest: [d / f"{t}.index", d / f"{t}.data-00000-of-00001",
                                 d / "checkpoint", d / t])
        remove(source_path)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", type=parse_kinds, default=list(KINDS),
                        help="comma-separated fixture kinds (default: many,bert,big)")
    parser.add_argument("--repeat", type=int, help="timed runs per command (default: 3)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: one small bundle written by converter, no TensorFlow "
                             "baselines, one run")
    parser.add_argument("--batch", type=int, default=100, metavar="N",
                        help="checkpoints in the batch benchmark (0 skips it; --quick: 10)")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "bench-data",
                        help="where fixtures live and outputs go (default: <tempdir>/bench-data)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--fixture-writer", choices=("tf", "converter"), default="tf",
                        help="who writes the fixtures scripts/bench_fixtures.py makes "
                             "(default: tf)")
    parser.add_argument("--hf-reference-python", type=Path, metavar="PYTHON",
                        help="the Python of an environment with TensorFlow and transformers "
                             "4.x (scripts/hf_reference/make_env.sh makes one): the baseline "
                             "of the bert to-hf row")
    parser.add_argument("--graphs", action="store_true",
                        help="also the graph rows: a SavedModel's signatures and a 100 MiB "
                             "frozen graph, against TensorFlow's own tools")
    parser.add_argument("--remote", action="store_true",
                        help="also the remote rows: a 512 MiB bundle on a local moto S3 "
                             "server, converted from s3:// and inspected (bytes fetched)")
    parser.add_argument("--remote-only", action="store_true",
                        help="only the remote rows")
    parser.add_argument("--hf-only", action="store_true",
                        help="only the to-hf row (with --kinds bert)")
    parser.add_argument("--stats-only", action="store_true",
                        help="only the inspect --stats rows (ours and cat in turns)")
    parser.add_argument("--sweep", action="store_true",
                        help="only the size sweep: 256 MiB, 1.4 GiB and 4 GiB bundles to "
                             "safetensors against cp + sync, in turns (--repeat defaults to 5)")
    parser.add_argument("--diff-verify", action="store_true",
                        help="only the diff and verify rows: ckpt verify of the big bundle "
                             "against cat of its data, ckpt diff of it and a copy against cat "
                             "of both, in turns, page cache warm and cold (--repeat defaults "
                             "to 5; --quick: the small bundle)")
    parser.add_argument("--before", type=Path, metavar="CHECKOUT",
                        help="also run the many, bert and big (and --quick) bundles' inspect "
                             "and conversion rows with CHECKOUT's code (another checkout of "
                             "this repository, e.g. `git worktree add DIR COMMIT`), in turns "
                             "with ours: both as python -m converter with "
                             "PYTHONPATH=<checkout>, from an empty directory; ours/before and "
                             "the range per row")
    parser.add_argument("--make-ckpt", type=Path,
                        help="another fixture maker, run as: python MAKE_CKPT PREFIX KIND "
                             "(default: scripts/bench_fixtures.py)")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 5 if args.sweep or args.diff_verify else 3
    if args.quick:
        args.kinds, args.repeat, args.batch = [QUICK], 1, min(args.batch, 10)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    compile_package()
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    before = None
    if args.before is not None:
        try:
            before = prepare_before(args.before, workdir)
        except ValueError as exc:
            parser.error(f"--before {exc}")
    bundles: dict[str, Path] = {}
    make_seconds: dict[str, float | None] = {}
    if args.remote_only:
        args.kinds, args.batch, args.remote = [], 0, True
    diff_verify_kind = QUICK if args.quick else "big"
    if args.sweep or args.diff_verify:
        args.kinds, args.batch = [], 0
    for kind in args.kinds:
        if kind != QUICK and not bundle_ready(workdir / kind / "model.ckpt") \
                and args.make_ckpt is not None and not args.make_ckpt.is_file():
            parser.error(f"fixture maker not found: {args.make_ckpt} (see --make-ckpt)")
        bundles[kind], make_seconds[kind] = make_bundle(workdir, kind, args.make_ckpt,
                                                        args.fixture_writer)

    outdir = workdir / "out"
    outdir.mkdir(exist_ok=True)
    rows: list[Row] = []
    try:
        for kind in args.kinds:
            if args.stats_only:
                rows.append(bench_stats(kind, bundles[kind], args.repeat))
                continue
            if not args.hf_only:
                rows.extend(bench_kind(kind, bundles[kind], outdir, args.repeat,
                                       not args.quick))
            if before is not None and kind in BEFORE_KINDS and not args.hf_only:
                rows.extend(bench_before(kind, bundles[kind], outdir, args.repeat, before))
            if kind == "bert":
                rows.extend(bench_hf(bundles[kind], outdir, args.repeat,
                                     args.hf_reference_python))
        if args.batch and not args.stats_only:
            rows.extend(bench_batch(workdir, outdir, args.repeat, args.batch))
        if args.graphs:
            rows.extend(bench_graphs(workdir, args.repeat))
        if args.remote:
            rows.extend(bench_remote(workdir, outdir, args.repeat))
        if args.sweep:
            rows.extend(bench_sweep(workdir, outdir, args.repeat, args.make_ckpt,
                                    args.fixture_writer))
        if args.diff_verify:
            rows.extend(bench_diff_verify(workdir, args.repeat, diff_verify_kind,
                                          args.make_ckpt, args.fixture_writer))
    finally:
        shutil.rmtree(outdir, ignore_errors=True)

    made = ", ".join(f"{k} {s:.1f} s" for k, s in make_seconds.items() if s is not None)
    if made:
        print(f"fixtures made: {made}")
    print(f"medians of {args.repeat} runs after 1 warm-up; RSS = child's own peak (wait4); range: "
          "lowest and highest ratio of one turn, for rows run in turns")
    print_table(rows)
    if args.json:
        report = {"repeat": args.repeat, "python": sys.executable,
                  "make_seconds": make_seconds, "rows": [asdict(r) for r in rows]}
        if before is not None:
            report["before"] = {"checkout": str(before.root), "label": before.label,
                                "converter": before.converter,
                                "ours_checkout": str(ROOT), "ours_converter": before.ours_converter}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(r.ours_error or (r.baseline_error and not skipped(r)) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
