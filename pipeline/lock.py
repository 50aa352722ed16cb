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

DDP ranks are covered too (`join_as_rank`, called by every torchrun worker before its stage runs):
- A rank dies with its torchrun: a watchdog thread ends it within POLL seconds once its parent
  is gone (torchrun starts its workers in sessions of their own, so killing the launcher's
  process group, or Ctrl-C, never reaches them). The launcher's own torchrun follows the launcher
  the same way (pipeline/launch.py), so killing `folio train` ends every process it started.
- A rank holds a shared flock on `<lock>.ranks` (and adds a line naming itself there) until it
  exits. A new holder, once it has the lock, must take that file exclusively: it waits up to
  RANKS_WAIT seconds for the ranks of an earlier holder to die, else refuses naming their pids;
  then it empties the file (never deletes it, as with the lock). A holder that is itself a
  torchrun rank (a hand-launched torchrun) lets its own siblings pass.
  On Windows (no shared locks) ranks still die with their torchrun, but are not covered.

Several nodes sharing the project directory (NFS, or two network namespaces on one machine): each
node's first rank calls `hold`, but only one gets the lock. The job is known by what torchrun gives
all its workers and no other live job can have: `<TORCHELASTIC_RUN_ID>@<MASTER_ADDR>:<MASTER_PORT>`
(`job()`; the master port is bound by the job's store while it runs). The holder records it; a rank
of another node finding the lock held by its own job passes through, as do its rank records in
`_check_ranks` (their pids are on another node, so the job, not the parent pid, tells them apart).
Another run — another job, or no torchrun at all — is refused as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
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
AGENT_ENV = "FOLIO_TORCHRUN_PID"  # set by the launcher's torchrun for its ranks: the pid they follow
POLL = 0.2  # seconds between a watchdog's looks at its parent
RANKS_WAIT = 5.0  # seconds a new holder waits for the ranks of an earlier one to die (they take < 1 s)
JOIN_WAIT = 5.0  # seconds a rank of another node waits for its job's holder to write its record

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
    job: str | None = None  # the torchrun job the holder is a rank of (`job()`), else None

    def describe(self) -> str:
        return f"`{self.command}` (pid {self.pid}, started {self.started} on {self.host})"


def job() -> str | None:
    """In a torchrun worker, the job it belongs to: the same in every rank on every node, and no
    other live job's (module docstring); None outside torchrun."""
    if "LOCAL_RANK" not in os.environ or not os.environ.get("MASTER_PORT"):
        return None
    return (f"{os.environ.get('TORCHELASTIC_RUN_ID', 'none')}@{os.environ.get('MASTER_ADDR', '')}"
            f":{os.environ['MASTER_PORT']}")


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
            if (same_job := _holder_of_this_job(fd, holder)) is not None:
                yield same_job  # a rank of this very job on another node holds it
                return
            holder = _read_holder(fd)  # it may have written its record meanwhile
            if holder is None:
                raise WorkspaceBusy("another folio command is running in this workspace (holder unknown); "
                                    f"wait for it to finish, or find it with `lsof {lock_file}`")
            raise WorkspaceBusy(f"another folio command is running in this workspace: {holder.describe()}; "
                                f"wait for it to finish, or stop it (kill {holder.pid})")
        try:
            _check_ranks(lock_file)
            previous = _read_holder(fd)
            if previous is not None and previous.pid != os.getpid() and not _alive(previous.pid):
                log(f"took over the workspace lock left by {previous.describe()}, which is no longer running")
            holder = Holder(os.getpid(), command, time.strftime("%Y-%m-%d %H:%M:%S"), socket.gethostname(),
                            job())
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


def _holder_of_this_job(fd: int, holder: Holder | None) -> Holder | None:
    """The holder, if it is a rank of this process's torchrun job (on another node sharing this
    directory). A holder records itself just after taking the lock, so wait up to JOIN_WAIT for a
    record naming this job (a rank of another job is refused that much later)."""
    this_job = job()
    if this_job is None:
        return None
    deadline = time.monotonic() + JOIN_WAIT
    while True:
        if holder is not None and holder.job == this_job:
            return holder
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL)
        holder = _read_holder(fd)


