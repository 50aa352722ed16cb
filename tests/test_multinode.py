"""Training on two nodes, simulated on this machine: two network namespaces joined by a veth pair
(10.77.0.1 and 10.77.0.2), one torchrun in each, gloo over the veth, both sharing the project
directory as two machines share an NFS mount (scripts/two_nodes.sh is the recipe; these tests
run it, or the same commands with a hand on the processes):
- the two-node run trains to the end, rank 0 alone writing checkpoints, reports and MLflow, and
  ends with the very weights of a one-node run of the same world size (torchrun --standalone,
  2 processes); node 1's rank joins rank 0's workspace lock;
- a lost node: rank 1's process killed under --max-restarts=1, the job restarts both workers and
  resumes from the last checkpoint, to the same final weights; without restarts, node 1's network
  cut, the surviving rank stops within train.collective_timeout_s with one line, its last
  checkpoint intact;
- different params on one node stop both ranks, naming the key, before models/ is touched; a
  rendezvous the other node never joins, and node 0 started twice (its rendezvous port taken),
  each end in one line (python -m pipeline.launch).
Skipped where namespaces cannot be made (not root, no `ip`). The lock's side (a rank of this job
passes, another job is refused) and `folio doctor` under torchrun's variables run everywhere."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from folio import checkpoint
from pipeline import artifacts, lock
from tests import pipeline_project as pp
from tests.conftest import PROJECT

SCRIPT = PROJECT / "scripts" / "two_nodes.sh"
# 60 steps, a checkpoint every 10: long enough to lose a node in the middle
SETS = ["train.max_iters=60", "train.eval_interval=10", "train.collective_timeout_s=8"]
# torchrun sets OMP_NUM_THREADS=1 for each process only when it starts several per node; CPU
# float sums depend on the thread count, so every run here gets the one-node run's setting
THREADS = {"OMP_NUM_THREADS": "1"}
PORT = 29500
_tags = itertools.count()


def _namespaces_unavailable() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux's"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    return None


needs_namespaces = pytest.mark.skipif(_namespaces_unavailable() is not None,
                                      reason=_namespaces_unavailable() or "")


def _digest(project: Path) -> str:
    return checkpoint.weights_digest(checkpoint.load(project / artifacts.LAST_CKPT))


def _mlflow_runs(project: Path) -> int:
    with contextlib.closing(sqlite3.connect(project / "mlflow.db")) as db:
        return db.execute("select count(*) from runs").fetchone()[0]


class Nodes:
    """Two namespaces joined by a veth pair; `start` runs a command in one, `stop` ends it all."""

    def __init__(self):
        self.tag = f"{os.getpid() % 100000}{next(_tags)}"
        self.ns = [f"folio{self.tag}n0", f"folio{self.tag}n1"]
        self.veth = [f"fv{self.tag}a", f"fv{self.tag}b"]
        self.addr = ["10.77.0.1", "10.77.0.2"]
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def create(self) -> None:
        self._ip("netns", "add", self.ns[0])
        self._ip("netns", "add", self.ns[1])
        self._ip("link", "add", self.veth[0], "type", "veth", "peer", "name", self.veth[1])
        for i in (0, 1):
            self._ip("link", "set", self.veth[i], "netns", self.ns[i])
            self._ip("-n", self.ns[i], "addr", "add", f"{self.addr[i]}/24", "dev", self.veth[i])
            self._ip("-n", self.ns[i], "link", "set", "lo", "up")
            self._ip("-n", self.ns[i], "link", "set", self.veth[i], "up")

    def start(self, node: int, project: Path, args: list[str], module: str = "torch.distributed.run",
              torchrun: tuple[str, ...] = (), join_timeout: int = 60) -> subprocess.Popen:
        """`args` (a folio command after `-m`) under torchrun (or pipeline.launch) on `node`."""
        log = project.parent / f"node{node}-{len(self.logs)}.log"
        command = ["ip", "netns", "exec", self.ns[node], "env", f"GLOO_SOCKET_IFNAME={self.veth[node]}",
                   sys.executable, "-m", module, "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
                   f"--rdzv_endpoint={self.addr[0]}:{PORT}", f"--rdzv_id=folio-test-{self.tag}",
                   f"--local-addr={self.addr[node]}",
                   f"--rdzv-conf=is_host={1 if node == 0 else 0},join_timeout={join_timeout}",
                   *torchrun, "-m", *args]
        with open(log, "wb") as out:  # `ip netns exec` execs: the pid is torchrun's
            proc = subprocess.Popen(command, cwd=project, env={**pp.env(), **THREADS}, stdout=out,
                                    stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def output(self, proc: subprocess.Popen) -> str:
        return self.logs[self.procs.index(proc)].read_text(errors="replace")

    def ranks(self, proc: subprocess.Popen) -> list[psutil.Process]:
        """The training processes torchrun `proc` started."""
        with contextlib.suppress(psutil.Error):
            return [p for p in psutil.Process(proc.pid).children() if "pipeline.cli" in p.cmdline()]
        return []

    def kill(self, proc: subprocess.Popen) -> None:
        """`proc` and what it started (by pid: only what this test started)."""
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs:
            self.kill(proc)
        for ns in self.ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def nodes():
    made = Nodes()
    try:
        made.create()
    except subprocess.CalledProcessError as err:
        made.stop()
        pytest.skip(f"cannot make network namespaces here: {err.stderr.strip()}")
    yield made
    made.stop()


@pytest.fixture(scope="module")
def one_node(prepared_project, tmp_path_factory):
    """The reference: `torchrun --standalone --nproc_per_node=2` on one node, SETS, to the end."""
    project = pp.clone(prepared_project, tmp_path_factory.mktemp("one-node") / "folio")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "pipeline.cli", "train", *(f"--set={s}" for s in SETS)]
    t0 = time.monotonic()
    proc = subprocess.run(torchrun, cwd=project, env={**pp.env(), **THREADS}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(f"one node, 2 processes: {time.monotonic() - t0:.1f} s, weights {_digest(project)}")
    return project


@pytest.fixture
def project(prepared_project, tmp_path):
    return pp.clone(prepared_project, tmp_path / "folio")


def _wait(condition, timeout: float, what: str, *outputs) -> float:
    """Seconds until `condition()` holds; fails naming `what` past `timeout`."""
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"waited {timeout} s for {what}:\n" + "\n----\n".join(o() for o in outputs))
        time.sleep(0.05)
    return time.monotonic() - t0


def _checkpoint_step(project: Path) -> int:
    try:
        return checkpoint.load(project / artifacts.LAST_CKPT)["step"]
    except (checkpoint.CheckpointError, FileNotFoundError, OSError):
        return -1


@needs_namespaces
def test_two_nodes_train_to_the_end_with_the_weights_of_one_node(project, one_node, tmp_path):
    """scripts/two_nodes.sh, as a user runs it: both nodes train to the end over the veth."""
    tag = f"{os.getpid() % 100000}{next(_tags)}"
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(SCRIPT), str(project), *(f"--set={s}" for s in SETS)],
                          env={**pp.env(), **THREADS, "PYTHON": sys.executable, "FOLIO_NODES_TAG": tag},
                          capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert not any(f"folio{tag}" in line for line in subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines())  # the script removed them
    node0 = "\n".join(line for line in output.splitlines() if line.startswith("[node 0]"))
    node1 = "\n".join(line for line in output.splitlines() if line.startswith("[node 1]"))
    # rank 0 (node 0) alone evaluates, logs and saves; rank 1 (node 1) trains silently
    assert "trained 60 steps" in node0 and "step 60: train" in node0, output
    assert "trained" not in node1 and "step 10: train" not in node1, output
    assert "2 process(es)" in node0
    assert _mlflow_runs(project) == 1
    assert checkpoint.load(project / artifacts.LAST_CKPT)["step"] == 60
    # the same world size on one node: the same batches per rank, the same all-reduce of two
    # gradients, so the same weights to the bit
    two, one = _digest(project), _digest(one_node)
    print(f"two nodes: {time.monotonic() - t0:.1f} s, weights {two}; one node: {one}")
    assert two == one


@needs_namespaces
def test_a_lost_node_restarts_and_resumes_to_the_same_weights(project, one_node, nodes):
    args = ["pipeline.cli", "train", *(f"--set={s}" for s in SETS)]
    node0 = nodes.start(0, project, args, torchrun=("--max-restarts=1",))
    node1 = nodes.start(1, project, args, torchrun=("--max-restarts=1",))
    outputs = (lambda: nodes.output(node0), lambda: nodes.output(node1))
    _wait(lambda: _checkpoint_step(project) >= 20, 120, "the step-20 checkpoint", *outputs)
    (rank1,) = nodes.ranks(node1)
    rank1.send_signal(signal.SIGKILL)  # node 1's worker dies mid-run
    killed_at = _checkpoint_step(project)
    detect = _wait(lambda: "lost the other ranks" in nodes.output(node0), 60,
                   "rank 0 to notice", *outputs)
    resume = _wait(lambda: "resuming from step" in nodes.output(node0), 120, "the resume", *outputs)
    assert node0.wait(timeout=180) == 0, nodes.output(node0)
    assert node1.wait(timeout=60) == 0, nodes.output(node1)
    out0 = nodes.output(node0)
    assert "trained 60 steps" in out0
    resumed_from = int(out0.split("resuming from step ")[1].split()[0])
    assert resumed_from >= min(killed_at, 20)
    assert _mlflow_runs(project) == 1  # the restarted rank 0 continued the MLflow run
    print(f"lost node: killed after checkpoint step {killed_at}; rank 0 noticed in {detect:.2f} s, "
          f"resumed from step {resumed_from} {resume:.2f} s after the kill")
    assert _digest(project) == _digest(one_node)


@needs_namespaces
def test_without_restarts_the_surviving_rank_stops_within_the_collective_timeout(project, nodes,
                                                                                prepared_project, tmp_path):
    args = ["pipeline.cli", "train", *(f"--set={s}" for s in SETS)]
    node0 = nodes.start(0, project, args)
    node1 = nodes.start(1, project, args)
    outputs = (lambda: nodes.output(node0), lambda: nodes.output(node1))
    _wait(lambda: _checkpoint_step(project) >= 20, 120, "the step-20 checkpoint", *outputs)
    # node 1 falls off the network: no socket closes, so only the timeout can tell
    subprocess.run(["ip", "-n", nodes.ns[1], "link", "set", nodes.veth[1], "down"], check=True)
    cut = time.monotonic()
    detect = _wait(lambda: "lost the other ranks" in nodes.output(node0), 60, "rank 0 to give up", *outputs)
    assert node0.wait(timeout=60) != 0
    stopped = time.monotonic() - cut
    out0 = nodes.output(node0)
    errors = [line for line in out0.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "rank 0 lost the other ranks" in errors[0], out0
    assert "train.collective_timeout_s=8s" in errors[0] and "is intact" in errors[0]
    # what rank 0 left is whole: the checkpoint it names loads
    named = Path(errors[0].split("the last checkpoint, ")[1].split(", is intact")[0])
    assert checkpoint.load(project / named)["step"] >= 20
    assert _checkpoint_step(project) >= 20
    print(f"network cut: rank 0 said so {detect:.2f} s later, its torchrun exited after {stopped:.2f} s "
          f"(collective timeout 8 s): {errors[0]}")
    assert 8 <= detect < 8 + 10  # the timeout, not a closed socket, told it; plus at most one step
    assert stopped < 8 + 20  # and torchrun stopping

    # Restarted with node 1 on a disk of its own (no shared filesystem, no copy of models/): it
    # would start from step 0 while rank 0 resumes, so both stop, saying so.
    nodes.kill(node1)
    subprocess.run(["ip", "-n", nodes.ns[1], "link", "set", nodes.veth[1], "up"], check=True)
    own_disk = pp.clone(prepared_project, tmp_path / "node1-disk")
    node0 = nodes.start(0, project, args)
    node1 = nodes.start(1, own_disk, args)
    for proc in (node0, node1):
        assert proc.wait(timeout=120) != 0, nodes.output(proc)
        errors = [line for line in nodes.output(proc).splitlines() if line.startswith("error:")]
        assert len(errors) == 1, nodes.output(proc)
        assert f"rank 1 would start from step 0, rank 0 from step {_checkpoint_step(project)}" in errors[0]


@needs_namespaces
def test_different_params_on_one_node_stop_both_ranks_naming_the_key(project, nodes):
    node0 = nodes.start(0, project, ["pipeline.cli", "train", *(f"--set={s}" for s in SETS)])
    node1 = nodes.start(1, project, ["pipeline.cli", "train", *(f"--set={s}" for s in SETS),
                                     "--set=train.learning_rate=0.003"])
    for proc in (node0, node1):
        assert proc.wait(timeout=120) != 0, nodes.output(proc)
        errors = [line for line in nodes.output(proc).splitlines() if line.startswith("error:")]
        assert len(errors) == 1, nodes.output(proc)
        assert "the ranks disagree on train.learning_rate: rank 0 has 0.002, rank 1 has 0.003" in errors[0]
    assert not (project / artifacts.RUN_INFO).exists()  # stopped before models/ was touched


@needs_namespaces
def test_a_rendezvous_never_completed_and_a_node_started_twice_each_end_in_one_line(project, nodes):
    args = ["pipeline.cli", "train"]
    first = nodes.start(0, project, args, module="pipeline.launch", join_timeout=8)
    time.sleep(2)  # the first one hosts the rendezvous store on the port
    twice = nodes.start(0, project, args, module="pipeline.launch", join_timeout=8)
    assert twice.wait(timeout=60) == 1
    assert first.wait(timeout=60) == 1  # node 1 never came
    for proc, says in ((twice, "could not be started or reached"), (first, "did not complete")):
        output = nodes.output(proc)
        assert "Traceback" not in output, output
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and says in errors[0], output
        assert f"10.77.0.1:{PORT}" in errors[0]


# ---- without namespaces ----------------------------------------------------------------------

def _hold_in_child(lock_file: Path, env: dict) -> subprocess.Popen:
    code = ("import sys, time; from pipeline import lock\n"
            "with lock.hold(sys.argv[1], 'folio train', lambda m: None):\n"
            "    print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(lock_file)], cwd=PROJECT, env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _torchrun_env(run_id: str, port: str, rank: str) -> dict:
    return {"LOCAL_RANK": "0", "RANK": rank, "WORLD_SIZE": "2", "MASTER_ADDR": "10.77.0.1",
            "MASTER_PORT": port, "TORCHELASTIC_RUN_ID": run_id}


@pytest.mark.parametrize("other_job", [False, True])
def test_a_rank_of_another_node_joins_its_own_jobs_lock_and_no_other(tmp_path, monkeypatch, other_job):
    """Node 0's rank 0 holds the lock on the shared directory; node 1's first rank passes only if
    it belongs to the same torchrun job."""
    lock_file = tmp_path / ".folio" / "lock"
    holder = _hold_in_child(lock_file, {**os.environ, **_torchrun_env("folio-1", "35827", "0")})
    try:
        monkeypatch.setattr(lock, "JOIN_WAIT", 0.5)
        for key, value in _torchrun_env("folio-1", "41000" if other_job else "35827", "1").items():
            monkeypatch.setenv(key, value)
        if other_job:
            with pytest.raises(lock.WorkspaceBusy, match=f"another folio command is running in this "
                                                         f"workspace: `folio train` \\(pid {holder.pid}"):
                with lock.hold(lock_file, "folio train", lambda m: None):
                    pass
        else:
            with lock.hold(lock_file, "folio train", lambda m: None) as held:
                assert held.pid == holder.pid and held.job == "folio-1@10.77.0.1:35827"
    finally:
        holder.kill()
        holder.wait()


def test_a_plain_command_is_refused_by_a_multinode_jobs_lock(tmp_path, monkeypatch):
    lock_file = tmp_path / ".folio" / "lock"
    holder = _hold_in_child(lock_file, {**os.environ, **_torchrun_env("folio-1", "35827", "0")})
    try:
        for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
            monkeypatch.delenv(key, raising=False)
        with pytest.raises(lock.WorkspaceBusy, match=f"\\(pid {holder.pid}"):
            with lock.hold(lock_file, "folio train", lambda m: None):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_doctor_shows_the_distributed_environment_under_torchrun(monkeypatch):
    from pipeline.cli import app

    for key, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
                       "GROUP_RANK": "1", "MASTER_ADDR": "10.77.0.1", "MASTER_PORT": "29500",
                       "TORCHELASTIC_RUN_ID": "folio-run-1", "TORCHELASTIC_RESTART_COUNT": "1",
                       "TORCHELASTIC_MAX_RESTARTS": "3", "GLOO_SOCKET_IFNAME": "eth1"}.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "ddp       gloo, world size 2: rank 1, local rank 0 of 1, node 1" in result.output
    assert ("rdzv      master 10.77.0.1:29500, id folio-run-1, restart 1 of 3, GLOO_SOCKET_IFNAME eth1"
            in result.output)
    monkeypatch.delenv("MASTER_ADDR")
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert "MASTER_ADDR is not set, though RANK/WORLD_SIZE are" in result.output
    for key in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key)
    result = CliRunner().invoke(app, ["doctor"])
    assert "ddp " not in result.output and "rdzv " not in result.output
