"""Atomic, durable file writes: a reader sees the old file or the new one, never half of one, and
a file that counts (a checkpoint, run.json, meta.json, metrics.json) survives a power cut.

`atomic_path` writes beside the target and renames over it only when the block succeeds. The new
file gets the mode a plain `open()` would give it (0666 less the umask: 0644 under umask 022), not
mkstemp's private 0600, so a teammate on a shared workspace can read it; its contents are fsynced
before the rename and its directory after, so the rename itself survives a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator


def umask() -> int:
    """The process's umask. Linux tells it in /proc; elsewhere it can only be read by setting it
    (set back at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's or a directory's contents to the disk (a directory: the names in it).
    Directories cannot be opened for this on Windows, where a rename is durable already."""
    path = Path(path)
    if path.is_dir() and os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; the block writes it, then it is fsynced and renamed
    over `path` (and the directory fsynced), only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        os.chmod(tmp, 0o666 & ~umask())
        yield tmp
        if tmp.exists():  # a writer may have replaced it by a link (checkpoint.save_rotating)
            fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
