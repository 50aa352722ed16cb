"""One run per workspace: the lock a `folio` stage command holds while it runs.

A second `folio train` (or any stage) started in the same project directory must not write the
same checkpoints, reports and MLflow run as the first: it refuses at once, naming the holder.

The lock is `flock(LOCK_EX | LOCK_NB)` on a lock file (`msvcrt.locking` on Windows). The OS owns
it and releases it when the holding process dies however it dies — SIGKILL, OOM, a power cut —
so a stale lock cannot exist: a lock left by a dead process is simply free, and the next command
takes it over (and says so, when the file still names the dead holder).

The file's content is only information for the refusal message: the holder's pid, command, start
time and host, as JSON, written after the lock is acquired and emptied before it is released. The
file itself is never deleted: unlinking a file other processes may be flock'ing lets two of them
lock two different files of the same name.

Inside one process a nested `hold` on the same file is a no-op (a second flock on a new file
descriptor would refuse its own process). Workers started by the holder (torchrun) get
`child_env(holder)` in their environment — FOLIO_LOCK_HELD=<holder pid> — and pass through while
that pid holds the lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from pipeline.errors import StageError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

HELD_ENV = "FOLIO_LOCK_HELD"  # set by the holder for its children: "my parent, <pid>, holds the lock"

# Windows locks are mandatory byte ranges: lock one byte far past the JSON so others can still read it.
_WIN_LOCK_OFFSET = 1 << 30


class WorkspaceBusy(StageError):
    """Another folio command holds this workspace's lock."""


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str
    started: str  # local time, "%Y-%m-%d %H:%M:%S"
    host: str

    def describe(self) -> str:
        return f"`{self.command}` (pid {self.pid}, started {self.started} on {self.host})"


_held: dict[Path, Holder] = {}  # lock files this process holds (resolved path -> holder)


def held(lock_file: Path) -> Holder | None:
    """The holder of `lock_file` if this process holds it, else None."""
    return _held.get(Path(lock_file).resolve())


def child_env(holder: Holder | None) -> dict[str, str]:
    """The environment entries that let a child of the holder (a torchrun worker) pass through `hold`."""
    return {HELD_ENV: str(holder.pid)} if holder is not None else {}


@contextlib.contextmanager
def hold(lock_file: Path, command: str, log: Callable[[str], None] = print) -> Iterator[Holder]:
    """Hold the workspace lock at `lock_file` (its parent directory is created) while the block runs."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    key = lock_file.resolve()
    if key in _held:  # nested: this process already holds it
        yield _held[key]
        return

    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: the holder's info must survive
    try:
        if not _try_lock(fd):
            holder = _read_holder(fd)
            if holder is not None and os.environ.get(HELD_ENV) == str(holder.pid) and _alive(holder.pid):
                yield holder  # our parent holds it for us
                return
            if holder is None:
                raise WorkspaceBusy("another folio command is running in this workspace (holder unknown); "
                                    f"wait for it to finish, or find it with `lsof {lock_file}`")
            raise WorkspaceBusy(f"another folio command is running in this workspace: {holder.describe()}; "
                                f"wait for it to finish, or stop it (kill {holder.pid})")
        try:
            previous = _read_holder(fd)
            if previous is not None and previous.pid != os.getpid() and not _alive(previous.pid):
                log(f"took over the workspace lock left by {previous.describe()}, which is no longer running")
            holder = Holder(os.getpid(), command, time.strftime("%Y-%m-%d %H:%M:%S"), socket.gethostname())
            _write(fd, json.dumps(asdict(holder)) + "\n")
            _held[key] = holder
            try:
                yield holder
            finally:
                del _held[key]
                _write(fd, "")  # no stale holder info once released
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _read_holder(fd: int) -> Holder | None:
    """The holder recorded in the file, or None if it is empty or unreadable (e.g. mid-write)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 1 << 16))
        holder = Holder(int(data["pid"]), str(data["command"]), str(data["started"]), str(data["host"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return holder


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode())
    os.fsync(fd)


def _alive(pid: int) -> bool:
    if pid <= 0:  # os.kill(0, ...) would signal our own process group
        return False
    if sys.platform == "win32":  # there os.kill(pid, 0) would terminate the process
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel32.GetLastError() == 5  # ERROR_ACCESS_DENIED: exists, not ours
        code = ctypes.c_ulong()
        ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return bool(ok) and code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True
