"""A tar member that yields no reader is a one-line error naming the archive and the member,
not an assertion (which ``python -O`` strips)."""

from __future__ import annotations

import tarfile

import pytest

from converter.batch.archive import extract
from converter.errors import UsageError


def test_a_member_without_a_reader_is_named(tmp_path, monkeypatch):
    (tmp_path / "m.npz").write_bytes(b"0123")
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(tmp_path / "m.npz", "m.npz")
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, member: None)
    with pytest.raises(UsageError) as info:
        extract(archive, {"m.npz": 4}, tmp_path / "into")
    message = str(info.value)
    assert str(archive) in message and "'m.npz'" in message and "\n" not in message
