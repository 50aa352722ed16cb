"""A tracking server that refuses the credentials (401), the Host header or the action (403):
one line naming the user and what to ask for (`refusal`; the team server: docs/team-server.md)."""

from __future__ import annotations

import contextlib
import re
import urllib.parse

from pipeline.errors import StageError
from pipeline.tracking.store import EXPERIMENT, tracking_uri


class TrackingRefused(StageError):
    """The tracking server refused the credentials (401), the Host header or the action (403)."""


# what a refused REST call was doing, by its endpoint (first match), and the grant that allows it
REFUSED_ACTIONS = (
    ("registered-models/alias", "move an alias of the registered model", "EDIT on the registered model"),
    ("model-versions/create", "register a version of the registered model", "EDIT on the registered model"),
    ("registered-models/", "change the registered model", "EDIT on the registered model"),
    ("model-versions/", "change a version of the registered model", "EDIT on the registered model"),
    ("", f"write to the experiment '{EXPERIMENT}'", f"EDIT on the experiment '{EXPERIMENT}'"),
)
_ENDPOINT = re.compile(r"/api/[\d.]+/(mlflow[\w-]*/\S+)")


def refused_status(err: BaseException) -> int | None:
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
    status = refused_status(err)
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


