"""pipeline/lock.py, with real separate processes: a second command is refused at once naming the
holder (and does not wipe the holder's info), a SIGKILLed holder's lock is taken over with one log
line, a normal exit leaves an empty file and a free lock, a nested `hold` in one process does not
refuse itself, and FOLIO_LOCK_HELD lets the holder's children (only them) pass through."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.lock import HELD_ENV, Holder, WorkspaceBusy, child_env, hold

ROOT = Path(__file__).resolve().parents[1]

# Holds the lock, says "held <pid>", then sleeps until killed.
HOLDER = """
import os, sys, time
from pathlib import Path
from pipeline.lock import hold
with hold(Path(sys.argv[1]), sys.argv[2]):
    print("held", os.getpid(), flush=True)
    time.sleep(60)
"""

# Takes the lock, forks, and dies: the forked child keeps the flock (same open file), so the lock
# stays held while the pid in the file is dead.
FORKED = """
import os, sys, time
from pathlib import Path
from pipeline.lock import hold
with hold(Path(sys.argv[1]), sys.argv[2]):
    if os.fork() == 0:
        print("held", os.getpid(), flush=True)
        time.sleep(60)
    os._exit(0)
"""

# Tries the lock once and prints what happened as JSON.
TRY = """
import dataclasses, json, sys, time
from pathlib import Path
from pipeline.lock import WorkspaceBusy, hold
logs = []
t0 = time.monotonic()
try:
    with hold(Path(sys.argv[1]), sys.argv[2], log=logs.append) as holder:
        result = {"ok": True, "holder": dataclasses.asdict(holder)}
except WorkspaceBusy as e:
    result = {"ok": False, "error": str(e)}
result.update(logs=logs, elapsed=time.monotonic() - t0)
print(json.dumps(result))
"""


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(HELD_ENV, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


@pytest.fixture(autouse=True)
def _no_inherited_env(monkeypatch):
    monkeypatch.delenv(HELD_ENV, raising=False)


@pytest.fixture
def start_holder():
    """`start_holder(lock, command, code=HOLDER)` -> the process started, once the lock is held.
    Every process started, and every pid that said "held", is killed afterwards."""
    procs: list[subprocess.Popen] = []
    pids: list[int] = []

    def start(lock: Path, command: str = "folio train", code: str = HOLDER) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", code, str(lock), command], env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        word, _, pid = proc.stdout.readline().partition(" ")
        assert word == "held", proc.stderr.read()
        pids.append(int(pid))
        return proc

    try:
        yield start
    finally:
        kill = signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, kill)
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, kill)
            proc.communicate()


def try_hold(lock: Path, command: str = "folio train", **env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", TRY, str(lock), command], env=_env(**env),
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def recorded(lock: Path) -> Holder:
    return Holder(**json.loads(lock.read_text()))


def test_second_command_is_refused_at_once_naming_the_holder(tmp_path, start_holder):
    lock = tmp_path / "ws" / ".folio" / "lock"  # parent directories are created
    holder = start_holder(lock, "folio train")

    t0 = time.monotonic()
    result = try_hold(lock, "folio sample")
    wall = time.monotonic() - t0

    assert not result["ok"]
    assert result["error"].startswith("another folio command is running in this workspace: `folio train` "
                                      f"(pid {holder.pid}, started ")
    assert result["error"].endswith(f"wait for it to finish, or stop it (kill {holder.pid})")
    assert result["elapsed"] < 1 and wall < 5  # refused, never waited
    # The refused process did not truncate the file: the holder's info is still there.
    info = recorded(lock)
    assert (info.pid, info.command) == (holder.pid, "folio train")
    assert time.strptime(info.started, "%Y-%m-%d %H:%M:%S")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_lock_of_a_killed_holder_is_taken_over(tmp_path, start_holder):
    lock = tmp_path / "lock"
    holder = start_holder(lock, "folio train")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()  # reaped: a zombie would still count as alive
    assert recorded(lock).pid == holder.pid  # the dead holder's info is left behind

    result = try_hold(lock, "folio train")

    assert result["ok"] and result["holder"]["pid"] != holder.pid
    assert len(result["logs"]) == 1
    line = result["logs"][0]
    assert line.startswith(f"took over the workspace lock left by `folio train` (pid {holder.pid}, started ")
    assert line.endswith("which is no longer running")
    assert lock.read_bytes() == b""


def test_normal_exit_empties_the_file_and_frees_the_lock(tmp_path):
    lock = tmp_path / "lock"
    logs: list[str] = []
    with hold(lock, "folio prepare", log=logs.append) as holder:
        assert holder.pid == os.getpid() and holder.command == "folio prepare"
        assert recorded(lock) == holder
        assert holder.describe() == f"`folio prepare` (pid {holder.pid}, started {holder.started} on {holder.host})"
    assert lock.exists() and lock.read_bytes() == b""  # kept, but emptied

    with pytest.raises(RuntimeError), hold(lock, "folio prepare", log=logs.append):
        raise RuntimeError("stage failed")  # a failing block releases too
    assert lock.read_bytes() == b""
    assert logs == []

    result = try_hold(lock)
    assert result["ok"] and result["logs"] == []


def test_nested_hold_in_one_process_does_not_refuse_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lock = tmp_path / "ws" / "lock"
    with hold(lock, "folio train") as outer:
        with hold(Path("ws/lock"), "folio evaluate") as inner:  # same file, another spelling
            assert inner == outer
        # The inner exit released nothing.
        assert recorded(lock) == outer
        assert not try_hold(lock)["ok"]
    assert try_hold(lock)["ok"]


def test_children_of_the_holder_pass_through(tmp_path, start_holder):
    lock = tmp_path / "lock"
    holder = start_holder(lock, "folio train")
    info = recorded(lock)
    assert child_env(info) == {HELD_ENV: str(holder.pid)}

    child = try_hold(lock, "torchrun worker", **child_env(info))
    assert child["ok"] and Holder(**child["holder"]) == info  # yields the parent's holder
    assert recorded(lock) == info  # the child's exit left the holder's info and lock alone
    assert not try_hold(lock)["ok"]

    for pid in (os.getpid(), _dead_pid()):  # alive but not the holder; not alive at all
        refused = try_hold(lock, "torchrun worker", **{HELD_ENV: str(pid)})
        assert not refused["ok"] and f"kill {holder.pid}" in refused["error"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_held_env_naming_a_dead_pid_is_refused_even_if_it_is_the_recorded_one(tmp_path, start_holder):
    lock = tmp_path / "lock"
    parent = start_holder(lock, "folio train", code=FORKED)
    parent.wait()  # dead and reaped; its forked child still holds the lock
    assert recorded(lock).pid == parent.pid

    result = try_hold(lock, "torchrun worker", **{HELD_ENV: str(parent.pid)})
    assert not result["ok"] and f"(pid {parent.pid}," in result["error"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_workspace_busy_is_a_stage_error():
    from pipeline.errors import StageError

    assert issubclass(WorkspaceBusy, StageError)


@pytest.mark.skipif(sys.platform == "win32", reason="flocks the file directly")
def test_locked_file_without_holder_info_is_refused_as_unknown(tmp_path):
    import fcntl

    lock = tmp_path / "lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)  # locked, nothing written yet (holder between open and write)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = try_hold(lock)
    finally:
        os.close(fd)
    assert not result["ok"] and "(holder unknown)" in result["error"]
