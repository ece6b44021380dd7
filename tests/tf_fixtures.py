"""Build small TensorFlow checkpoints, written by TensorFlow itself, for the converter's tests.

``python tests/tf_fixtures.py OUTDIR`` (or ``make_all(outdir)``) writes one sub-directory per
fixture into OUTDIR and, beside them, ``<fixture>.expected.pkl`` (``{key: numpy array}`` as
``tf.train.load_checkpoint`` reads it back, scalars as 0-d arrays, strings as object arrays of
bytes) and ``manifest.json``::

    {name: {"prefix", "expected", "kind", "notes", "shapes", "dtypes", "skipped"}}

A fixture that this TensorFlow/Keras cannot produce is kept in the manifest with
``"skipped": true``, ``prefix`` and ``expected`` set to ``None`` and the reason in ``notes``.
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tf.keras is tf-keras 2; ``import keras`` is Keras 3.
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import json
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

SEED = 1234
_SHARDED_SAVER_FLAG = "--sharded-saver"


class Built(NamedTuple):
    prefix: str
    kind: str
    notes: str


class SkipFixture(Exception):
    """This TensorFlow/Keras cannot write the fixture; the message says why."""


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _rng(offset: int = 0) -> np.random.Generator:
    return np.random.default_rng(SEED + offset)


# --------------------------------------------------------------------------- TF1 graphs


def tf1_adam(outdir: Path) -> Built:
    v1 = tf.compat.v1
    rng = _rng(1)
    x_data = rng.standard_normal((8, 4)).astype(np.float32)
    y_data = rng.standard_normal((8, 2)).astype(np.float32)
    with tf.Graph().as_default():
        v1.set_random_seed(SEED)
        x = v1.placeholder(tf.float32, [None, 4])
        y = v1.placeholder(tf.float32, [None, 2])
        global_step = v1.train.get_or_create_global_step()
        with v1.variable_scope("dense"):
            k0 = v1.get_variable("kernel", [4, 5])
            b0 = v1.get_variable("bias", [5], initializer=v1.zeros_initializer())
        with v1.variable_scope("dense_1"):
            k1 = v1.get_variable("kernel", [5, 2])
            b1 = v1.get_variable("bias", [2], initializer=v1.zeros_initializer())
        hidden = tf.nn.relu(tf.matmul(x, k0) + b0)
        loss = tf.reduce_mean(tf.square(tf.matmul(hidden, k1) + b1 - y))
        train = v1.train.AdamOptimizer(0.01).minimize(loss, global_step=global_step)
        saver = v1.train.Saver()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            for _ in range(3):
                sess.run(train, {x: x_data, y: y_data})
            prefix = saver.save(
                sess, str(_fresh(outdir / "tf1_adam") / "model.ckpt"), global_step=global_step
            )
    return Built(prefix, "tf1_saver", "2-layer dense net, AdamOptimizer, 3 steps, global_step=3")


def tf1_partitioned(outdir: Path) -> Built:
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        v1.set_random_seed(SEED)
        init = v1.random_normal_initializer(seed=SEED)
        v1.get_variable(
            "emb", shape=[10, 6], initializer=init, partitioner=v1.fixed_size_partitioner(3)
        )
        v1.get_variable(
            "wide", shape=[4, 9], initializer=init, partitioner=v1.fixed_size_partitioner(3, axis=1)
        )
        v1.get_variable("plain", shape=[3], initializer=init)
        saver = v1.train.Saver()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            prefix = saver.save(sess, str(_fresh(outdir / "tf1_partitioned") / "model.ckpt"))
    return Built(
        prefix,
        "tf1_saver_partitioned",
        "emb [10,6] in 3 slices along axis 0, wide [4,9] in 3 slices along axis 1; "
        "the bundle stores each slice under an encoded \\x00-prefixed key",
    )


STRING_VECTOR = [b"", b"a", b"x" * 300, b"nul\x00and\xff", b"\xe2\x82\xac utf-8"]
STRING_MATRIX = [[b"r0c0", b""], [b"r1c0-longer", b"\x00"]]


def tf1_strings(outdir: Path) -> Built:
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        tf.Variable(b"hello", name="s0")
        tf.Variable(STRING_VECTOR, name="svec")
        tf.Variable(STRING_MATRIX, name="smat")
        saver = v1.train.Saver()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            prefix = saver.save(sess, str(_fresh(outdir / "tf1_strings") / "model.ckpt"))
    return Built(
        prefix, "tf1_saver", "string scalar, vector (empty, 300 bytes, \\x00\\xff), 2x2 matrix"
    )


def tf1_ema(outdir: Path) -> Built:
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        v1.set_random_seed(SEED)
        w = v1.get_variable("w", [3, 2], initializer=v1.random_normal_initializer(seed=SEED))
        b = v1.get_variable("b", [2], initializer=v1.constant_initializer([0.5, -0.5]))
        ema = v1.train.ExponentialMovingAverage(0.9)
        update = ema.apply([w, b])
        nudge = tf.group(w.assign_add(tf.ones_like(w)), b.assign_add(tf.fill([2], 2.0)))
        saver = v1.train.Saver()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            for _ in range(2):
                sess.run(nudge)
                sess.run(update)
            prefix = saver.save(sess, str(_fresh(outdir / "tf1_ema") / "model.ckpt"))
    return Built(prefix, "tf1_saver", "w, b and their ExponentialMovingAverage(0.9) shadows")


def _tf1_saved(target: Path, save_path: str, big: bool = False, **saver_args: Any) -> str:
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        v1.get_variable("w", initializer=np.arange(6, dtype=np.float32).reshape(2, 3))
        v1.get_variable("b", initializer=np.array([0.5, -1.5], dtype=np.float32))
        if big:  # TF opens a copy damaged in the middle, then fails to find this tensor
            v1.get_variable("big", initializer=np.ones((200, 1000), np.float32))
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            return v1.train.Saver(**saver_args).save(sess, save_path)


def tf1_large(outdir: Path) -> Built:
    """A tensor of 3 MiB (read in pieces, on two threads by ``ckpt verify``) beside a small one."""
    target = _fresh(outdir / "tf1_large")
    with tf.Graph().as_default():
        v1 = tf.compat.v1
        v1.get_variable("large", initializer=_rng(11).standard_normal((768, 1024))
                        .astype(np.float32))
        v1.get_variable("small", initializer=np.arange(5, dtype=np.int32))
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            prefix = v1.train.Saver().save(sess, str(target / "model.ckpt"))
    return Built(prefix, "tf1_saver", "float32 [768,1024] (3 MiB) and int32 [5], Saver.save")


def tf1_empty_basename(outdir: Path) -> Built:
    target = _fresh(outdir / "tf1_empty_basename")
    # A save path ending in "/" gives the prefix an empty basename: files ".index",
    # ".data-00000-of-00001" and ".meta" inside the directory.
    prefix = _tf1_saved(target, str(target) + "/")
    assert (target / ".index").is_file(), sorted(p.name for p in target.iterdir())
    return Built(prefix, "tf1_saver", "Saver.save(sess, 'dir/'): a prefix with an empty name")


def tf1_v1_dir(outdir: Path) -> Built:
    target = _fresh(outdir / "tf1_v1_dir")
    prefix = _tf1_saved(target, str(target / "model.ckpt"), big=True,
                        write_version=tf.compat.v1.train.SaverDef.V1)
    assert not (target / "model.ckpt.index").exists()
    notes = "pre-2016 V1 Saver: one model.ckpt file (w, b, big [200,1000] of ones), state, .meta"
    return Built(prefix, "tf1_saver_v1", notes)


# --------------------------------------------------------------------------- raw SaveV2


def _float_specials(
    dtype: type[np.floating], nan_bits: int, uint: type[np.unsignedinteger]
) -> np.ndarray:
    info = np.finfo(dtype)
    extremes = [info.max, info.tiny, info.smallest_subnormal]
    values = np.array([0.0, -0.0, 1.0, -2.5, np.inf, -np.inf, np.nan, *extremes], dtype=dtype)
    values[6:7].view(uint)[0] = nan_bits  # a quiet NaN with a non-default payload
    return values


# bfloat16 bits: 0, -0, 1, -2.5, inf, -inf, NaN with payload 1, max, min normal, min subnormal.
BF16_BITS = [0x0000, 0x8000, 0x3F80, 0xC020, 0x7F80, 0xFF80, 0x7FC1, 0x7F7F, 0x0080, 0x0001]


def _all_dtype_tensors() -> dict[str, tf.Tensor]:
    rng = _rng(4)
    tensors: dict[str, tf.Tensor] = {
        "t_float16": tf.constant(_float_specials(np.float16, 0x7E01, np.uint16)),
        "t_float32": tf.constant(_float_specials(np.float32, 0x7FC00001, np.uint32)),
        "t_float64": tf.constant(_float_specials(np.float64, 0x7FF8000000000001, np.uint64)),
        "t_bfloat16": tf.bitcast(tf.constant(np.array(BF16_BITS, dtype=np.uint16)), tf.bfloat16),
    }
    for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"):
        info = np.iinfo(name)
        values = [info.min, info.max, 0, 1, info.max // 3]
        tensors[f"t_{name}"] = tf.constant(np.array(values, dtype=name).reshape(5, 1))
    tensors["t_bool"] = tf.constant(np.array([[True, False, True], [False, False, True]]))
    tensors["t_complex64"] = tf.constant(
        np.array([1 + 2j, -0.0 - 1j, complex(np.inf, np.nan)], dtype=np.complex64)
    )
    tensors["t_complex128"] = tf.constant(
        np.array([[3 - 4j, 1e-300 + 1e300j]], dtype=np.complex128)
    )
    tensors["t_string"] = tf.constant(np.array([b"abc", b"", b"\x00\xff"], dtype=object))
    tensors["scalar_f32"] = tf.constant(np.float32(3.25))
    tensors["empty_f32"] = tf.zeros([0, 3], tf.float32)
    tensors["rank5_i32"] = tf.constant(
        rng.integers(-1000, 1000, size=(2, 1, 3, 1, 2), dtype=np.int32)
    )
    return tensors


def _save_v2(prefix: str, tensors: dict[str, tf.Tensor]) -> None:
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tensors[n] for n in names],
    )


def _float8_tensors(scratch: Path) -> dict[str, tf.Tensor]:
    """float8 tensors that SaveV2 accepts (each probed alone so one refusal skips only itself)."""
    import ml_dtypes

    # tf.bitcast refuses float8, so the values come from ml_dtypes arrays of exact bit patterns.
    # e4m3fn: 0, -0, 1, -1.5, max 448, NaN, min subnormal; e5m2: 0, -0, 1, inf, -inf, NaN, max.
    bits = {
        "float8_e4m3fn": [0x00, 0x80, 0x38, 0xBC, 0x7E, 0x7F, 0x01],
        "float8_e5m2": [0x00, 0x80, 0x3C, 0x7C, 0xFC, 0x7E, 0x7B],
    }
    accepted: dict[str, tf.Tensor] = {}
    for name, pattern in bits.items():
        probe = scratch / f"probe_{name}"
        try:
            tensor = tf.constant(np.array(pattern, dtype=np.uint8).view(getattr(ml_dtypes, name)))
            _save_v2(str(probe), {f"t_{name}": tensor})
        except (tf.errors.OpError, TypeError, ValueError, AttributeError):
            continue
        finally:
            for leftover in scratch.glob(f"{probe.name}.*"):
                leftover.unlink()
        accepted[f"t_{name}"] = tensor
    return accepted


def all_dtypes(outdir: Path) -> Built:
    target = _fresh(outdir / "all_dtypes")
    tensors = _all_dtype_tensors()
    float8 = _float8_tensors(target)
    tensors.update(float8)
    prefix = str(target / "ckpt")
    _save_v2(prefix, tensors)
    skipped = sorted({"t_float8_e4m3fn", "t_float8_e5m2"} - set(float8))
    notes = "raw SaveV2, one tensor per dtype plus scalar, zero-size and rank-5 tensors"
    if skipped:
        notes += f"; SaveV2 refused {', '.join(skipped)}"
    return Built(prefix, "raw_savev2", notes)


# --------------------------------------------------------------------------- sharding


def _sharded_arrays() -> dict[str, np.ndarray]:
    rng = _rng(5)
    return {f"v{i}": rng.standard_normal((4, 4)).astype(np.float32) for i in range(6)}


def _sliced_keys(prefix: str) -> list[str]:
    """Names of tensors stored as slices (the reader lists them only in its debug string)."""
    debug = tf.compat.v1.train.NewCheckpointReader(prefix).debug_string()
    return sorted(
        {line[1:].split(b"\x00")[0].decode() for line in debug.splitlines() if line[:1] == b"\x00"}
    )


def _write_with_shard_policy(target: Path, max_shard_size: int) -> str:
    ckpt = tf.train.Checkpoint(
        **{name: tf.Variable(value, name=name) for name, value in _sharded_arrays().items()}
    )
    policy = tf.train.experimental.MaxShardSizePolicy(max_shard_size=max_shard_size)
    options = tf.train.CheckpointOptions(experimental_sharding_callback=policy)
    return ckpt.write(str(target / "ckpt"), options=options)


def _data_shards(target: Path) -> list[str]:
    shards = sorted(p.name for p in target.glob("*.data-*-of-*"))
    assert len(shards) > 1, f"expected several data shards, got {shards}"
    return shards


def sharded(outdir: Path) -> Built:
    target = _fresh(outdir / "sharded")
    if hasattr(tf.train.experimental, "MaxShardSizePolicy"):
        # Every variable holds 64 bytes, so 128-byte shards take two whole tensors each.
        prefix = _write_with_shard_policy(target, 128)
        notes = "tf.train.Checkpoint.write with MaxShardSizePolicy(max_shard_size=128)"
    else:
        # Saver(sharded=True) needs several devices, and logical CPUs can only be configured
        # before TensorFlow initialises them, which this process has already done.
        prefix = str(target / "model.ckpt")
        subprocess.run(
            [sys.executable, os.path.abspath(__file__), _SHARDED_SAVER_FLAG, prefix], check=True
        )
        notes = "tf.compat.v1.train.Saver(sharded=True) over 2 logical CPUs, in a subprocess"
    assert not _sliced_keys(prefix), "the sharded fixture should keep every tensor whole"
    return Built(prefix, "sharded", f"{notes}; {len(_data_shards(target))} data shards")


def sharded_sliced(outdir: Path) -> Built:
    if not hasattr(tf.train.experimental, "MaxShardSizePolicy"):
        raise SkipFixture("tf.train.experimental.MaxShardSizePolicy is not available")
    target = _fresh(outdir / "sharded_sliced")
    # 160 is not a multiple of the 64-byte tensors, so the policy cuts some into row slices
    # that land in different shards.
    prefix = _write_with_shard_policy(target, 160)
    sliced = _sliced_keys(prefix)
    assert sliced, "expected MaxShardSizePolicy(160) to slice a tensor"
    notes = (
        f"tf.train.Checkpoint.write with MaxShardSizePolicy(max_shard_size=160); "
        f"{len(_data_shards(target))} data shards; stored as slices: {', '.join(sliced)}"
    )
    return Built(prefix, "sharded_sliced", notes)


def _write_sharded_with_saver(prefix: str) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        for i, (name, value) in enumerate(sorted(_sharded_arrays().items())):
            with tf.device(f"/cpu:{i % 2}"):
                tf.Variable(value, name=name)
        saver = v1.train.Saver(sharded=True)
        with v1.Session(config=v1.ConfigProto(device_count={"CPU": 2})) as sess:
            sess.run(v1.global_variables_initializer())
            saver.save(sess, prefix, write_meta_graph=False)


# --------------------------------------------------------------------------- TF2 / Keras


def _tf_keras_model() -> Any:
    keras2 = tf.keras
    # tf.keras resolves lazily; if something touched it before TF_USE_LEGACY_KERAS was set, it
    # is Keras 3 and these would not be tf-keras checkpoints.
    if not keras2.__name__.startswith("tf_keras"):
        raise RuntimeError(f"tf.keras is {keras2.__name__}, expected tf_keras")
    keras2.utils.set_random_seed(SEED)
    model = keras2.Sequential(
        [
            keras2.Input(shape=(4,)),
            keras2.layers.Dense(8, name="dense"),
            keras2.layers.BatchNormalization(),
            keras2.layers.Dense(2, name="out"),
        ]
    )
    model.compile(optimizer=keras2.optimizers.Adam(0.01), loss="mse")
    rng = _rng(6)
    model.train_on_batch(
        rng.standard_normal((8, 4)).astype(np.float32),
        rng.standard_normal((8, 2)).astype(np.float32),
    )
    return model


def tf2_keras(outdir: Path) -> Built:
    model = _tf_keras_model()
    ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    prefix = ckpt.save(str(_fresh(outdir / "tf2_keras") / "ckpt"))
    return Built(prefix, "tf2_object_graph", "tf-keras Sequential + Adam, tf.train.Checkpoint.save")


def tf2_keras_save_weights(outdir: Path) -> Built:
    model = _tf_keras_model()
    prefix = str(_fresh(outdir / "tf2_sw") / "ckpt")
    model.save_weights(prefix, save_format="tf")
    return Built(prefix, "tf2_object_graph", "tf-keras Sequential + Adam, model.save_weights (tf)")


def keras3_ckpt(outdir: Path) -> Built:
    try:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import keras

        if keras.backend.backend() != "tensorflow":
            raise SkipFixture(f"Keras backend is {keras.backend.backend()!r}, not tensorflow")
        keras.utils.set_random_seed(SEED)
        model = keras.Sequential(
            [keras.Input(shape=(4,)), keras.layers.Dense(8), keras.layers.Dense(2)]
        )
        model.compile(optimizer="adam", loss="mse")
        rng = _rng(8)
        model.train_on_batch(
            rng.standard_normal((8, 4)).astype(np.float32),
            rng.standard_normal((8, 2)).astype(np.float32),
        )
        ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
        prefix = ckpt.write(str(_fresh(outdir / "keras3") / "ckpt"))
    except SkipFixture:
        raise
    except Exception as exc:  # any Keras 3 / TF incompatibility means "skip", not "fail"
        raise SkipFixture(f"Keras 3 checkpoint failed: {type(exc).__name__}: {exc}") from exc
    notes = f"Keras {keras.__version__} Sequential + adam, tf.train.Checkpoint.write"
    if not any(name.startswith("model/") for name, _ in tf.train.list_variables(prefix)):
        # Each variable is saved once, under its shortest object-graph path.
        notes += "; model weights are keyed only under optimizer/_trainable_variables/*"
    return Built(prefix, "tf2_object_graph", notes)


ESCAPED_NAMES = {"layer0/kernel": (2, 3), "a.b": (2,), "x..S/y": ()}


class EscapedNames(tf.Module):
    """Variables under dict keys holding ``/`` and ``.``, which TF escapes in keys
    (``layer0.Skernel``, ``a..b``); ``zeros`` builds the same structure to restore into."""

    def __init__(self, zeros: bool = False) -> None:
        super().__init__()
        rng = _rng(10)
        self.v = {name: tf.Variable(np.zeros(shape, np.float32) if zeros else
                                    rng.standard_normal(shape).astype(np.float32))
                  for name, shape in ESCAPED_NAMES.items()}
        self.w = tf.Variable(np.float32(0 if zeros else 9), name="w")


def tf2_escaped_names(outdir: Path) -> Built:
    ckpt = tf.train.Checkpoint(m=EscapedNames())
    prefix = ckpt.save(str(_fresh(outdir / "tf2_escaped") / "ckpt"))
    return Built(prefix, "tf2_object_graph", "tf.Module with dict keys holding / and .")


class _Module(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.kernel = tf.Variable(_rng(9).standard_normal((3, 2)).astype(np.float32), name="kernel")
        self.counter = tf.Variable(np.int64(7), name="counter")

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(x, self.kernel) * tf.cast(self.counter, tf.float32)


def savedmodel(outdir: Path) -> Built:
    target = outdir / "savedmodel"
    if target.exists():
        shutil.rmtree(target)
    tf.saved_model.save(_Module(), str(target))
    return Built(
        str(target / "variables" / "variables"),
        "savedmodel_variables",
        "tf.Module with float32 [3,2] and int64 scalar variables, tf.saved_model.save",
    )


# --------------------------------------------------------------------------- driver

FIXTURES: dict[str, Callable[[Path], Built]] = {
    "tf1_adam": tf1_adam,
    "tf1_partitioned": tf1_partitioned,
    "tf1_strings": tf1_strings,
    "all_dtypes": all_dtypes,
    "sharded": sharded,
    "sharded_sliced": sharded_sliced,
    "tf2_keras": tf2_keras,
    "tf2_keras_save_weights": tf2_keras_save_weights,
    "keras3_ckpt": keras3_ckpt,
    "tf2_escaped_names": tf2_escaped_names,
    "savedmodel": savedmodel,
    "tf1_ema": tf1_ema,
    "tf1_empty_basename": tf1_empty_basename,
    "tf1_large": tf1_large,
    "tf1_v1_dir": tf1_v1_dir,
}


def _as_array(value: Any) -> np.ndarray:
    # get_tensor returns 0-d tensors as numpy scalars, and 0-d strings as plain bytes.
    if isinstance(value, bytes):
        return np.array(value, dtype=object)
    return np.asarray(value)


def read_back(prefix: str) -> tuple[dict[str, np.ndarray], dict[str, list[int]], dict[str, str]]:
    """Tensors, shapes and dtype names of a checkpoint, as tf.train.load_checkpoint reports them.

    Strings are numpy object arrays of bytes; scalars are 0-d arrays.
    """
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    shapes = reader.get_variable_to_shape_map()
    keys = sorted(dtypes)
    return (
        {key: _as_array(reader.get_tensor(key)) for key in keys},
        {key: [int(d) for d in shapes[key]] for key in keys},
        {key: dtypes[key].name for key in keys},
    )


def make_all(outdir: str) -> dict[str, dict[str, Any]]:
    """Write every fixture into ``outdir``; return (and write) the manifest."""
    root = Path(outdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    tf.random.set_seed(SEED)
    manifest: dict[str, dict[str, Any]] = {}
    for name, build in FIXTURES.items():
        try:
            built = build(root)
        except SkipFixture as exc:
            manifest[name] = {
                "prefix": None,
                "expected": None,
                "kind": "skipped",
                "notes": str(exc),
                "shapes": {},
                "dtypes": {},
                "skipped": True,
            }
            continue
        tensors, shapes, dtypes = read_back(built.prefix)
        expected = root / f"{name}.expected.pkl"
        with expected.open("wb") as f:
            pickle.dump(tensors, f, protocol=pickle.HIGHEST_PROTOCOL)
        manifest[name] = {
            "prefix": str(Path(built.prefix).resolve()),
            "expected": str(expected),
            "kind": built.kind,
            "notes": built.notes,
            "shapes": shapes,
            "dtypes": dtypes,
            "skipped": False,
        }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == _SHARDED_SAVER_FLAG:
        _write_sharded_with_saver(argv[2])
        return 0
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUTDIR", file=sys.stderr)
        return 2
    manifest = make_all(argv[1])
    for name, entry in manifest.items():
        state = "skipped: " + entry["notes"] if entry["skipped"] else entry["prefix"]
        print(f"{name}: {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
