"""Atomic writes: a reader sees the old file or the whole new one, never a part, and a failed
write leaves nothing behind."""

import pytest

from workbench.plumbing.files import write_atomic


def test_text_bytes_and_writers_land_whole_in_made_folders(tmp_path):
    assert write_atomic(tmp_path / "a" / "b" / "t.txt", "héllo") == tmp_path / "a" / "b" / "t.txt"
    assert (tmp_path / "a" / "b" / "t.txt").read_text() == "héllo"
    write_atomic(tmp_path / "b.bin", b"\0\1")
    assert (tmp_path / "b.bin").read_bytes() == b"\0\1"
    write_atomic(tmp_path / "w.txt", lambda f: f.write(b"written by a function"))
    assert (tmp_path / "w.txt").read_text() == "written by a function"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["b.bin", "t.txt", "w.txt"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = write_atomic(tmp_path / "record.json", "old")

    def half_then_fail(f):
        f.write(b"new but unfin")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half_then_fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_the_temporary_is_renamed_over_the_old_file(tmp_path):
    path = write_atomic(tmp_path / "x", "one")
    inode = path.stat().st_ino
    write_atomic(path, "two")
    assert path.read_text() == "two" and path.stat().st_ino != inode        # replaced, not rewritten in place
