"""The team server of docs/team-server.md for real, on loopback: `mlflow server --app-name
basic-auth --allowed-hosts ...` with the users and grants the page gives (ci and promoter hold
EDIT on the registered model, trainer EDIT on the experiment only, reader nothing: the default
READ). Refused: a request without credentials (401), a wrong password or none (one line from
`folio runs`), a Host header the server does not allow (403, and one line), a reader creating a
run (403, one line). Allowed: `dvc repro` as ci with MLFLOW_TRACKING_USERNAME/PASSWORD,
`folio promote` as promoter, `folio runs` as reader. A reader cannot move @champion (one line,
exit 1, alias and history unchanged); trainer cannot register into the team's model (one line,
no version) but can into a model of their own. A password changed mid-run: the metrics wait in
the spool after one warning, are not retried until the run's last flush, which stops with one
line, and the next run sends them. And the limitation the page states: EDIT on a registered
model registers versions *and* moves its aliases (MLflow 3.17 has no finer grant), so ci could
move an alias too."""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from pipeline.tracking import access
from pipeline.cli import app
from pipeline.tracking import registry
from pipeline.tracking.spool import RunLog, replay
from tests import pipeline_project as pp
from tests import servers

pytestmark = pytest.mark.e2e
runner = CliRunner()
MODEL = "folio-tinyshakespeare"  # the registered model of the test project's params
PASSWORDS = {"admin": "admin-password-0", "ci": "ci-password-0001", "promoter": "promoter-password-0",
             "trainer": "trainer-password-0", "reader": "reader-password-0"}
AUTH_INI = """[mlflow]
default_permission = READ
database_uri = sqlite:///{database}
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = 60
"""


@dataclass(frozen=True)
class Team:
    url: str
    experiment_id: str


@contextlib.contextmanager
def signed_in(url: str, user: str | None, password: str | None = None) -> Iterator[None]:
    """MLflow in this process (and the subprocesses it starts) talking to `url` as `user`
    (None: no credentials at all) while the block runs."""
    with servers.tracking_at(url), pytest.MonkeyPatch.context() as patch:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
            patch.delenv(key, raising=False)
        if user is not None:
            patch.setenv("MLFLOW_TRACKING_USERNAME", user)
            patch.setenv("MLFLOW_TRACKING_PASSWORD", password or PASSWORDS[user])
        yield


def auth_client(url: str):
    from mlflow.server import get_app_client

    return get_app_client("basic-auth", tracking_uri=url)


def set_up_team(url: str) -> str:
    """What docs/team-server.md has the admin do once; returns the experiment's id."""
    import mlflow

    auth, client = auth_client(url), mlflow.MlflowClient(url)
    experiment_id = client.create_experiment("folio")
    client.create_registered_model(MODEL)
    for user in ("ci", "promoter", "trainer", "reader"):
        auth.create_user(user, PASSWORDS[user])
    auth.grant_user_permission("ci", "experiment", experiment_id, "EDIT")
    auth.grant_user_permission("ci", "registered_model", MODEL, "EDIT")
    auth.grant_user_permission("trainer", "experiment", experiment_id, "EDIT")
    auth.grant_user_permission("promoter", "registered_model", MODEL, "EDIT")
    return experiment_id


@pytest.fixture(scope="module")
def team(tmp_path_factory) -> Iterator[Team]:
    """One basic-auth server for the module, Host header checked, users and grants set up."""
    root = tmp_path_factory.mktemp("team-server")
    (root / "basic_auth.ini").write_text(AUTH_INI.format(database=root / "basic_auth.db"))
    port = servers.free_port()
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(root / "basic_auth.ini"),
           "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORDS["admin"],
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-test-only-secret"}
    args = ("--app-name", "basic-auth", "--allowed-hosts", f"127.0.0.1:{port}")
    with servers.mlflow_server(f"sqlite:///{root / 'mlflow.db'}", root, port, args, env) as url:
        with signed_in(url, "admin"):
            experiment_id = set_up_team(url)
        yield Team(url, experiment_id)


