"""The tracking server goes away mid-run, for real: `folio train` against a real `mlflow server`
keeps training while the server is stopped, spools the metrics to disk with one warning line, and
sends them once a server answers again on the same port (same store), so the run's history holds
every step; the stage ends cleanly. Also: what a process could not send is sent by the next one."""

from __future__ import annotations

import json

import pytest

from pipeline.tracking.spool import RunLog, replay
from tests import pipeline_project as pp
from tests import servers

pytestmark = pytest.mark.e2e
SETS = ["train.max_iters=100000", "train.max_seconds=20", "train.eval_interval=100",
        "model.n_embd=64", "model.n_layer=2"]


def _logged_steps(url: str, run_id: str) -> list[int]:
    history = servers.rest(url, "metrics/get-history", run_id=run_id, metric_key="train_loss",
                           max_results=100000)
    return sorted(m["step"] for m in history.get("metrics", []))


def _run_id(project) -> str | None:
    path = project / "models" / "run.json"
    return json.loads(path.read_text()).get("run_id") if path.exists() else None


def test_training_goes_on_while_the_server_is_away_and_nothing_logged_is_lost(prepared_project, tmp_path):
    project = pp.clone(prepared_project, tmp_path / "folio")
    backend, port = f"sqlite:///{tmp_path / 'mlflow.db'}", servers.free_port()
    url = f"http://127.0.0.1:{port}"
    with servers.mlflow_server(backend, tmp_path, port=port):
        training = pp.Training(project, SETS, tracking_uri=url)
        training.wait_for(lambda: _run_id(project) and len(_logged_steps(url, _run_id(project))) >= 100,
                          what="100 steps logged to the server")
    try:  # the server is stopped: training must go on
        before = training.checkpoint_step()
        training.wait_for(lambda: "does not answer" in training.output(), what="the outage warning")
        training.wait_for(lambda: training.checkpoint_step() >= before + 200, what="200 more steps")
        with servers.mlflow_server(backend, tmp_path, port=port):
            assert training.proc.wait(timeout=120) == 0, training.output()
            run_id = _run_id(project)
            steps = _logged_steps(url, run_id)
            run = servers.rest(url, "runs/get", run_id=run_id)["run"]
    finally:
        training.kill()
    output = training.output()
    last_step = json.loads((project / "reports/train/steps.csv").read_text().splitlines()[-1].split(",")[0])
    assert steps == list(range(1, last_step + 1))  # every step, the outage's included
    assert run["info"]["status"] == "FINISHED"
    assert output.count("does not answer") == 1 and "answers again" in output
    assert not list((project / ".folio" / "spool").glob("*.jsonl"))  # all sent


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
