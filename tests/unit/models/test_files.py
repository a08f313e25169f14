import os

import pytest

from models import files
from models.files import atomic_write


def test_a_failed_write_leaves_the_old_file_whole_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "labels.csv"
    atomic_write(path, "file,label,pin\na.png,OK,0\n")

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        atomic_write(path, "file,label,pin\n", fsync=True)
    assert path.read_text() == "file,label,pin\na.png,OK,0\n"
    assert os.listdir(tmp_path) == ["labels.csv"]


def test_bytes_and_text_with_newlines_kept(tmp_path):
    atomic_write(tmp_path / "sub" / "a.bin", b"\x00\x01")
    atomic_write(tmp_path / "b.csv", "x\r\ny\r\n", newline="")
    assert (tmp_path / "sub" / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.csv").read_bytes() == b"x\r\ny\r\n"