@pytest.fixture(scope="module")
def project(prepared_project, team, tmp_path_factory) -> Path:
    """A copy of the prepared project whose training and later stages ran as ci."""
    root = pp.clone(prepared_project, tmp_path_factory.mktemp("team") / "folio")
    with signed_in(team.url, "ci"):
        output = pp.run(root, "dvc", "repro", tracking_uri=team.url)
    assert pp.ran(output) == {"train", "evaluate", "sample", "register"}, output
    return root


def get(url: str, path: str, user: str | None = None, host: str | None = None) -> tuple[int, str]:
    """GET `path` from the server, as `user` (basic auth) and with a Host header if given."""
    request = urllib.request.Request(f"{url}{path}")
    if user:
        token = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    if host:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def error_line(output: str) -> str:
    """The one `error:` line of a command's output (and no traceback)."""
    assert "Traceback" not in output, output
    (line,) = [line for line in output.splitlines() if line.startswith("error:")]
    return line


def registered_model(url: str):
    """The team's registered model, as the reader sees it."""
    import mlflow

    with signed_in(url, "reader"):
        return mlflow.MlflowClient().get_registered_model(MODEL)


def champion(url: str) -> str | None:
    return registered_model(url).aliases.get("champion")


def test_a_request_without_credentials_is_refused(team):
    assert get(team.url, "/health")[0] == 200  # a load balancer's probe needs no password
    status, body = get(team.url, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=folio")
    assert status == 401 and "not authenticated" in body
    assert get(team.url, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=folio", "reader")[0] == 200


def test_a_wrong_password_or_none_is_one_line(team):
    with signed_in(team.url, "reader", "not-the-password"):
        wrong = runner.invoke(app, ["runs"])
    with signed_in(team.url, None):
        missing = runner.invoke(app, ["runs"])
    assert wrong.exit_code == missing.exit_code == 1
    assert error_line(wrong.output) == (
        f"error: runs: the MLflow server at {team.url} refused the password of user 'reader' (401); "
        "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    assert error_line(missing.output).startswith(
        f"error: runs: the MLflow server at {team.url} asks who you are (401); set MLFLOW_TRACKING_USERNAME")


def test_a_host_header_not_allowed_is_refused(team):
    path = "/api/2.0/mlflow/experiments/get-by-name?experiment_name=folio"
    status, body = get(team.url, path, "admin", host="mlflow.attacker.example")
    assert status == 403 and "Invalid Host header" in body
    port = team.url.rsplit(":", 1)[1]
    with signed_in(f"http://localhost:{port}", "admin"):  # the same server, by a name it does not allow
        result = runner.invoke(app, ["runs"])
    assert result.exit_code == 1
    assert error_line(result.output) == (
        f"error: runs: the MLflow server at http://localhost:{port} refuses the host name "
        f"'localhost:{port}' (403: not in its --allowed-hosts); use an address it allows, or ask its "
        f"admin to add localhost:{port} to --allowed-hosts")


def test_a_reader_may_not_write_to_the_experiment(team):
    import mlflow

    with signed_in(team.url, "reader"), pytest.raises(mlflow.exceptions.MlflowException) as denied:
        mlflow.MlflowClient().create_run(team.experiment_id)  # what the train stage does first
    with signed_in(team.url, "reader"):
        line = str(access.refusal(denied.value))
    assert line == (f"user 'reader' may not write to the experiment 'folio' on the MLflow server at "
                    f"{team.url} (403); ask an admin for EDIT on the experiment 'folio' "
                    "(docs/team-server.md)")


def test_a_promoter_promotes_and_a_reader_cannot(project, team):
    import mlflow

    registered = json.loads((project / "reports/registered_model.json").read_text())
    assert registered["name"] == MODEL
    params = ["--params", str(project / "params.yaml")]
    with signed_in(team.url, "promoter"):
        promoted = runner.invoke(app, ["promote", str(registered["version"]), *params])
    assert promoted.exit_code == 0, promoted.output
    assert champion(team.url) == str(registered["version"])
    with signed_in(team.url, "ci"):  # a second version for the reader to try to move @champion to
        first = mlflow.MlflowClient().get_model_version(MODEL, str(registered["version"]))
        second = registry.register(first.source, MODEL, first.tags).version
    before = registered_model(team.url).tags
    with signed_in(team.url, "reader"):
        refused = runner.invoke(app, ["promote", str(second), "--force", *params])
        listed = runner.invoke(app, ["runs"])
    assert refused.exit_code == 1
    assert error_line(refused.output) == (
        f"error: promote: user 'reader' may not move @champion of {MODEL} on the MLflow server at "
        f"{team.url} (403); ask an admin for EDIT on the registered model {MODEL} (docs/team-server.md)")
    assert champion(team.url) == str(registered["version"])  # the alias and its history as they were
    assert registered_model(team.url).tags == before
    assert listed.exit_code == 0, listed.output  # reading is everyone's
    assert f"{MODEL} v{registered['version']} @champion" in listed.output


def test_a_trainer_registers_only_into_a_model_of_their_own(project, team):
    """What the register stage does after logging the model (registry.register), as trainer."""
    registered = json.loads((project / "reports/registered_model.json").read_text())
    model_uri = f"models:/{registered['model_id']}"

    def team_versions() -> list[str]:
        with signed_in(team.url, "reader"):
            return sorted(v.version for v in registry.versions(MODEL))

    before = team_versions()
    with signed_in(team.url, "trainer"):
        with pytest.raises(access.TrackingRefused) as refused:
            registry.register(model_uri, MODEL, {})
        own = registry.register(model_uri, f"{MODEL}-trainer", {})  # theirs: they create it
    assert str(refused.value) == (
        f"user 'trainer' may not register a version of {MODEL} on the MLflow server at {team.url} "
        f"(403); ask an admin for EDIT on the registered model {MODEL} (docs/team-server.md)")
    assert team_versions() == before
    assert (own.name, own.version) == (f"{MODEL}-trainer", "1")


def test_edit_on_the_model_moves_its_aliases_too(project, team):
    """The limitation docs/team-server.md states: MLflow 3.17 asks EDIT on the registered model
    both to register a version and to set an alias. If this fails, MLflow can tell them apart:
    update the page and give ci the narrower grant."""
    import mlflow

    with signed_in(team.url, "ci"):
        client = mlflow.MlflowClient()
        client.set_registered_model_alias(MODEL, "limitation", "1")
        assert client.get_registered_model(MODEL).aliases["limitation"] == "1"
        with pytest.raises(mlflow.exceptions.MlflowException) as denied:  # deleting one asks MANAGE
            client.delete_registered_model_alias(MODEL, "limitation")
    assert denied.value.error_code == "PERMISSION_DENIED"


def test_a_password_changed_mid_run_keeps_the_metrics_and_asks_once(team, tmp_path, monkeypatch):
    import mlflow

    with signed_in(team.url, "admin"):
        auth_client(team.url).create_user("rotating", "rotating-password-0")
        auth_client(team.url).grant_user_permission("rotating", "experiment", team.experiment_id, "EDIT")
    lines, sends = [], []
    with signed_in(team.url, "rotating", "rotating-password-0"):
        run_id = mlflow.MlflowClient().create_run(team.experiment_id).info.run_id
        runlog = RunLog(run_id, lines.append, spool_dir=tmp_path / "spool")
        send = runlog._send
        monkeypatch.setattr(runlog, "_send", lambda records: (sends.append(len(records)), send(records)))
        runlog.metrics(1, {"train_loss": 1.0})
        assert runlog.flush() is True
        with signed_in(team.url, "admin"):  # the admin changes the password mid-run
            auth_client(team.url).update_user_password("rotating", "rotating-password-1")
        for step in (2, 3, 4):
            runlog.metrics(step, {"train_loss": 1.0 / step})
            assert runlog.flush(now=False) is False
        assert len(sends) == 2 and runlog.spooled == 3  # one refused try, then no more until the end
        with pytest.raises(access.TrackingRefused) as refused:
            runlog.flush(now=True)
    assert len(sends) == 3 and runlog.spooled == 3
    (warning,) = lines
    assert warning.startswith(f"warning: the MLflow server at {team.url} refused the password of user "
                              "'rotating' (401)")
    assert "training goes on, and metrics wait in" in warning
    assert "\n" not in str(refused.value) and "3 metrics wait in" in str(refused.value)
    with signed_in(team.url, "rotating", "rotating-password-1"):  # the next run, with the new password
        replay(lines.append, spool_dir=tmp_path / "spool")
        history = mlflow.MlflowClient().get_metric_history(run_id, "train_loss")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert not runlog.spool.exists()
