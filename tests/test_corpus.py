"""The corruption corpus (tests/corpus.py): every reader path on every mutant must end in a clean
ConverterError or the original data, never another exception, a hang or a crash.

The mutants run in one worker process per format, each under a 5 s alarm and a 1.5 GiB address
space cap; a worker that dies is restarted after the mutant it died on, which is reported.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import converter
from converter.cli import main
from tests import corpus


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    originals, mutants = corpus.generate(root)
    results = corpus.run(root, originals, mutants)
    print("\n" + corpus.summary(mutants, results))
    return mutants, results


def test_corpus_is_large_and_deterministic(corpus_run, tmp_path):
    mutants, _ = corpus_run
    assert len(mutants) >= 200
    by_original: dict[str, int] = {}
    for m in mutants:
        by_original[m.original] = by_original.get(m.original, 0) + 1
    assert set(by_original) == set(corpus.GENERATORS)
    assert min(by_original.values()) >= 15, by_original
    _, again = corpus.generate(tmp_path)
    assert corpus.digest(again) == corpus.digest(mutants)


@pytest.mark.parametrize("original", list(corpus.GENERATORS))
def test_mutants_fail_cleanly_or_read_equal(corpus_run, original):
    mutants, results = corpus_run
    mine = [m for m in mutants if m.original == original]
    bad = corpus.failures(mine, results)
    assert not bad, f"{len(bad)} of {len(mine)} mutants misbehave:\n" + "\n".join(bad[:30])
    outcomes = {results[m.id]["outcome"] for m in mine}
    assert "error" in outcomes  # the corpus does damage something


def test_summary_counts_every_mutant(corpus_run, capsys):
    mutants, results = corpus_run
    table = corpus.summary(mutants, results)
    total = table.splitlines()[-2].split()
    assert total[0] == "total" and int(total[1]) == len(mutants)
    assert int(total[1]) == sum(int(x) for x in total[2:])


def test_harness_names_the_mutant_that_crashed_hung_or_ran_out_of_memory(tmp_path):
    def fake(i: int, action: str) -> corpus.Mutant:
        return corpus.Mutant(f"self/{i}", "self", "npy", f"selftest:{action}", {},
                             dir=str(tmp_path), target=str(tmp_path))

    mutants = [fake(0, "ok"), fake(1, "crash"), fake(2, "ok"), fake(3, "hang"),
               fake(4, "memory"), fake(5, "hang-in-c"), fake(6, "ok")]
    results = corpus._run_format("npy", mutants, {}, tmp_path, alarm=0.5, grace=1.0)
    assert [results[m.id]["outcome"] for m in mutants] == [
        "equal", "other", "equal", "other", "other", "other", "equal"]
    assert "worker died (SIGABRT)" in results["self/1"]["problems"][0]
    assert "hang: no answer" in results["self/3"]["problems"][0]
    assert "MemoryError" in results["self/4"]["problems"][0]
    assert "hang: killed" in results["self/5"]["problems"][0]


# --- files that are valid HDF5 but point outside themselves ------------------------------------


@pytest.fixture
def hostile(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(4.0)
    (tmp_path / "raw.bin").write_bytes(np.arange(5.0).tobytes())
    files = {}
    files["link"] = tmp_path / "link.h5"
    with h5py.File(files["link"], "w") as f:
        f["w"] = np.ones(3)
        f["stolen"] = h5py.ExternalLink(str(other), "/x")
    files["storage"] = tmp_path / "storage.h5"
    with h5py.File(files["storage"], "w") as f:
        f.create_dataset("raw", shape=(5,), dtype="f8", external=[("raw.bin", 0, 40)])
    files["virtual"] = tmp_path / "virtual.h5"
    with h5py.File(files["virtual"], "w") as f:
        layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
        layout[:] = h5py.VirtualSource(str(other), "x", shape=(4,))
        f.create_virtual_dataset("vds", layout)
    return files


@pytest.mark.parametrize("kind, what", [("link", "'stolen' is an external link"),
                                        ("storage", "dataset '/raw'"),
                                        ("virtual", "dataset '/vds'")])
def test_hdf5_data_outside_the_file_is_refused(hostile, kind, what, capsys):
    path = hostile[kind]
    with pytest.raises(converter.FormatError) as info:
        converter.read(path)
    message = str(info.value)
    assert str(path) in message and what in message and "\n" not in message
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err
    report = converter.verify(path)
    assert not report.ok and what in report.error


def test_hdf5_data_outside_the_file_is_read_when_allowed(hostile, monkeypatch):
    monkeypatch.chdir(hostile["storage"].parent)  # HDF5 finds relative raw-data files from here
    with converter.read(hostile["link"], allow_external=True) as ckpt:
        assert np.asarray(ckpt["w"]).tolist() == [1, 1, 1]
        assert np.asarray(ckpt["stolen"]).tolist() == [0, 1, 2, 3]
    with converter.read(hostile["storage"], allow_external=True) as ckpt:
        assert np.asarray(ckpt["raw"]).tolist() == [0, 1, 2, 3, 4]
    with converter.read(hostile["virtual"], allow_external=True) as ckpt:
        assert np.asarray(ckpt["vds"]).tolist() == [0, 1, 2, 3]


def test_safetensors_duplicate_names_are_refused(tmp_path):
    path = tmp_path / "dup.safetensors"
    entry = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}'
    header = f'{{"a":{entry},"a":{entry}}}'.encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    with pytest.raises(converter.FormatError, match="'a' appears twice"):
        converter.read(path)


def test_npz_member_crc_is_checked_by_read_and_verify(tmp_path):
    path = tmp_path / "m.npz"
    converter.write({"w": np.arange(100_000, dtype=np.float32)}, path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 1  # inside the data, far past what zipfile reads ahead
    path.write_bytes(bytes(raw))
    with converter.read(path) as ckpt, pytest.raises(converter.CorruptionError, match="CRC-32"):
        ckpt["w"].read()
    report = converter.verify(path)
    assert not report.ok and "CRC" in report.bad[0].error
    assert main(["verify", str(path), "--json"]) == 1


@pytest.mark.parametrize("field, offset, value, numpy_error", [
    # directory says 0 compressed bytes for a stored member
    ("compress_size", 20, "<I", zipfile.BadZipFile),
    ("flag_bits", 8, "<H", NotImplementedError),  # 0x20: "patched data"
])
def test_npz_directory_entries_zipfile_refuses_are_refused(tmp_path, field, offset, value,
                                                           numpy_error):
    # Stored members are read in place; that must not accept what zipfile (and numpy) refuse.
    path = tmp_path / "m.npz"
    np.savez(path, a=np.arange(12, dtype=np.float32))
    raw = bytearray(path.read_bytes())
    entry = raw.rfind(b"PK\x01\x02")
    struct.pack_into(value, raw, entry + offset, 0 if field == "compress_size" else 0x20)
    path.write_bytes(bytes(raw))
    with pytest.raises(numpy_error):  # zipfile's own refusal, through numpy
        np.load(path)["a"]
    with pytest.raises(converter.FormatError):
        with converter.read(path) as ckpt:
            ckpt["a"].read()


def test_damaged_zip_named_keras_or_npz_is_a_format_error(tmp_path):
    for name in ("m.npz", "m.keras"):
        path = tmp_path / name
        converter.write({"w": np.arange(3.0)}, tmp_path / "ok.npz", force=True)
        raw = bytearray((tmp_path / "ok.npz").read_bytes())
        raw[0] ^= 0xFF  # the first local header's signature
        path.write_bytes(bytes(raw))
        with pytest.raises(converter.FormatError):
            converter.read(path)


def test_corpus_script_runs(tmp_path, capsys):
    assert corpus.main([]) == 2
    assert "python -m tests.corpus run" in capsys.readouterr().out
    assert json.loads(json.dumps(corpus._spec(corpus.Mutant("a", "b", "c", "d", {}))))


def test_worker_results_name_files(corpus_run):
    mutants, results = corpus_run
    errors = [results[m.id]["error"] for m in mutants if results[m.id]["outcome"] == "error"]
    assert errors and all(e is None or "\n" not in e for e in errors)
    assert all(Path(m.dir).name in (results[m.id]["error"] or m.dir) for m in mutants)
