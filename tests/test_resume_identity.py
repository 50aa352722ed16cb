"""A run is resumed only as the same run: its fingerprint holds what shapes the trajectory of its
weights — the world size among them (batches are per process: twice the ranks, twice the global
batch), seen from a hand-launched torchrun too. The training code is kept beside the fingerprint:
a run whose code changed since its checkpoint is named in one line and moved aside by default, or
continued with train.on_code_change=resume, the change recorded in run.json and on the MLflow run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from folio.device import pick_dtype
from pipeline import artifacts, resume
from pipeline.cli import app
from tests import pipeline_project as pp


@pytest.fixture
def project(prepared_project, tmp_path):
    return pp.clone(prepared_project, tmp_path / "folio")


def test_a_hand_launched_torchrun_of_another_world_size_is_another_run(project):
    pp.run(project, "folio", "train")  # one process, finished at step 30
    first = json.loads((project / artifacts.RUN_INFO).read_text())
    assert first["identity"]["world size"] == 1
    dtype = str(pick_dtype("auto", torch.device("cpu"))[0]).removeprefix("torch.")
    assert first["identity"]["compute"] == f"cpu {dtype}"  # what auto resolved to on this machine
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "pipeline.cli", "train"]
    proc = subprocess.run(torchrun, cwd=project, env=pp.env(), capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert (f"moved the previous run in models/ (finished, step 30) aside to "
            f"models/previous/{first['run_name']}/, as this run differs: world size 1 -> 2") in output
    assert json.loads((project / artifacts.RUN_INFO).read_text())["identity"]["world size"] == 2


def _interrupted_at_step_15(project, monkeypatch) -> None:
    """`folio train` stopped (Ctrl-C) after its step-10 checkpoint: an unfinished run."""
    from pipeline.stages import train

    real_on_step = train.StageCallback.on_step

    def interrupt(self, step, metrics):
        if step == 15:
            raise KeyboardInterrupt
        real_on_step(self, step, metrics)

    with monkeypatch.context() as patch:
        patch.setattr(train.StageCallback, "on_step", interrupt)
        result = CliRunner().invoke(app, ["train"])
    assert result.exit_code == 1 and "interrupted" in result.output, result.output


@pytest.fixture
def interrupted(project, monkeypatch):
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _interrupted_at_step_15(project, monkeypatch)
    code = json.loads((project / artifacts.RUN_INFO).read_text())["code"]
    assert code == resume.code_digest()
    monkeypatch.setattr(resume, "code_digest", lambda: "c0dec0dec0dec0de")  # the training code is edited
    return code


def test_changed_code_moves_the_run_aside_by_default(project, interrupted):
    info = json.loads((project / artifacts.RUN_INFO).read_text())
    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code == 0, result.output
    assert (f"moved the previous run in models/ (unfinished, step 10) aside to models/previous/"
            f"{info['run_name']}/, as this run differs: the training code changed since this run's "
            f"step-10 checkpoint (code {interrupted} -> c0dec0dec0dec0de); set "
            "train.on_code_change=resume to continue it instead") in result.output
    assert "resuming from step" not in result.output
    assert (project / artifacts.PREVIOUS_RUNS / info["run_name"] / "step-0000010.pt").exists()


def test_changed_code_resumes_with_on_code_change_resume_and_is_recorded(project, interrupted):
    info = json.loads((project / artifacts.RUN_INFO).read_text())
    result = CliRunner().invoke(app, ["train", "--set", "train.on_code_change=resume"])
    assert result.exit_code == 0, result.output
    assert (f"the training code changed since this run's step-10 checkpoint (code {interrupted} -> "
            "c0dec0dec0dec0de): resuming it, as train.on_code_change=resume says") in result.output
    assert "resuming from step 10" in result.output
    after = json.loads((project / artifacts.RUN_INFO).read_text())
    assert after["run_id"] == info["run_id"] and after["code"] == "c0dec0dec0dec0de" and after["finished"]
    (change,) = after["code_changes"]
    assert (change["from"], change["to"], change["step"]) == (interrupted, "c0dec0dec0dec0de", 10)
    from pipeline.tracking import store

    store.setup()
    tags = store.mlflow().MlflowClient().get_run(info["run_id"]).data.tags
    assert tags["training_code"] == "c0dec0dec0dec0de"
    assert tags["determinism"].startswith("cpu kernels")
    assert tags["training_code.changes"].startswith(f"{interrupted} -> c0dec0dec0dec0de at step 10")
    assert not (project / artifacts.PREVIOUS_RUNS).exists()
