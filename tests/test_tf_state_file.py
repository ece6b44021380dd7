"""The ``checkpoint`` state file: one reader and writer that TensorFlow agrees with, and the
prefix it names resolved in runs copied from another machine or pointing elsewhere."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import converter
from converter.errors import ConverterWarning, FormatError
from tests.helpers import assert_same


def read_state(directory: Path):
    from converter.formats.tfbundle.layout import read_state

    return read_state(directory)


NAMES = ['we"ird\\name-é€.ckpt', "plain.ckpt", "back\\\\slash\\\"quote'.ckpt"]


def _save_three_times(directory: Path, name: str) -> None:
    data = {"w": np.arange(3, dtype=np.float32)}
    for _ in range(3):
        converter.write(data, directory / name, force=True)


@pytest.mark.parametrize("name", NAMES)
def test_any_prefix_name_survives_repeated_saves(tmp_path, name):
    _save_three_times(tmp_path, name)
    state = read_state(tmp_path)
    assert state.latest == name
    assert state.paths == [name]
    with converter.read(tmp_path) as ckpt:  # the reader follows the same state file
        assert Path(ckpt.source.path).name == name


def test_saves_of_two_prefixes_keep_both_once(tmp_path):
    data = {"w": np.zeros(2, np.float32)}
    for name in ["a.ckpt-1", NAMES[0], "a.ckpt-1", NAMES[0]]:
        converter.write(data, tmp_path / name, format="tf", force=True)
    state = read_state(tmp_path)
    assert (state.latest, state.paths) == (NAMES[0], ["a.ckpt-1", NAMES[0]])


def test_text_format_escapes_as_tensorflow_reads_them(tmp_path):
    from converter.formats.tfbundle.layout import format_state, parse_state

    text = ('model_checkpoint_path: "oct\\303\\251-hex\\x41-\\"q\\"-\\\\-\\t"\n'
            "all_model_checkpoint_paths: 'single' \"-joined\"\n"
            "all_model_checkpoint_timestamps: 1700000000.25\n"
            "last_preserved_timestamp: 5\n"
            "some_future_field: 3\n")
    state = parse_state(text, "checkpoint")
    assert state.latest == 'octé-hexA-"q"-\\-\t'
    assert state.paths == ["single-joined"]
    assert (state.timestamps, state.last_preserved) == ([1700000000.25], 5.0)
    assert parse_state(format_state(state), "checkpoint") == state


def test_unparsable_state_file_is_ignored_with_a_warning(tmp_path):
    converter.write({"w": np.zeros(2, np.float32)}, tmp_path / "m.ckpt-3", format="tf",
                    state_file=False)
    (tmp_path / "checkpoint").write_text("model_checkpoint_path: \"unterminated\n")
    with pytest.warns(ConverterWarning, match="line 1"):
        with converter.read(tmp_path) as ckpt:
            assert Path(ckpt.source.path).name == "m.ckpt-3"


def test_tensorflow_reads_our_state_file(tf, tmp_path):
    for name in NAMES:
        _save_three_times(tmp_path, name)
    state = tf.train.get_checkpoint_state(str(tmp_path))
    assert state.model_checkpoint_path == str(tmp_path / NAMES[-1])
    assert list(state.all_model_checkpoint_paths) == [str(tmp_path / n) for n in NAMES]
    # latest_checkpoint also checks that PREFIX.index exists, through TF's glob matching.
    _save_three_times(tmp_path, "quote\"and'é€.ckpt")
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "quote\"and'é€.ckpt")
    assert_same(tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path))).get_tensor(
        "w"), np.arange(3, dtype=np.float32))


def test_we_read_and_keep_tensorflow_state_files(tf, tmp_path):
    from tensorflow.python.checkpoint import checkpoint_management

    names = [str(tmp_path / n) for n in NAMES]
    checkpoint_management.update_checkpoint_state_internal(
        str(tmp_path), names[-1], names, all_model_checkpoint_timestamps=[1.5, 2.5, 3.5],
        last_preserved_timestamp=0.5)
    state = read_state(tmp_path)
    assert (state.latest, state.paths) == (names[-1], names)
    assert (state.timestamps, state.last_preserved) == ([1.5, 2.5, 3.5], 0.5)
    converter.write({"w": np.zeros(2, np.float32)}, tmp_path / "new.ckpt")
    back = tf.train.get_checkpoint_state(str(tmp_path))
    assert list(back.all_model_checkpoint_paths) == names + [str(tmp_path / "new.ckpt")]
    assert list(back.all_model_checkpoint_timestamps)[:3] == [1.5, 2.5, 3.5]
    assert len(back.all_model_checkpoint_timestamps) == 4
    assert back.last_preserved_timestamp == 0.5
    # Saving a prefix TF listed by its absolute path moves it to the end, listed once.
    converter.write({"w": np.zeros(2, np.float32)}, Path(names[0]), format="tf", force=True)
    back = tf.train.get_checkpoint_state(str(tmp_path))
    assert list(back.all_model_checkpoint_paths) == names[1:] + [str(tmp_path / "new.ckpt"),
                                                                 names[0]]
    assert list(back.all_model_checkpoint_timestamps)[:2] == [2.5, 3.5]


def test_a_prefix_listed_by_its_absolute_path_is_listed_once_when_saved_by_a_relative_one(
        tmp_path, monkeypatch):
    # TF1's Saver records absolute paths; the same prefix saved again through a path relative
    # to the working directory is the same prefix.
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint").write_text(f'model_checkpoint_path: "{run}/a.ckpt"\n'
                                    f'all_model_checkpoint_paths: "{run}/a.ckpt"\n'
                                    f'all_model_checkpoint_paths: "{run}/b.ckpt"\n')
    monkeypatch.chdir(tmp_path)
    converter.write({"w": np.zeros(2, np.float32)}, "run/a.ckpt", format="tf")
    state = read_state(run)
    assert (state.latest, state.paths) == ("a.ckpt", [f"{run}/b.ckpt", "a.ckpt"])


# --------------------------------------------------------------------------- resolution


def _copied(fixture: dict, tmp_path: Path, state_text: str) -> Path:
    run = tmp_path / "run"
    prefix = Path(fixture["prefix"])
    shutil.copytree(prefix if prefix.is_dir() else prefix.parent, run)
    (run / "checkpoint").write_text(state_text)
    return run


def _expected(fixture: dict) -> dict:
    with open(fixture["expected"], "rb") as f:
        return pickle.load(f)


def _read_warnings(path: Path) -> tuple[dict, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with converter.read(path) as ckpt:
            values = {name: ckpt[name].read() for name in ckpt}
    return values, [str(w.message) for w in caught if issubclass(w.category, ConverterWarning)]


def test_empty_basename_from_another_machine(tf_fixtures, tmp_path):
    fixture = tf_fixtures["tf1_empty_basename"]
    run = _copied(fixture, tmp_path, 'model_checkpoint_path: "/home/x/run/"\n'
                                     'all_model_checkpoint_paths: "/home/x/run/"\n')
    values, said = _read_warnings(run)
    assert len(said) == 1 and "/home/x/run/" in said[0] and "does not exist" in said[0]
    assert sorted(values) == sorted(_expected(fixture))
    for name, value in _expected(fixture).items():
        assert_same(values[name], value, name)
    # The CLI says it in one line.
    result = subprocess.run([sys.executable, "-m", "converter", "inspect", str(run)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if line] == [f"ckpt: warning: {said[0]}"]


def test_empty_basename_named_directly(tf_fixtures):
    fixture = tf_fixtures["tf1_empty_basename"]
    directory = Path(fixture["prefix"])
    for path in (directory, directory / ".index", directory / ".data-00000-of-00001"):
        values, said = _read_warnings(path)
        assert said == []
        for name, value in _expected(fixture).items():
            assert_same(values[name], value, name)


def test_v1_directory_from_another_machine(tf_fixtures, tf, tmp_path):
    fixture = tf_fixtures["tf1_v1_dir"]
    run = _copied(fixture, tmp_path, 'model_checkpoint_path: "/home/x/run/model.ckpt"\n')
    values, said = _read_warnings(run)
    assert len(said) == 1 and "/home/x/run/model.ckpt" in said[0]
    for name, value in _expected(fixture).items():
        assert_same(values[name], value, name)
    (run / "checkpoint").unlink()  # no state file: the V1 file is still found
    values, said = _read_warnings(run)
    assert said == [] and sorted(values) == sorted(_expected(fixture))


def test_v1_data_tensorflow_cannot_find_is_one_line(tf_fixtures, tf, tmp_path, capsys):
    src = Path(tf_fixtures["tf1_v1_dir"]["prefix"])
    damaged = tmp_path / "model.ckpt"
    raw = bytearray(src.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside "big": TF opens the file, then cannot find its data
    damaged.write_bytes(bytes(raw))
    with converter.read(damaged) as ckpt:
        with pytest.raises(FormatError) as info:
            ckpt["big"].read()
    message = str(info.value)
    assert str(damaged) in message and "'big'" in message and "\n" not in message
    from converter.cli import main

    assert main(["convert", str(damaged), str(tmp_path / "out.npz")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"ckpt: error: {message}"]


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_state_file_pointing_outside_is_followed_with_a_warning(tmp_path, how):
    other = tmp_path / "other"
    other.mkdir()
    converter.write({"w": np.arange(4, dtype=np.int32)}, other / "model.ckpt")
    run = tmp_path / "run"
    run.mkdir()
    target = "../other/model.ckpt" if how == "relative" else str(other / "model.ckpt")
    (run / "checkpoint").write_text(f'model_checkpoint_path: "{target}"\n')
    values, said = _read_warnings(run)
    assert len(said) == 1 and target in said[0] and "outside" in said[0]
    assert_same(values["w"], np.arange(4, dtype=np.int32))


def test_state_file_naming_nothing_is_one_error(tmp_path):
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "/home/x/gone.ckpt"\n')
    with pytest.raises(FormatError, match="gone.ckpt"):
        converter.read(tmp_path)
