"""Where the default tracking store is: the DVC project's, also for a queued experiment, which
DVC runs in a temporary copy it deletes afterwards (DVC_ROOT names the real project there)."""

from __future__ import annotations

from pipeline.tracking import store


def test_a_queued_experiment_logs_to_the_projects_store_not_its_temporary_copy(tmp_path, monkeypatch):
    project, copy = tmp_path / "project", tmp_path / "project" / ".dvc" / "tmp" / "exps" / "tmpq1"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(project))  # what `dvc queue start`'s worker sets
    assert store.tracking_uri() == f"sqlite:///{project / 'mlflow.db'}"
    store.setup()
    experiment = store.mlflow().get_experiment_by_name(store.EXPERIMENT)
    assert experiment.artifact_location == (project / "mlartifacts").as_uri()
    assert (project / "mlflow.db").exists() and not (copy / "mlflow.db").exists()


def test_outside_dvc_the_store_is_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert store.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert store.tracking_uri() == "http://127.0.0.1:5999"