def ranks_file(lock_file: Path) -> Path:
    """The file every DDP rank holds a shared flock on: `<lock>.ranks`, beside the lock."""
    return Path(lock_file).with_name(Path(lock_file).name + ".ranks")


def join_as_rank(lock_file: Path, command: str) -> None:
    """In a torchrun worker (a no-op elsewhere): die with torchrun, and stay under the workspace
    lock at `lock_file` until this process exits, however it exits (module docstring)."""
    if "LOCAL_RANK" not in os.environ:
        return
    follow_parent(_agent(), f"{command} (rank {os.environ.get('RANK', '?')})")
    if fcntl is None:  # Windows: no shared locks
        return
    path = ranks_file(lock_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Never closed: the OS drops the flock when this process ends. Blocks only for the instant a
    # new holder holds it exclusively.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)
    record = {"pid": os.getpid(), "parent": _agent(), "command": command,
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "host": socket.gethostname(), "job": job()}
    os.write(fd, (json.dumps(record) + "\n").encode())  # one O_APPEND write: lines never interleave


def follow_parent(parent: int, name: str) -> None:
    """End this process (os._exit, as abrupt as SIGKILL) within POLL seconds of `parent` dying.
    A daemon thread watches: the parent pid changes when the parent dies (Linux, macOS), and the
    parent stops being alive (Windows, where the parent pid never changes)."""
    def watch() -> None:
        while os.getppid() == parent and _alive(parent):
            time.sleep(POLL)
        with contextlib.suppress(OSError):  # the terminal may have gone with the parent
            os.write(2, f"error: {name}: its parent process (pid {parent}) is gone, so this one "
                        f"(pid {os.getpid()}) stops; rerun the command to resume from the last checkpoint\n".encode())
        os._exit(1)

    threading.Thread(target=watch, name="folio-follow-parent", daemon=True).start()


def _agent() -> int:
    """The torchrun this worker follows: the launcher's (which says so) or its parent."""
    return int(os.environ.get(AGENT_ENV) or os.getppid())


def _check_ranks(lock_file: Path) -> None:
    """Just after taking the lock: refuse while DDP ranks of an earlier holder still run (waiting
    RANKS_WAIT seconds for dying ones). Their records are dropped once none runs."""
    if fcntl is None:
        return
    path = ranks_file(lock_file)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + RANKS_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                running = _running_ranks(fd)
                if "LOCAL_RANK" in os.environ:
                    # A hand-launched torchrun's local rank 0 holds the lock while its siblings (and
                    # itself) already hold shared flocks: only ranks of another torchrun count. Here
                    # the records decide, so a stale one whose pid was reused could make it wait
                    # and refuse; any holder outside torchrun empties them, so few ever go stale.
                    # Ranks of this job on other nodes (sharing this directory) pass too.
                    running = [r for r in running if r["pid"] != os.getpid() and r["parent"] != _agent()
                               and (r["job"] is None or r["job"] != job())]
                    if not running:
                        return
                if time.monotonic() < deadline:
                    time.sleep(POLL)
                    continue
                pids = sorted({r["pid"] for r in running})
                if not pids:
                    raise WorkspaceBusy("processes of an earlier folio command still hold "
                                        f"{path}; wait for them to end, or find them with `lsof {path}`")
                commands = ", ".join(sorted({f"`{r['command']}`" for r in running}))
                raise WorkspaceBusy(f"DDP ranks of an earlier {commands} still run in this workspace "
                                    f"(pid {', '.join(map(str, pids))}); wait for them to end, or stop them "
                                    f"(kill {' '.join(map(str, pids))})")
            os.ftruncate(fd, 0)  # every rank recorded there has ended
            return  # closing the file releases the exclusive flock: this holder's ranks can join
    finally:
        os.close(fd)


def _running_ranks(fd: int) -> list[dict]:
    """The records in the ranks file whose process is still alive (unreadable lines are skipped)."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    running = []
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            record = json.loads(line)
            record = {"pid": int(record["pid"]), "parent": int(record["parent"]),
                      "command": str(record["command"]), "job": record.get("job")}
            if _alive(record["pid"]):
                running.append(record)
    return running


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
        holder = Holder(int(data["pid"]), str(data["command"]), str(data["started"]), str(data["host"]),
                        data.get("job"))
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
