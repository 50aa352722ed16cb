"""What the MLflow UI shows of a training run (pipeline/tracking/training_run.py): the experiment's
training-view and primary-metric tags, eval curves in bits per byte logged first (the metric the
compare page plots), and MLflow's system metrics sampled while the run is open; without a real
training, against a throwaway sqlite store."""

from __future__ import annotations

import math
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline import params as params_module
from pipeline.tracking import store
from pipeline.tracking.training_run import TrainingRun

META = {"train_tokens": 900, "train_bytes": 1800, "val_tokens": 100, "val_bytes": 250,
        "bytes_per_token": 2.05}
PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def _training_run(tmp_path, monkeypatch, log, run_id: str | None = None) -> TrainingRun:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "corpus.txt").write_text("to be or not to be\n")
    manifest = {"source": str(tmp_path / "corpus.txt"), "sha256": "ab" * 32, "bytes": 19,
                "files": [{}], "documents": 1}
    store.setup()
    info = {"run_name": "views-test", "fingerprint": "f" * 16} | ({"run_id": run_id} if run_id else {})
    run = TrainingRun(params_module.load(PARAMS), info, manifest, META, SimpleNamespace(vocab_size=65), log)
    run.start()
    return run


@pytest.fixture
def training_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    monkeypatch.delenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", raising=False)  # on by default
    run = _training_run(tmp_path, monkeypatch, lines := [])
    yield run, store.mlflow().MlflowClient(), lines
    store.mlflow().end_run()


def test_the_experiment_opens_as_training_with_final_bits_per_byte_as_its_primary_metric(training_run):
    run, client, _ = training_run
    experiment = client.get_experiment(client.get_run(run.run_id).info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.experiment.primaryMetric.name"] == "final_val_bits_per_byte"
    assert experiment.tags["mlflow.experiment.primaryMetric.greaterIsBetter"] == "false"


def test_eval_curves_come_first_and_in_bits_per_byte(training_run):
    run, client, _ = training_run
    run.on_eval(0, {"train_loss": 2.0, "val_loss": 3.0, "best_val_loss": 3.0})
    run.on_step(1, {"train_loss": 1.9, "lr": 0.001})
    run.runlog.flush(now=True)
    metrics = client.get_run(run.run_id).data.metrics
    # the compare page's parallel-coordinates plot opens on the first metric every run logged
    assert next(iter(metrics)) == "eval_val_bits_per_byte"
    assert metrics["eval_val_bits_per_byte"] == pytest.approx(3.0 / math.log(2) * 100 / 250)
    assert metrics["eval_train_bits_per_byte"] == pytest.approx(2.0 / math.log(2) * 900 / 1800)
    assert metrics["eval_val_loss"] == 3.0 and metrics["train_loss"] == 1.9


def test_system_metrics_are_sampled_from_the_first_evaluation_on(training_run):
    run, client, lines = training_run
    time.sleep(1.5)
    assert not client.get_run(run.run_id).data.metrics  # nothing before the first evaluation
    run.on_eval(0, {"train_loss": 2.0, "val_loss": 3.0, "best_val_loss": 3.0})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(k.startswith("system/") for k in client.get_run(run.run_id).data.metrics):
            break
        time.sleep(0.5)
    run.abort()  # stops the sampler and sends what it holds
    metrics = client.get_run(run.run_id).data.metrics
    assert next(iter(metrics)) == "eval_val_bits_per_byte"  # the eval curves still come first
    for key in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"):
        assert key in metrics, sorted(metrics)
    assert 0 <= metrics["system/cpu_utilization_percentage"] <= 100
    assert not [line for line in lines if "system metrics" in line.lower()]


def _system_metrics_appear(client, run_id: str) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(k.startswith("system/") for k in client.get_run(run_id).data.metrics):
            return True
        time.sleep(0.5)
    return False


def test_a_resumed_run_samples_the_machine_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    monkeypatch.delenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", raising=False)
    first = _training_run(tmp_path, monkeypatch, print)
    first.on_step(1, {"train_loss": 2.0})
    first.abort("KILLED")  # before its first evaluation: no system metrics yet
    client = store.mlflow().MlflowClient()
    assert not [k for k in client.get_run(first.run_id).data.metrics if k.startswith("system/")]
    resumed = _training_run(tmp_path, monkeypatch, print, run_id=first.run_id)
    assert resumed.run_id == first.run_id
    assert _system_metrics_appear(client, resumed.run_id)
    resumed.abort()


def test_system_metrics_can_be_switched_off(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    run = _training_run(tmp_path, monkeypatch, print)
    run.on_eval(0, {"train_loss": 2.0, "val_loss": 3.0, "best_val_loss": 3.0})
    time.sleep(1.5)
    store.mlflow().end_run()
    client = store.mlflow().MlflowClient()
    assert not [k for k in client.get_run(run.run_id).data.metrics if k.startswith("system/")]
