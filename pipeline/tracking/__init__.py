"""MLflow glue: where runs go, tags, the corpus as a dataset input, and small logging helpers.
The training run itself is training_run.py; metrics that outlive an outage, spool.py; the model
registry, registry.py (with its pyfunc model and model card).

The default store is `sqlite:///<project>/mlflow.db` with artifacts in `<project>/mlartifacts`;
MLFLOW_TRACKING_URI overrides it. mlflow is imported lazily: `folio --help` stays fast.
A tracking server that does not answer fails `setup()` within seconds (TrackingUnavailable), and
MLflow's HTTP retries are bounded (a few seconds of backoff, not minutes) unless set otherwise.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

from pipeline.console import log
from pipeline.errors import StageError

EXPERIMENT = "folio"
# the UI opens a model-training experiment (runs, metrics, charts), not the GenAI view (traces)
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
HEALTH_TIMEOUT_SECONDS = 3
# MLflow retries a failing request 7 times with backoff factor 2 (minutes) and waits 120 s for an
# answer; a dead server should fail a stage in seconds (training spools instead: spool.py), so
# here a request is retried twice, about 2 s in all. Explicit settings in the environment win.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}


class TrackingUnavailable(StageError):
    """The tracking server does not answer."""


def _quiet_environment() -> None:
    # Telemetry phones home and hangs offline; set before mlflow is imported.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # noise in DVC logs
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def mlflow():
    _quiet_environment()
    import mlflow as _mlflow

    return _mlflow


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def check_server(uri: str, timeout: float = HEALTH_TIMEOUT_SECONDS) -> None:
    """Raise TrackingUnavailable unless the http(s) tracking server at `uri` answers /health."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answers (a proxy or an auth layer may refuse /health): let MLflow talk to it
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingUnavailable(
            f"the MLflow tracking server at {uri} does not answer ({reason}); start it, or unset "
            f"MLFLOW_TRACKING_URI to use the local store sqlite:///mlflow.db"
        ) from None


def setup() -> None:
    """Point mlflow at the store and make sure the `folio` experiment exists."""
    check_server(tracking_uri())
    ml = mlflow()
    ml.set_tracking_uri(tracking_uri())
    experiment = ml.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        artifacts = None
        if tracking_uri().startswith("sqlite:"):
            artifacts = (Path.cwd().resolve() / "mlartifacts").as_uri()
        ml.create_experiment(EXPERIMENT, artifact_location=artifacts, tags=EXPERIMENT_TAGS)
    elif any(experiment.tags.get(k) != v for k, v in EXPERIMENT_TAGS.items()):  # made before the tag
        for key, value in EXPERIMENT_TAGS.items():
            ml.MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)
    ml.set_experiment(EXPERIMENT)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def run_tags() -> dict[str, str]:
    tags = {}
    if commit := git_commit():
        tags["mlflow.source.git.commit"] = commit
    if exp_name := os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = exp_name
    return tags


def run_name(flat_params: dict) -> str:
    return (
        f"{flat_params['data.name']}-{flat_params['tokenizer.kind']}"
        f"-L{flat_params['model.n_layer']}d{flat_params['model.n_embd']}"
        f"-{time.strftime('%Y%m%d-%H%M%S')}"
    )


def log_corpus_dataset(name: str, manifest: dict) -> None:
    """Record the corpus as the run's one dataset input: name, the manifest's digest, source, size,
    files and documents."""
    url, sha256 = manifest["source"], manifest["sha256"]
    ml = mlflow()
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    if url.startswith(("http://", "https://")):
        source = HTTPDatasetSource(url)
    else:  # a local file: MLflow registers the same local source class twice and warns about it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(str(Path(url.removeprefix("file://")).resolve()))
    dataset = MetaDataset(source=source, name=name, digest=sha256[:16])
    tags = {"sha256": sha256, "size_bytes": str(manifest["bytes"]),
            "files": str(len(manifest["files"])), "documents": str(manifest["documents"])}
    ml.log_input(dataset, context="training", tags=tags)


def log_artifact(run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
    mlflow().MlflowClient().log_artifact(run_id, str(path), artifact_path)


def log_metrics(run_id: str, metrics: dict[str, float]) -> None:
    client = mlflow().MlflowClient()
    for key, value in metrics.items():
        client.log_metric(run_id, key, float(value))


def announce(run_id: str) -> None:
    log(f"MLflow run {run_id} in {tracking_uri()} (experiment '{EXPERIMENT}')")
