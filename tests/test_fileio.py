"""Atomic writes: the old file survives a failed write, and no temp file is left behind."""

import pytest

from folio.fileio import atomic_path, write_json


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "f.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_write_creates_parent_directories(tmp_path):
    write_json(tmp_path / "a" / "b" / "c.json", [1])
    assert (tmp_path / "a" / "b" / "c.json").exists()
