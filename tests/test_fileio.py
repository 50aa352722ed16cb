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


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_the_umask_gives(tmp_path, mask, mode):
    """Not mkstemp's private 0600: a teammate on a shared workspace reads checkpoints and reports."""
    import os

    import torch

    from folio import checkpoint

    old = os.umask(mask)
    try:
        write_json(tmp_path / "run.json", {"v": 1})
        checkpoint.save(tmp_path / "best.pt", {"model": {"w": torch.zeros(2)}, "step": 1})
        checkpoint.save_rotating(tmp_path, {"model": {"w": torch.zeros(2)}, "step": 2}, keep=1)
    finally:
        os.umask(old)
    for name in ("run.json", "best.pt", "step-0000002.pt", "last.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


def test_the_file_and_its_directory_are_fsynced_before_they_count(tmp_path, monkeypatch):
    """A power cut after the rename must not leave an empty run.json: the contents reach the disk
    before the rename, the directory entry after it."""
    import os

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_json(tmp_path / "run.json", {"v": 1})
    assert events == [("fsync", "file"), ("replace", "run.json"), ("fsync", "dir")]
