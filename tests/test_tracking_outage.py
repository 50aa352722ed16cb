"""The tracking server goes away mid-run, for real: `folio train` against a real `mlflow server`
keeps training while the server is stopped, spools the metrics to disk with one warning line, and
sends them once a server answers again on the same port (same store), so the run's history holds
every step (then Ctrl-C: what was logged is kept, the run is marked KILLED). A run that ends while the server is away stops with one line
and is completed — metrics and artifacts, no training — by the next `folio train`. And what a
process could not send is sent by the next one."""

from __future__ import annotations

import json
import signal

import pytest

from pipeline.tracking.spool import RunLog, replay
from tests import pipeline_project as pp
from tests import servers

pytestmark = pytest.mark.e2e
SETS = ["train.max_iters=100000", "train.eval_interval=100", "model.n_embd=64", "model.n_layer=2"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One backend store for the servers of this module: later starts skip its migrations."""
    root = tmp_path_factory.mktemp("outage-store")
    return f"sqlite:///{root / 'mlflow.db'}", root


def _logged_steps(url: str, run_id: str, metric: str = "train_loss") -> list[int]:
    history = servers.rest(url, "metrics/get-history", run_id=run_id, metric_key=metric,
                           max_results=100000)
    return sorted(m["step"] for m in history.get("metrics", []))


def _run_id(project) -> str | None:
    path = project / "models" / "run.json"
    return json.loads(path.read_text()).get("run_id") if path.exists() else None


def test_training_goes_on_while_the_server_is_away_and_nothing_logged_is_lost(prepared_project, store, tmp_path):
    """Each wait is on the run's own progress, not on wall time: the test holds on a busy machine."""
    project = pp.clone(prepared_project, tmp_path / "folio")
    (backend, root), port = store, servers.free_port()
    url = f"http://127.0.0.1:{port}"
    with servers.mlflow_server(backend, root, port=port):
        training = pp.Training(project, SETS, tracking_uri=url)
        training.wait_for(lambda: _run_id(project) and len(_logged_steps(url, _run_id(project))) >= 50,
                          what="50 steps logged to the server")
    try:  # the server is stopped: training must go on
        training.wait_for(lambda: "does not answer" in training.output(), what="the outage warning")
        during = training.checkpoint_step()
        training.wait_for(lambda: training.checkpoint_step() > during, what="a checkpoint during the outage")
        with servers.mlflow_server(backend, root, port=port):
            training.wait_for(lambda: "answers again" in training.output(), timeout=180,
                              what="the spool sent")
            run_id = _run_id(project)
            sent = len(_logged_steps(url, run_id))
            training.wait_for(lambda: len(_logged_steps(url, run_id)) > sent, what="more steps logged")
            training.proc.send_signal(signal.SIGINT)  # Ctrl-C: what was logged is kept too
            assert training.proc.wait(timeout=120) == 1, training.output()
            steps = _logged_steps(url, run_id)
            run = servers.rest(url, "runs/get", run_id=run_id)["run"]
    finally:
        training.kill()
    output = training.output()
    assert steps == list(range(1, len(steps) + 1)) and len(steps) > during  # every step, the outage's too
    assert run["info"]["status"] == "KILLED"
    assert output.count("does not answer") == 1
    (line,) = [l for l in output.splitlines() if l.startswith("error:")]
    assert line.startswith("error: train: interrupted; rerun the command")
    assert not list((project / ".folio" / "spool").glob("*.jsonl"))  # all sent


def test_a_run_that_ends_while_the_server_is_away_is_completed_by_the_next_train(prepared_project, store, tmp_path):
    """Training ends before the server is back: one error line, checkpoints saved; the next
    `folio train` sends the spool and the artifacts without training again."""
    project = pp.clone(prepared_project, tmp_path / "folio")
    (backend, root), port = store, servers.free_port()
    url = f"http://127.0.0.1:{port}"
    sets = ["train.max_iters=100000", "train.max_seconds=8", "train.eval_interval=100"]
    with servers.mlflow_server(backend, root, port=port):
        training = pp.Training(project, sets, tracking_uri=url)
        training.wait_for(lambda: _run_id(project) and _logged_steps(url, _run_id(project), "eval_val_loss"),
                          what="the first evaluation logged to the server")
    try:
        assert training.proc.wait(timeout=120) == 1
    finally:
        training.kill()
    (line,) = [l for l in training.output().splitlines() if l.startswith("error:")]
    assert line.startswith("error: train: training finished (models/best.pt is saved), but MLflow at ")
    assert "rerun `folio train` (or `dvc repro`) once it answers" in line
    trained_to = json.loads((project / "models/run.json").read_text())
    with servers.mlflow_server(backend, root, port=port):
        output = pp.run(project, "folio", "train", *(f"--set={s}" for s in sets), tracking_uri=url)
        steps = _logged_steps(url, trained_to["run_id"])
        artifacts = servers.rest(url, "artifacts/list", run_id=trained_to["run_id"], path="checkpoint")
        status = servers.rest(url, "runs/get", run_id=trained_to["run_id"])["run"]["info"]["status"]
    assert "resuming from step" in output and "train: 1/" not in output.split("resuming from step")[1]
    last_step = int((project / "reports/train/steps.csv").read_text().splitlines()[-1].split(",")[0])
    assert steps == list(range(1, last_step + 1))
    assert [f["path"] for f in artifacts["files"]] == ["checkpoint/best.pt"]
    assert json.loads((project / "models/run.json").read_text())["finished"] is True
    assert status == "FINISHED"


def test_what_one_process_spooled_the_next_one_sends(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    run_id = client.create_run(client.create_experiment("spool")).info.run_id
    lines = []
    down = RunLog(run_id, lines.append, spool_dir=tmp_path / "spool")

    def refused(records):
        raise ConnectionError("Connection refused")

    monkeypatch.setattr(down, "_send", refused)
    for step in range(1, 4):
        down.metrics(step, {"train_loss": 1.0 / step})
        assert down.flush() is False
    assert down.spooled == 3 and len([l for l in lines if "does not answer" in l]) == 1
    replay(lines.append, spool_dir=tmp_path / "spool")  # the next run, with the server back
    assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [1, 2, 3]
    assert not (tmp_path / "spool" / f"{run_id}.jsonl").exists()
    assert lines[-1].startswith("sent 3 spooled metrics of MLflow run")
