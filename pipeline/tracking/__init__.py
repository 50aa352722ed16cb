"""MLflow glue: where runs go, tags, the corpus as a dataset input, and small logging helpers.
The training run itself is training_run.py; metrics that outlive an outage, spool.py; the model
registry, registry.py (with its pyfunc model and model card).

The default store is `sqlite:///<project>/mlflow.db` with artifacts in `<project>/mlartifacts`;
MLFLOW_TRACKING_URI overrides it. mlflow is imported lazily: `folio --help` stays fast.
A tracking server that does not answer fails `setup()` within seconds (TrackingUnavailable), and
MLflow's HTTP retries are bounded (a few seconds of backoff, not minutes) unless set otherwise.
A server that refuses the credentials (401), the Host header or the action (403) becomes one line
naming the user and what to ask for (`refusal`; the team server: docs/team-server.md).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
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


class TrackingRefused(StageError):
    """The tracking server refused the credentials (401), the Host header or the action (403)."""


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


# what a refused REST call was doing, by its endpoint (first match), and the grant that allows it
REFUSED_ACTIONS = (
    ("registered-models/alias", "move an alias of the registered model", "EDIT on the registered model"),
    ("model-versions/create", "register a version of the registered model", "EDIT on the registered model"),
    ("registered-models/", "change the registered model", "EDIT on the registered model"),
    ("model-versions/", "change a version of the registered model", "EDIT on the registered model"),
    ("", f"write to the experiment '{EXPERIMENT}'", f"EDIT on the experiment '{EXPERIMENT}'"),
)
_ENDPOINT = re.compile(r"/api/[\d.]+/(mlflow[\w-]*/\S+)")


def _refused_status(err: BaseException) -> int | None:
    """401 or 403 if `err` is the tracking server refusing a request: MLflow's RestException or
    MlflowException (error_code UNAUTHENTICATED / PERMISSION_DENIED), or requests' HTTPError from
    its artifact proxy."""
    if not tracking_uri().startswith(("http://", "https://")):
        return None
    status = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}.get(getattr(err, "error_code", None))
    response = getattr(err, "response", None)
    if status is None and response is not None and getattr(response, "status_code", None) in (401, 403):
        same_server = urllib.parse.urlsplit(getattr(response, "url", "") or "").netloc
        status = response.status_code if same_server == urllib.parse.urlsplit(tracking_uri()).netloc else None
    return status


def refusal(err: BaseException, doing: str | None = None, grant: str | None = None) -> TrackingRefused | None:
    """The one line for a 401 or 403 from the tracking server, else None. `doing` (what the user
    may not do) and `grant` (what to ask an admin for) default to a guess from the endpoint."""
    status = _refused_status(err)
    if status is None:
        return None
    from mlflow.utils.credentials import read_mlflow_creds

    uri, user, text = tracking_uri(), read_mlflow_creds().username, str(err)
    if status == 401 and user:
        return TrackingRefused(f"the MLflow server at {uri} refused the password of user {user!r} (401); "
                               "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    if status == 401:
        return TrackingRefused(f"the MLflow server at {uri} asks who you are (401); set "
                               "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (an admin "
                               "creates users: docs/team-server.md)")
    if "Invalid Host header" in text:
        host = urllib.parse.urlsplit(uri).netloc
        return TrackingRefused(f"the MLflow server at {uri} refuses the host name {host!r} (403: not in "
                               f"its --allowed-hosts); use an address it allows, or ask its admin to "
                               f"add {host} to --allowed-hosts")
    if doing is None:
        endpoint = match[1].rstrip(".'").partition("?")[0] if (match := _ENDPOINT.search(text)) else ""
        doing, grant = next((d, g) for key, d, g in REFUSED_ACTIONS if key in endpoint)
        if re.search(r"/(get|search|list)[\w-]*$", endpoint):  # default_permission is not READ
            doing, grant = f"read {endpoint}", "READ on the experiment or registered model it reads"
    who = f"user {user!r}" if user else "this client (no MLFLOW_TRACKING_USERNAME)"
    return TrackingRefused(f"{who} may not {doing} on the MLflow server at {uri} (403); ask an "
                           f"admin for {grant} (docs/team-server.md)")


@contextlib.contextmanager
def refusals(doing: str, grant: str):
    """Inside the block, a 403 from the tracking server names `doing` and `grant` (a 401, the
    credentials) in one line: TrackingRefused."""
    try:
        yield
    except Exception as err:
        refused = refusal(err, doing, grant)
        if refused is None:
            raise
        raise refused from None


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
        try:
            for key, value in EXPERIMENT_TAGS.items():
                ml.MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)
        except Exception as err:  # a user who may only read it (a promoter): the next writer tags it
            if _refused_status(err) != 403:
                raise
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
