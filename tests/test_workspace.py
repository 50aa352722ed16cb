"""One run per workspace, and nothing deleted — with real `folio train` processes in a git copy of
the project whose data stages have run:
- a second `folio train` while one runs refuses within seconds, naming the holder (pid, start
  time); after the holder is killed with SIGKILL, the next one takes the lock over and resumes;
- a killed run whose config then changes is moved to models/previous/<run name>/ (checkpoints,
  run.json), not deleted; changing the config back moves it back and resumes it;
- past train.keep_previous, only the oldest *finished* moved-aside runs are deleted, each logged;
- DDP ranks launched by the stage (train.nproc=2) run under their launcher's lock."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from folio import checkpoint
from pipeline import artifacts, resume
from tests import pipeline_project as pp
from tests.pipeline_project import Training

LONG = ["train.max_iters=100000", "train.eval_interval=20", "model.n_embd=64", "model.n_layer=2"]


@pytest.fixture
def project(prepared_project, tmp_path):
    return pp.clone(prepared_project, tmp_path / "folio")


def _lock_holder(project: Path) -> dict | None:
    text = (project / artifacts.LOCK_FILE).read_text() if (project / artifacts.LOCK_FILE).exists() else ""
    return json.loads(text) if text.strip() else None


def test_a_second_training_refuses_and_a_killed_holders_lock_is_taken_over(project):
    with Training(project, LONG) as first:
        first.wait_for(lambda: first.checkpoint_step() >= 20, what="a checkpoint")
        assert _lock_holder(project)["pid"] == first.proc.pid
        started = time.monotonic()
        second = pp.run(project, "folio", "train", *(f"--set={s}" for s in LONG), check=False, timeout=60)
        assert time.monotonic() - started < 20  # refused at once, not after a fight over the cores
        assert f"error: train: another folio command is running in this workspace: `folio train` " \
               f"(pid {first.proc.pid}, started " in second, second
        assert "Traceback" not in second and second.count("\n") == 1
        first.kill()
    step = checkpoint.load(project / artifacts.LAST_CKPT)["step"]
    with Training(project, LONG) as third:
        third.wait_for(lambda: f"resuming from step {step}" in third.output(), what="the resume")
        assert f"took over the workspace lock left by `folio train` (pid {first.proc.pid}" in third.output()


def test_a_killed_run_is_moved_aside_when_the_config_changes_and_back_when_it_returns(project):
    with Training(project, LONG) as killed:
        killed.wait_for(lambda: killed.checkpoint_step() >= 40, what="a checkpoint at step 40")
        killed.kill()
    killed_info = json.loads((project / artifacts.RUN_INFO).read_text())
    killed_step = checkpoint.load(project / artifacts.LAST_CKPT)["step"]

    output = pp.run(project, "folio", "train", "--set=train.batch_size=4")  # another config: a new run
    aside = project / artifacts.PREVIOUS_RUNS / killed_info["run_name"]
    assert (f"moved the previous run in models/ (unfinished, step {killed_step}) aside to "
            f"{aside.relative_to(project)}/, as this run differs: model.n_embd 64 -> 32") in output
    assert checkpoint.load(aside / "last.pt")["step"] == killed_step  # nothing lost
    assert json.loads((aside / "run.json").read_text())["run_id"] == killed_info["run_id"]
    assert checkpoint.load(project / artifacts.LAST_CKPT)["step"] == 30  # the new run, finished

    with Training(project, LONG) as back:  # the first config again: its run comes back and resumes
        back.wait_for(lambda: f"resuming from step {killed_step}" in back.output(), what="the resume")
        assert f"moved {aside.relative_to(project)}/ back to models/" in back.output()
        assert not aside.exists()
        assert json.loads((project / artifacts.RUN_INFO).read_text())["run_id"] == killed_info["run_id"]
        finished = [p for p in (project / artifacts.PREVIOUS_RUNS).iterdir()]
        assert len(finished) == 1 and json.loads((finished[0] / "run.json").read_text())["finished"]


def test_ddp_ranks_train_under_their_launchers_lock(project):
    """train.nproc=2: the stage holds the lock and relaunches itself through torchrun; the ranks
    pass through the lock their parent holds, and the run trains to the end."""
    output = pp.run(project, "folio", "train", "--set=train.nproc=2", "--set=train.max_iters=10")
    assert "launching 2 processes" in output and "another folio command" not in output
    assert checkpoint.load(project / artifacts.LAST_CKPT)["step"] == 10
    assert _lock_holder(project) is None  # released, and emptied


def _previous_run(root: Path, name: str, finished: bool, age: int) -> Path:
    folder = root / artifacts.PREVIOUS_RUNS / name
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"run_name": name, "fingerprint": name,
                                                 "finished": finished, "run_id": f"id-{name}"}))
    os.utime(folder, (time.time() - age, time.time() - age))
    return folder


def test_only_the_oldest_finished_runs_past_the_bound_are_deleted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old_done = _previous_run(tmp_path, "old-done", True, 400)
    old_open = _previous_run(tmp_path, "old-unfinished", False, 300)
    mid_done = _previous_run(tmp_path, "mid-done", True, 200)
    new_open = _previous_run(tmp_path, "new-unfinished", False, 100)
    lines = []
    resume._prune(keep=2, log=lines.append, backed_up=lambda folder: None)  # verified in MLflow
    assert not old_done.exists() and not mid_done.exists()
    assert old_open.exists() and new_open.exists()  # an unfinished run is never deleted
    assert any("deleted models/previous/old-done/" in line and "id-old-done" in line for line in lines)
    lines.clear()
    resume._prune(keep=1, log=lines.append, backed_up=lambda folder: None)
    assert old_open.exists() and new_open.exists()
    assert lines == ["warning: models/previous/ holds 1 more unfinished run(s) than train.keep_previous=1; "
                     "folio never deletes an unfinished run: remove those you do not need with "
                     "`rm -r models/previous/<name>`"]


def test_a_run_is_deleted_only_once_its_best_checkpoint_is_verified_in_mlflow(tmp_path, monkeypatch):
    """Past train.keep_previous a finished run is deleted only if its MLflow run holds its best.pt
    byte for byte. A run whose checkpoint never reached MLflow (its logging was refused, or the
    server was away) or whose copy there differs is kept, with one line saying why."""
    from pipeline.tracking import store
    from pipeline.tracking.training_run import checkpoint_backed_up

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    store.setup()
    ml = store.mlflow()

    def finished_run(name: str, age: int, copy_in_mlflow: bytes | None) -> Path:
        folder = tmp_path / artifacts.PREVIOUS_RUNS / name
        folder.mkdir(parents=True)
        (folder / "best.pt").write_bytes(f"the weights of {name}".encode())
        with ml.start_run(run_name=name) as run:
            if copy_in_mlflow is not None:
                copy = tmp_path / "upload" / "best.pt"
                copy.parent.mkdir(exist_ok=True)
                copy.write_bytes(copy_in_mlflow)
                ml.log_artifact(str(copy), "checkpoint")
        (folder / "run.json").write_text(json.dumps({"run_name": name, "fingerprint": name,
                                                     "finished": True, "run_id": run.info.run_id}))
        os.utime(folder, (time.time() - age, time.time() - age))
        return folder

    backed = finished_run("backed-up", 400, b"the weights of backed-up")
    refused = finished_run("logging-refused", 300, None)
    changed = finished_run("copy-differs", 200, b"other weights")
    lines = []
    resume._prune(keep=0, log=lines.append, backed_up=checkpoint_backed_up)
    assert not backed.exists() and refused.exists() and changed.exists()
    assert [line.split(" (")[0] for line in lines] == [
        "deleted models/previous/backed-up/, the oldest finished run past train.keep_previous=0",
        "warning: kept models/previous/logging-refused/ past train.keep_previous=0: its best.pt is not verified in MLflow",
        "warning: kept models/previous/copy-differs/ past train.keep_previous=0: its best.pt is not verified in MLflow"]
    assert "has no copy of it" in lines[1] and "differs from it" in lines[2]
    assert all("rm -r models/previous/" in line for line in lines[1:])
