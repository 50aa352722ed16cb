"""pipeline/lock.py, with real separate processes: a second command is refused at once naming the
holder (and does not wipe the holder's info), a SIGKILLed holder's lock is taken over with one log
line, a normal exit leaves an empty file and a free lock, a nested `hold` in one process does not
refuse itself, and FOLIO_LOCK_HELD lets the holder's children (only them) pass through.
DDP ranks (`join_as_rank`): a rank still running blocks a new holder with one line naming it,
a new holder waits for a dying one, a rank dies within a second of its parent, and a
hand-launched torchrun's holder lets its own siblings pass (not another torchrun's ranks)."""

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

from pipeline.lock import AGENT_ENV, HELD_ENV, Holder, WorkspaceBusy, child_env, hold, ranks_file

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

# A DDP rank as `folio <stage>` makes one (pipeline.stages.run): joins, says "held <pid>", sleeps.
RANK = """
import os, sys, time
from pathlib import Path
os.environ.update(LOCAL_RANK="1", RANK="1")
from pipeline.lock import join_as_rank
join_as_rank(Path(sys.argv[1]), sys.argv[2])
print("held", os.getpid(), flush=True)
time.sleep(60)
"""

# Starts the rank given as argv[3], passes on its "held <pid>" line, then sleeps: its parent.
PARENT = """
import subprocess, sys, time
rank = subprocess.Popen([sys.executable, "-c", sys.argv[3], sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, text=True)
print(rank.stdout.readline(), end="", flush=True)
time.sleep(60)
"""

# A hand-launched torchrun's agent: starts a local rank 1 (argv[3]) and, once it runs, a local
# rank 0 that tries the lock (argv[4], TRY); prints the TRY's JSON and stops the rank.
AGENT = """
import os, subprocess, sys
rank = subprocess.Popen([sys.executable, "-c", sys.argv[3], sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, text=True)
rank.stdout.readline()
env = dict(os.environ, LOCAL_RANK="0", RANK="0")
done = subprocess.run([sys.executable, "-c", sys.argv[4], sys.argv[1], sys.argv[2], "1"], env=env, capture_output=True, text=True)
print(done.stdout + done.stderr, end="")
rank.kill()
rank.wait()
"""

# Tries the lock once and prints what happened as JSON. As in pipeline.stages.run, a torchrun
# rank (LOCAL_RANK set) joins first; argv[3], if given, is lock.RANKS_WAIT.
TRY = """
import dataclasses, json, sys, time
from pathlib import Path
from pipeline import lock
from pipeline.lock import WorkspaceBusy, hold, join_as_rank
if len(sys.argv) > 3:
    lock.RANKS_WAIT = float(sys.argv[3])
logs = []
t0 = time.monotonic()
join_as_rank(Path(sys.argv[1]), sys.argv[2])
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
    for name in (HELD_ENV, AGENT_ENV, "LOCAL_RANK", "RANK"):
        env.pop(name, None)
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

    def start(lock: Path, command: str = "folio train", code: str = HOLDER, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", code, str(lock), command, *args], env=_env(),
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


def try_hold(lock: Path, command: str = "folio train", wait: float | None = None, **env: str) -> dict:
    args = [] if wait is None else [str(wait)]
    done = subprocess.run([sys.executable, "-c", TRY, str(lock), command, *args], env=_env(**env),
                          capture_output=True, text=True, timeout=30)
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


needs_flock = pytest.mark.skipif(sys.platform == "win32", reason="ranks are covered by shared flocks")


@needs_flock
def test_a_running_rank_of_an_earlier_holder_blocks_a_new_holder_in_one_line(tmp_path, start_holder):
    lock = tmp_path / "lock"
    start_holder(lock, "folio train", RANK)  # the rank of a launcher that is gone
    rank = int(json.loads(ranks_file(lock).read_text())["pid"])

    result = try_hold(lock, "folio evaluate", wait=1)

    assert not result["ok"]
    assert result["error"] == (f"DDP ranks of an earlier `folio train` still run in this workspace (pid {rank}); "
                               f"wait for them to end, or stop them (kill {rank})")
    assert 1 <= result["elapsed"] < 5  # it waited RANKS_WAIT for the rank to die, not more
    assert lock.read_bytes() == b""  # nothing recorded for the refused command, and the lock is free again
    assert json.loads(ranks_file(lock).read_text())["pid"] == rank  # the rank's record is kept


@needs_flock
def test_a_new_holder_waits_for_a_dying_rank(tmp_path, start_holder):
    lock = tmp_path / "lock"
    rank = start_holder(lock, "folio train", RANK)
    trying = subprocess.Popen([sys.executable, "-c", TRY, str(lock), "folio train", "20"], env=_env(),
                              stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    os.kill(rank.pid, signal.SIGKILL)
    out, _ = trying.communicate(timeout=30)
    result = json.loads(out)
    assert result["ok"] and 1 <= result["elapsed"] < 10
    assert ranks_file(lock).read_bytes() == b""  # the dead rank's record is dropped


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_rank_dies_within_a_second_of_its_parent(tmp_path, start_holder):
    lock = tmp_path / "lock"
    parent = start_holder(lock, "folio train", PARENT, RANK)
    rank = int(json.loads(ranks_file(lock).read_text())["pid"])
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    t0 = time.monotonic()
    while _running(rank) and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    assert not _running(rank) and time.monotonic() - t0 < 1.5
    assert (f"error: folio train (rank 1): its parent process (pid {parent.pid}) is gone, so this one "
            f"(pid {rank}) stops; rerun the command") in parent.stderr.read()  # the rank's stderr


@needs_flock
def test_a_hand_launched_holder_lets_its_siblings_pass_but_not_another_torchruns_ranks(tmp_path, start_holder):
    lock = tmp_path / "lock"

    def agent() -> dict:
        done = subprocess.run([sys.executable, "-c", AGENT, str(lock), "folio train", RANK, TRY], env=_env(),
                              capture_output=True, text=True, timeout=30)
        return json.loads(done.stdout)

    alone = agent()  # local rank 0 takes the lock while its sibling already holds its shared flock
    assert alone["ok"] and alone["elapsed"] < 1
    start_holder(lock, "folio train", RANK)  # a rank of another torchrun, still running
    foreign = int(json.loads(ranks_file(lock).read_text().splitlines()[-1])["pid"])
    blocked = agent()
    assert not blocked["ok"] and blocked["error"].endswith(f"(pid {foreign}); wait for them to end, "
                                                          f"or stop them (kill {foreign})")


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
