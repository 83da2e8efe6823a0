"""sepbn.io: files appear under their final name only once completely written."""

import pytest

from sepbn.io import atomic_open, atomic_path, atomic_write_bytes, atomic_write_text


def test_written_file_appears_complete(tmp_path):
    p = atomic_write_text(tmp_path / "sub" / "a.txt", "hello\n")
    assert p.read_text() == "hello\n" and [f.name for f in p.parent.iterdir()] == ["a.txt"]
    atomic_write_bytes(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"


def test_failure_keeps_the_previous_version_and_leaves_no_temporary(tmp_path):
    p = atomic_write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_open(p) as f:
            f.write("half of the new")
            raise RuntimeError("killed")
    assert p.read_text() == "old" and [f.name for f in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_path_for_writers_that_want_a_name(tmp_path):
    dest = tmp_path / "m.bin"
    with atomic_path(dest) as tmp:
        assert tmp.parent == tmp_path and tmp != dest and not dest.exists()
        tmp.write_bytes(b"abc")
    assert dest.read_bytes() == b"abc" and not tmp.exists()


def test_append_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "x", "a"):
            pass
