"""Fuzz targets for the parsers that read untrusted bytes: the TF index table, protocol-buffer
decoding (bundle entries, shapes, slices, the TF2 object graph), the safetensors header and the
.npy header, plus whole files of each format mutated from valid ones.

Every target must return a result or raise a ``ConverterError``; any other exception is a bug.
They run briefly in CI; ``CONVERTER_FUZZ_EXAMPLES=20000`` (or ``scripts/fuzz.sh``) runs them
long. With atheris installed, ``python -m tests.test_fuzz TARGET [libFuzzer flags]`` fuzzes one
target with coverage guidance (``python -m tests.test_fuzz`` lists them).
"""

from __future__ import annotations

import atexit
import io
import json
import os
import shutil
import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

import converter
from converter import proto
from converter.formats import _npyfmt, safetensors
from converter.formats.tfbundle import entry, objgraph, strings, table

EXAMPLES = int(os.environ.get("CONVERTER_FUZZ_EXAMPLES", "150"))
LONG = "CONVERTER_FUZZ_EXAMPLES" in os.environ

# --- valid inputs to mutate ------------------------------------------------------------------

ENTRY = entry.encode_entry(1, (4, 5), 0, 96, 80, 0x12345678)
STRING_ENTRY = entry.encode_entry(7, (3,), 0, 16, 11, 0xCAFE)
SHAPE = proto.encode_shape((2, 0, 7, 2**40))
SLICE = proto.encode([(1, proto.encode([(1, 3), (2, 5)])), (1, b"")])
PARTITIONED = proto.encode([(1, 1), (2, proto.encode_shape((6, 4))), (7, SLICE)])
HEADER = proto.encode([(1, 1), (3, proto.encode([(1, 1)]))])
GRAPH = objgraph.build(
    ["model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE",
     "model/dense/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE",
     "save_counter/.ATTRIBUTES/VARIABLE_VALUE"], {})
TABLE = table.build_table([(b"", HEADER), (b"a/b", ENTRY), (b"a/c", STRING_ENTRY),
                           (b"z" * 40, ENTRY)])
SMALL_BLOCKS = table.TableWriter(block_size=64)
for _key, _value in [(b"", HEADER)] + [(f"t{i:03d}".encode(), ENTRY) for i in range(12)]:
    SMALL_BLOCKS.add(_key, _value)
TABLE_MULTIBLOCK = SMALL_BLOCKS.finish()
NPY_HEADER = _npyfmt.header(np.dtype("<f4"), (4, 5))
SAMPLE = {"w": np.arange(20, dtype=np.float32).reshape(4, 5), "b": np.arange(3, dtype=np.int64),
          "s": np.array([b"ab", b"", b"xyz"], dtype=object)}
