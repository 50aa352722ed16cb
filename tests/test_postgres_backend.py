"""The same against PostgreSQL: a throwaway cluster from the distribution's binaries (`.ci/run`
installs them when missing) on a loopback port, `mlflow server` with a postgresql:// backend
store, `dvc repro` and `folio promote` against it, and run, model version and alias read back
through the REST API. Skipped, saying why, where PostgreSQL or psycopg is missing."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests import pipeline_project as pp
from tests import servers

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if servers.postgres_bin_dir() is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql; .ci/run does)")
    pytest.importorskip("psycopg", reason="psycopg (in the dev extra) is SQLAlchemy's PostgreSQL driver")
    root = tmp_path_factory.mktemp("pg-mlflow")
    with servers.postgres() as database, servers.mlflow_server(database, root) as url:
        yield url


def test_pipeline_against_a_postgresql_backed_tracking_server(prepared_project, server, tmp_path_factory):
    project = pp.clone(prepared_project, tmp_path_factory.mktemp("pg") / "folio")
    output = pp.run(project, "dvc", "repro", tracking_uri=server)
    assert pp.ran(output) == {"train", "evaluate", "sample", "register"}, output
    with servers.tracking_at(server):
        result = CliRunner().invoke(app, ["promote", "1", "--params", str(project / "params.yaml")])
    assert result.exit_code == 0, result.output
    servers.assert_tracked(server, project)
