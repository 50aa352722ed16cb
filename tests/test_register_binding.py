"""Every registered number belongs to the weights it describes: reports/metrics.json names the
weights evaluate scored (their digest, step and the training run's fingerprint); register refuses metrics of other
weights in one line naming both; a version is tagged with its weights' digest, and registering the
same weights again — a rerun after a failure part way, or after only the samples changed —
completes and updates that version instead of adding a duplicate."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from folio import checkpoint
from pipeline import artifacts
from pipeline.cli import app
from tests import pipeline_project as pp
from tests.test_errors import assert_one_line_error, folio


@pytest.fixture(scope="module")
def evaluated(prepared_project, tmp_path_factory):
    """A copy of the prepared project, trained (tiny params) and evaluated."""
    root = pp.clone(prepared_project, tmp_path_factory.mktemp("binding") / "folio")
    pp.run(root, "folio", "train")
    pp.run(root, "folio", "evaluate")
    pp.run(root, "folio", "sample")
    return root


@pytest.fixture
def project(evaluated, tmp_path):
    return pp.clone(evaluated, tmp_path / "folio")


def _versions(project, name: str) -> list[dict]:
    out = pp.run(project, "python", "-c", (
        "import json, mlflow; mlflow.set_tracking_uri('sqlite:///mlflow.db'); "
        f"print(json.dumps([dict(version=int(v.version), tags=v.tags, description=v.description) "
        f"for v in mlflow.MlflowClient().search_model_versions(\"name = '{name}'\")]))"))
    return sorted(json.loads(out.strip().splitlines()[-1]), key=lambda v: v["version"])


def test_metrics_name_the_weights_they_scored(project):
    metrics = json.loads((project / artifacts.METRICS).read_text())
    best = checkpoint.load(project / artifacts.BEST_CKPT)
    run = json.loads((project / artifacts.RUN_INFO).read_text())
    assert metrics["checkpoint"] == {"file": "models/best.pt", "step": best["step"],
                                     "weights_digest": checkpoint.weights_digest(best),
                                     "run_fingerprint": run["fingerprint"]}


def test_register_refuses_the_metrics_of_other_weights(project):
    """train again without evaluate: best.pt holds new weights, metrics.json the old ones' scores."""
    old = json.loads((project / artifacts.METRICS).read_text())["checkpoint"]["weights_digest"]
    pp.run(project, "folio", "train", "--set", "train.max_iters=40")
    new = checkpoint.weights_digest(checkpoint.load(project / artifacts.BEST_CKPT))
    code, output = folio(project, "register", "--set", "train.max_iters=40")
    assert_one_line_error(code, output, "register", f"reports/metrics.json holds the scores of weights {old}",
                          f"models/best.pt holds weights {new} (step 40)", "run `folio evaluate`")
    assert not (project / artifacts.REGISTERED_MODEL).exists()


def test_the_same_weights_are_one_version(project):
    name = "folio-tinyshakespeare"
    pp.run(project, "folio", "register")
    output = pp.run(project, "folio", "register")  # e.g. dvc repro after only sample.* changed
    assert "holds these weights already" in output
    (version,) = _versions(project, name)
    digest = checkpoint.weights_digest(checkpoint.load(project / artifacts.BEST_CKPT))
    assert version["version"] == 1 and version["tags"]["checkpoint.digest"] == digest
    assert json.loads((project / artifacts.REGISTERED_MODEL).read_text())["version"] == 1


def test_a_rerun_after_a_failure_part_way_completes_the_version(project, monkeypatch):
    """The tracking server goes away after the version was created: the rerun finds the version
    by its weights' digest and finishes it (description, model card, registered_model.json)."""
    from pipeline.tracking import registry, store

    real_describe = registry.describe

    def server_gone(*args, **kwargs):
        raise store.TrackingUnavailable("the MLflow tracking server went away; start it and rerun")

    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(registry, "describe", server_gone)
    result = CliRunner().invoke(app, ["register"])
    assert result.exit_code == 1 and "error: register: the MLflow tracking server went away" in result.output
    assert not (project / artifacts.REGISTERED_MODEL).exists()
    monkeypatch.setattr(registry, "describe", real_describe)
    result = CliRunner().invoke(app, ["register"])
    assert result.exit_code == 0, result.output
    (version,) = _versions(project, "folio-tinyshakespeare")
    assert version["version"] == 1 and version["description"].startswith("val bits per byte")
    assert json.loads((project / artifacts.REGISTERED_MODEL).read_text())["version"] == 1
