"""DDP ranks die with whatever launched them — real `folio train` processes (train.nproc=2, gloo on
the CPU) in a git copy of the project whose data stages have run:
- SIGKILL of the launcher's whole process group (Ctrl-C of `dvc repro`, `kill -9 -- -PGID`), or of
  the launcher alone: its torchrun and both ranks are gone within seconds, nothing in models/
  changes afterwards, and a rerun takes the lock over and resumes from the last checkpoint;
- a hand-launched `torchrun -m pipeline.cli train`: local rank 0 holds the workspace lock beside
  its sibling rank, and SIGKILL of the torchrun agent ends both ranks.
The lock's side of this (a rank still running blocks a new holder) is in tests/test_lock.py."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from folio import checkpoint
from pipeline import artifacts
from tests import pipeline_project as pp
from tests.pipeline_project import Training

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kills process groups, reads /proc")

SETS = ["train.max_iters=100000", "train.eval_interval=10"]  # checkpoints every 10 steps, never done
GONE_WITHIN = 3.0  # seconds: two watchdog hops of lock.POLL, plus the ranks' own exit


@pytest.fixture
def project(prepared_project, tmp_path):
    return pp.clone(prepared_project, tmp_path / "folio")


@pytest.fixture
def started():
    """A list for the processes a test started indirectly (torchrun, ranks); any still running at
    the end is killed by pid (psutil checks the pid was not reused)."""
    procs: list[psutil.Process] = []
    yield procs
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def _tree(pid: int, started: list[psutil.Process]) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """Every process below `pid` (recorded in `started`), and the DDP ranks among them."""
    tree = psutil.Process(pid).children(recursive=True)
    started.extend(tree)
    return tree, [p for p in tree if "pipeline.cli" in p.cmdline() and "pipeline.launch" not in p.cmdline()
                  and "torch.distributed.run" not in p.cmdline()]


def _running(proc: psutil.Process) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for init to reap it)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(procs: list[psutil.Process]) -> float:
    """Seconds until every process in `procs` is gone; fails past 10 s."""
    t0 = time.monotonic()
    while any(_running(p) for p in procs):
        assert time.monotonic() - t0 < 10, f"still running 10 s later: {[p.pid for p in procs if _running(p)]}"
        time.sleep(0.05)
    return time.monotonic() - t0


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.mark.parametrize("target", ["process group", "launcher"])
def test_killing_the_launcher_ends_every_rank_and_a_rerun_resumes(project, started, target):
    sets = ["train.nproc=2", *SETS]
    with Training(project, sets) as first:
        first.wait_for(lambda: first.checkpoint_step() >= 20, timeout=300, what="a checkpoint at step 20")
        tree, ranks = _tree(first.proc.pid, started)
        assert len(ranks) == 2, [p.cmdline() for p in tree]
        if target == "process group":  # torchrun is in it, its ranks are not (sessions of their own)
            os.killpg(first.proc.pid, signal.SIGKILL)
        else:
            os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
        assert _wait_gone(tree) < GONE_WITHIN
        before = _snapshot(project / "models")
        time.sleep(3)
        assert _snapshot(project / "models") == before  # nobody writes there any more
    step = checkpoint.load(project / artifacts.LAST_CKPT)["step"]

    with Training(project, sets) as rerun:
        rerun.wait_for(lambda: f"resuming from step {step}" in rerun.output(), timeout=300, what="the resume")
        _tree(rerun.proc.pid, started)
        assert f"took over the workspace lock left by `folio train` (pid {first.proc.pid}" in rerun.output()
        assert "DDP ranks of an earlier" not in rerun.output()


def test_a_hand_launched_torchrun_holds_the_lock_and_its_ranks_die_with_it(project, started, tmp_path):
    log = tmp_path / "torchrun.log"
    with open(log, "wb") as out:
        agent = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  "--nproc_per_node=2", "-m", "pipeline.cli", "train", *(f"--set={s}" for s in SETS)],
                                 cwd=project, env=pp.env(), stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while _checkpoint_step(project) < 20:
            assert agent.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        tree, ranks = _tree(agent.pid, started)
        assert len(ranks) == 2, [p.cmdline() for p in tree]
        holder = json.loads((project / artifacts.LOCK_FILE).read_text())
        assert holder["pid"] in {r.pid for r in ranks} and holder["command"] == "folio train"  # its sibling passed
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait()
        assert _wait_gone(ranks) < GONE_WITHIN
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


def _checkpoint_step(project: Path) -> int:
    try:
        return checkpoint.load(project / artifacts.LAST_CKPT)["step"]
    except (FileNotFoundError, checkpoint.CheckpointError):  # not yet there, or being replaced
        return -1