WORK = Path(tempfile.mkdtemp(prefix="converter-fuzz-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)


def _valid_file(fmt: str, name: str) -> bytes:
    path = WORK / "valid" / fmt / name
    if not (path.with_name(name + ".index") if fmt == "tf" else path).exists():
        data = {k: v for k, v in SAMPLE.items() if fmt != "safetensors" or k != "s"}
        if fmt == "npy":
            data = {"w": SAMPLE["w"]}
        converter.write(data, path)
    if fmt == "tf":
        return path.with_name(name + ".index").read_bytes()
    return path.read_bytes()


# --- the targets: bytes in, a result or a ConverterError out ----------------------------------


def target_table(data: bytes) -> None:
    table.read_table(data, "fuzz.index", verify=False)
    table.read_table(data, "fuzz.index", verify=True)


def target_proto(data: bytes) -> None:
    proto.decode(data)


def target_entry(data: bytes) -> None:
    entry.decode_entry(data)


def target_shape(data: bytes) -> None:
    proto.decode_shape(data)


def target_slice(data: bytes) -> None:
    entry.decode_slice(data)


def target_objgraph(data: bytes) -> None:
    objgraph.classify(objgraph.parse(data))


def target_npy_header(data: bytes) -> None:
    _npyfmt.read_header(io.BytesIO(data), "fuzz.npy")


def _read_all(path: Path, fmt: str) -> None:
    with converter.read(path, format=fmt) as ckpt:
        for tensor in ckpt.values():
            tensor.read()
    report = converter.verify(path, format=fmt)
    assert report.error is not None or report.tensors is not None


def target_safetensors(data: bytes) -> None:
    path = WORK / "fuzz.safetensors"
    path.write_bytes(data)
    with safetensors.read(path) as ckpt:
        for tensor in ckpt.values():
            tensor.read()


def _file_target(fmt: str, name: str) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        d = WORK / "file" / fmt
        if fmt == "tf":
            if not d.exists():
                converter.write(SAMPLE, d / "m.ckpt")
            (d / "m.ckpt.index").write_bytes(data)
            _read_all(d / "m.ckpt", fmt)
        else:
            d.mkdir(parents=True, exist_ok=True)
            (d / name).write_bytes(data)
            _read_all(d / name, fmt)

    return target


TARGETS: dict[str, tuple[Callable[[bytes], None], Callable[[], bytes]]] = {
    "table": (target_table, lambda: TABLE),
    "proto": (target_proto, lambda: ENTRY),
    "entry": (target_entry, lambda: ENTRY),
    "shape": (target_shape, lambda: SHAPE),
    "slice": (target_slice, lambda: SLICE),
    "objgraph": (target_objgraph, lambda: GRAPH),
    "npy-header": (target_npy_header, lambda: NPY_HEADER + b"\0" * 80),
    "safetensors": (target_safetensors, lambda: _valid_file("safetensors", "m.safetensors")),
    "tf-index-file": (_file_target("tf", "m.ckpt"), lambda: _valid_file("tf", "m.ckpt")),
    "npz-file": (_file_target("npz", "m.npz"), lambda: _valid_file("npz", "m.npz")),
    "npy-file": (_file_target("npy", "w.npy"), lambda: _valid_file("npy", "w.npy")),
    "hdf5-file": (_file_target("hdf5", "m.h5"), lambda: _valid_file("hdf5", "m.h5")),
}


def run_target(name: str, data: bytes) -> None:
    """Run a target; anything but a ConverterError propagates (and is the bug)."""
    try:
        TARGETS[name][0](data)
    except converter.ConverterError as exc:
        message = str(exc)
        assert "\n" not in message, f"multi-line error: {message!r}"


# --- hypothesis -------------------------------------------------------------------------------

if __name__ != "__main__":
    import pytest
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not LONG,
                    suppress_health_check=list(HealthCheck), print_blob=True)
    HUGE = [0, 1, 0x7F, 0x80, 0xFF, 2**31, 2**32 - 1, 2**32, 2**62, 2**63, 2**64 - 1]

    @st.composite
    def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
        """``seed`` after a few edits: bit flips, bytes set to edge values, truncation,
        insertion, deletion, and a huge varint or little-endian integer written over it."""
        data = bytearray(seed)
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["flip", "byte", "cut", "insert", "delete", "varint",
                                       "u32", "u64"]))
            pos = draw(st.integers(0, max(len(data) - 1, 0)))
            if op == "flip" and data:
                data[pos] ^= 1 << draw(st.integers(0, 7))
            elif op == "byte" and data:
                data[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
            elif op == "cut":
                del data[pos:]
            elif op == "insert":
                data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
            elif op == "delete":
                del data[pos:pos + draw(st.integers(1, 16))]
            elif op == "varint":
                data[pos:pos + 1] = proto.varint(draw(st.sampled_from(HUGE)) or -1)
            else:
                fmt, top = ("<I", 2**32 - 1) if op == "u32" else ("<Q", 2**64 - 1)
                value = min(draw(st.sampled_from(HUGE)), top)
                data[pos:pos + struct.calcsize(fmt)] = struct.pack(fmt, value)
        return bytes(data)

    NAMES = list(TARGETS)

    @pytest.mark.parametrize("name", NAMES)
    @FUZZ
    @given(data=st.data())
    def test_mutations_of_valid_input(name, data):
        run_target(name, data.draw(mutated(TARGETS[name][1]())))

    @pytest.mark.parametrize("name", ["table", "proto", "entry", "shape", "slice", "objgraph",
                                      "npy-header", "safetensors"])
    @FUZZ
    @given(raw=st.binary(max_size=512))
    def test_arbitrary_bytes(name, raw):
        run_target(name, raw)

    def test_valid_inputs_parse():
        for target, seed in TARGETS.values():
            target(seed())  # no error at all on the unmutated input
        assert table.read_table(TABLE_MULTIBLOCK, "x")[-1][0] == b"t011"

    def _outcome(decode: Callable[[bytes], object], raw: bytes) -> object:
        try:
            return decode(raw)
        except converter.ConverterError as exc:
            return type(exc), str(exc)

    ENTRY_FIELDS = st.tuples(
        st.sampled_from([1, 2, 7, 9, 14, 0x7F]), st.lists(st.integers(0, 2**40), max_size=4),
        st.sampled_from([0, 1, 3]), st.sampled_from(HUGE), st.sampled_from(HUGE),
        st.integers(0, 2**32 - 1))

    @FUZZ
    @given(fields=ENTRY_FIELDS, data=st.data())
    def test_entry_fast_path_agrees(fields, data):
        # The one-pass reader of TF's own layout must give what the general one gives, on
        # entries as TF writes them and on mutations of them (where it may decline).
        dt, shape, shard, offset, size, crc = fields
        raw = entry.encode_entry(dt, tuple(shape), shard, offset, size, crc)
        # The writer's spelled-out encoding is the generic encoder's.
        assert raw == proto.encode([(1, dt), (2, proto.encode_shape(tuple(shape)))]
                                   + [(n, v) for n, v in ((3, shard), (4, offset), (5, size)) if v]
                                   + [(6, ("fixed32", crc))])
        entry._shapes[proto.encode_shape(tuple(shape))] = tuple(shape)  # seen before
        fast = entry.as_written(raw)
        # A location past int64 (negative, as TF reads it) is left to the general reader,
        # whose caller refuses it.
        assert (fast is None) == bool((offset | size) >> 63)
        assert fast is None or fast == entry._entry_any_layout(raw)
        raw = data.draw(mutated(raw))
        fast = _outcome(entry.as_written, raw)
        if fast is not None:
            assert fast == _outcome(entry._entry_any_layout, raw)

    @FUZZ
    @given(value=st.binary(max_size=300), data=st.data(), verify=st.booleans())
    def test_a_scalar_string_reads_as_the_general_string_reader_reads_it(value, data, verify):
        # The object graph is read without numpy; TF's layout and mutations of it must give
        # what the general reader gives: the same bytes or the same error.
        out = io.BytesIO()
        _, crc = strings.write_strings(out, np.array(value, dtype=object), "g")
        raw = data.draw(mutated(out.getvalue())) if data.draw(st.booleans()) else out.getvalue()

        def general(raw: bytes) -> bytes:
            return strings.read_strings(raw, 0, len(raw), (), crc, "g", verify).reshape(-1)[0]

        scalar = _outcome(lambda r: strings.read_scalar_string(r, 0, len(r), crc, "g", verify),
                          raw)
        assert scalar == _outcome(general, raw)
        if raw == out.getvalue():
            assert scalar == value

    @FUZZ
    @given(names=st.lists(st.text(max_size=12), unique=True, max_size=6),
           metadata=st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3),
           shapes=st.lists(st.lists(st.integers(0, 3), max_size=3), min_size=6, max_size=6))
    def test_safetensors_header_is_the_json_of_the_dict(names, metadata, shapes):
        names = [n for n in names if n != "__metadata__"]
        tensors = [converter.Tensor.from_array(n, np.zeros(shape, np.float32))
                   for n, shape in zip(names, shapes[:len(names)], strict=True)]
        header: dict = {"__metadata__": metadata} if metadata else {}
        offset = 0
        for t in tensors:
            header[t.name] = {"dtype": "F32", "shape": list(t.shape),
                              "data_offsets": [offset, offset + t.nbytes]}
            offset += t.nbytes
        try:
            expected = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        except UnicodeEncodeError:  # lone surrogates: neither can be written
            return
        raw = safetensors.header_for(tensors, metadata, Path("x.safetensors"))
        assert raw[8:].rstrip(b" ") == expected
        assert struct.unpack("<Q", raw[:8])[0] == len(raw) - 8 and len(raw) % 8 == 0

    @FUZZ
    @given(raw=mutated(TABLE_MULTIBLOCK))
    def test_multiblock_table(raw):
        run_target("table", raw)

    @FUZZ
    @given(rows=st.dictionaries(st.binary(max_size=20), st.binary(max_size=40), max_size=30),
           block_size=st.integers(16, 512))
    def test_table_round_trip(rows, block_size):
        writer = table.TableWriter(block_size=block_size)
        for key, value in sorted(rows.items()):
            writer.add(key, value)
        assert table.read_table(writer.finish(), "x") == sorted(rows.items())

    SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
               | st.text(max_size=8))
    def _containers(inner: st.SearchStrategy) -> st.SearchStrategy:
        return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                             max_size=4)

    JSON = st.recursive(SCALARS, _containers, max_leaves=12)
    ENTRIES = st.fixed_dictionaries({}, optional={
        "dtype": st.sampled_from(sorted(safetensors.CODES)) | JSON,
        "shape": st.lists(st.integers(-2, 2**64) | st.sampled_from([0, 1, 2, 3]), max_size=4)
        | JSON,
        "data_offsets": st.lists(st.integers(-8, 2**64) | st.sampled_from([0, 4, 8, 12]),
                                 min_size=0, max_size=3) | JSON,
    })

    @FUZZ
    @given(header=st.dictionaries(st.text(max_size=6), ENTRIES | JSON, max_size=5),
           metadata=st.none() | JSON, data=st.binary(max_size=64), pad=st.booleans())
    def test_safetensors_headers(header, metadata, data, pad):
        if metadata is not None:
            header = {**header, "__metadata__": metadata}
        raw = json.dumps(header).encode("utf-8", "surrogatepass")
        if pad:
            raw += b" " * (-len(raw) % 8)
        run_target("safetensors", struct.pack("<Q", len(raw)) + raw + data)

    @FUZZ
    @given(descr=st.sampled_from(["<f4", ">f8", "|u1", "<c16", "|b1", "|O", "<U3", "|V2", "<M8"])
           | JSON, fortran=st.booleans() | JSON,
           shape=st.lists(st.integers(-2, 2**64), max_size=5).map(tuple) | JSON,
           version=st.sampled_from([1, 2, 3, 0, 4]), extra=st.binary(max_size=64))
    def test_npy_headers(descr, fortran, shape, version, extra):
        text = repr({"descr": descr, "fortran_order": fortran, "shape": shape}).encode() + b"\n"
        length = struct.pack("<H" if version == 1 else "<I", len(text))
        run_target("npy-header", _npyfmt.MAGIC + bytes([version, 0]) + length + text + extra)


# --- atheris ------------------------------------------------------------------------------------


def _atheris(argv: list[str]) -> int:
    if argv[1:] == ["--list"]:
        print("\n".join(TARGETS))
        return 0
    if len(argv) < 2 or argv[1] not in TARGETS:
        print(__doc__)
        print("targets:", " ".join(TARGETS))
        return 2
    import atheris

    name = argv[1]
    seed = TARGETS[name][1]()
    corpus_dir = WORK / f"atheris-{name}"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    (corpus_dir / "seed").write_bytes(seed)
    atheris.instrument_all()
    atheris.Setup([argv[0], *argv[2:], str(corpus_dir)], lambda data: run_target(name, data))
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(_atheris(sys.argv))
