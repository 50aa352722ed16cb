"""What `make repro` and `dvc repro` end on (pipeline/commands/summary.py): the registered version,
its val loss and bits per byte, how long it trained, and the next commands — from
reports/metrics.json, reports/registered_model.json and the training run in MLflow. The register
stage prints it last; `make repro` runs `folio summary` after `dvc repro`."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from pipeline import params as params_module
from pipeline.cli import app
from pipeline.commands import summary
from pipeline.tracking import store
from tests.conftest import PROJECT
from tests.servers import tracking_at

PARAMS_FILE = PROJECT / "params.yaml"
METRICS = {"checkpoint": {"file": "models/best.pt", "step": 3500, "weights_digest": "ede8ce98c063b9db"},
           "tokenizer": {"bytes_per_token": 1.0, "kind": "char", "vocab_size": 65},
           "val": {"bits_per_byte": 2.213146181717609, "loss": 1.5340360360245693, "tokens": 111538}}


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A workspace after `dvc repro`: the two reports and a finished training run of 4m 58s."""
    monkeypatch.chdir(tmp_path)
    with tracking_at(f"sqlite:///{tmp_path / 'mlflow.db'}"):
        store.setup()
        client = store.mlflow().MlflowClient()
        experiment = client.get_experiment_by_name(store.EXPERIMENT)
        run = client.create_run(experiment.experiment_id, start_time=1_000_000, run_name="x-char-L4d192")
        client.set_terminated(run.info.run_id, end_time=1_000_000 + 298_000)
        (tmp_path / "reports").mkdir()
        (tmp_path / "reports" / "metrics.json").write_text(json.dumps(METRICS))
        (tmp_path / "reports" / "registered_model.json").write_text(json.dumps(
            {"name": "folio-tinyshakespeare", "version": 3, "uri": "models:/folio-tinyshakespeare/3",
             "run_id": run.info.run_id, "weights_digest": "ede8ce98c063b9db"}))
        yield tmp_path


def test_summary_names_the_version_its_scores_time_and_next_commands(workspace, capsys):
    lines = summary.show(params_module.load(PARAMS_FILE))
    printed = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert printed == lines
    assert "done: folio-tinyshakespeare v3 (models:/folio-tinyshakespeare/3)" in lines[0]
    assert lines[1] == ("val loss 1.5340 · 2.2131 bits/byte · checkpoint of step 3,500 · trained in 4m 58s")
    commands = [line.split("#")[0].strip() for line in lines[3:]]
    assert commands == ["make ui", "folio generate --model models:/folio-tinyshakespeare/3 ROMEO:",
                        "folio promote 3", "folio runs"]
    assert lines[5].endswith("# @champion, if it beats the holder on bits_per_byte")


def test_folio_summary_command_and_a_missing_report_in_one_line(workspace):
    result = CliRunner().invoke(app, ["summary", "--params", str(PARAMS_FILE)])
    assert result.exit_code == 0, result.output
    (workspace / "reports" / "registered_model.json").unlink()
    result = CliRunner().invoke(app, ["summary", "--params", str(PARAMS_FILE)])
    assert result.exit_code == 1
    assert result.output.strip() == ("error: summary: reports/registered_model.json not found; run "
                                     "`folio register` (or `dvc repro`) first")


def test_make_repro_ends_on_the_summary():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # --no-print-directory: under `make test` this make is a sub-make, which would add its
    # "Entering/Leaving directory" lines
    planned = subprocess.run(["make", "--no-print-directory", "-n", "-B", "repro", "VENV=/nonexistent-venv"],
                             cwd=PROJECT,
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()
    assert planned[-2:] == ["dvc repro", "/nonexistent-venv/bin/folio summary"]
