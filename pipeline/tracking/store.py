"""Where runs go: the tracking store, whether it answers, the `folio` experiment, and writing to
a run by its id.

The default store is `sqlite:///<project>/mlflow.db` with artifacts in `<project>/mlartifacts`;
MLFLOW_TRACKING_URI overrides it. <project> is DVC's DVC_ROOT where DVC runs the command, else the
working directory: a queued experiment (`dvc exp run --queue`) runs in a temporary copy that DVC
deletes afterwards, and DVC_ROOT names the real project there, so its runs are not lost with it. mlflow is imported lazily (`mlflow()`): `folio --help` stays fast.
A tracking server that does not answer fails `setup()` within seconds (TrackingUnavailable), and
MLflow's HTTP retries are bounded (a few seconds of backoff, not minutes) unless set otherwise.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.console import log
from pipeline.errors import StageError

EXPERIMENT = "folio"
# the UI opens a model-training experiment (runs, metrics, charts), not the GenAI view (traces);
# the primary metric, in MLflow's own tags, is the one every run is judged by (lower is better)
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development",
                   "mlflow.experiment.primaryMetric.name": "final_val_bits_per_byte",
                   "mlflow.experiment.primaryMetric.greaterIsBetter": "false"}
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


def project_root() -> Path:
    """Where the default store lives: the DVC project running this command (DVC_ROOT), else here."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


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
            artifacts = (project_root() / "mlartifacts").as_uri()
        ml.create_experiment(EXPERIMENT, artifact_location=artifacts, tags=EXPERIMENT_TAGS)
    elif any(experiment.tags.get(k) != v for k, v in EXPERIMENT_TAGS.items()):  # made before the tag
        try:
            for key, value in EXPERIMENT_TAGS.items():
                ml.MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)
        except Exception as err:  # a user who may only read it (a promoter): the next writer tags it
            if getattr(err, "error_code", None) != "PERMISSION_DENIED":
                raise
    ml.set_experiment(EXPERIMENT)


def log_artifact(run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
    mlflow().MlflowClient().log_artifact(run_id, str(path), artifact_path)


def log_metrics(run_id: str, metrics: dict[str, float]) -> None:
    client = mlflow().MlflowClient()
    for key, value in metrics.items():
        client.log_metric(run_id, key, float(value))


def announce(run_id: str) -> None:
    log(f"MLflow run {run_id} in {tracking_uri()} (experiment '{EXPERIMENT}')")
