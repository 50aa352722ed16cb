"""The team setup for real, on loopback: `dvc repro` against an `mlflow server` (sqlite backend,
artifacts proxied by the server) through MLFLOW_TRACKING_URI; run, model version, tags and alias
read back through the server's REST API; the champion loaded by `mlflow.pyfunc.load_model` in a
fresh Python process, served by `mlflow models serve` and answering a real POST /invocations, and
used by `folio generate --model`; `folio runs`; then the pipeline's outputs pushed to a DVC
remote, deleted with the cache, pulled back and compared byte for byte."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from tests import pipeline_project as pp
from tests import servers
from tests.conftest import SHAKESPEARE_SHA256

pytestmark = pytest.mark.e2e
PREDICT = {"max_new_tokens": 20, "temperature": 0.8, "top_k": 20, "seed": 1}
runner = CliRunner()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    with servers.mlflow_server(f"sqlite:///{root / 'mlflow.db'}", root) as url:
        yield url


@pytest.fixture(scope="module")
def project(prepared_project, server, tmp_path_factory):
    """A copy of the prepared project whose training and later stages ran against the server."""
    root = pp.clone(prepared_project, tmp_path_factory.mktemp("team") / "folio")
    output = pp.run(root, "dvc", "repro", tracking_uri=server)
    assert pp.ran(output) == {"train", "evaluate", "sample", "register"}, output
    return root


@pytest.fixture(scope="module")
def champion(project, server) -> str:
    """`folio promote` gives the registered version @champion; returns models:/<name>@champion."""
    registered = json.loads((project / "reports/registered_model.json").read_text())
    with servers.tracking_at(server):
        result = runner.invoke(app, ["promote", str(registered["version"]),
                                     "--params", str(project / "params.yaml")])
    assert result.exit_code == 0, result.output
    return f"models:/{registered['name']}@champion"


def test_run_version_and_alias_are_visible_through_the_rest_api(project, server, champion):
    servers.assert_tracked(server, project)


def test_model_card_is_an_artifact_of_the_version(project, server, champion, tmp_path):
    code = ("import mlflow, sys; print(mlflow.artifacts.download_artifacts("
            "artifact_uri=sys.argv[1] + '/model_card.md', dst_path=sys.argv[2]))")
    out = subprocess.run([sys.executable, "-c", code, champion, str(tmp_path)], env=pp.env(server),
                         capture_output=True, text=True, timeout=120, check=True).stdout
    card = Path(out.strip().splitlines()[-1]).read_text()
    assert card == (project / "reports/model_card.md").read_text()
    assert SHAKESPEARE_SHA256 in card and "## How to load" in card


def _fresh_process_predict(champion: str, server: str, cwd: Path) -> list[str]:
    code = ("import json, sys, mlflow; model = mlflow.pyfunc.load_model(sys.argv[1]); "
            "print(json.dumps(model.predict(['ROMEO:'], params=json.loads(sys.argv[2]))))")
    proc = subprocess.run([sys.executable, "-c", code, champion, json.dumps(PREDICT)], cwd=cwd,
                          env=pp.env(server), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_champion_loads_in_a_fresh_process_and_is_served_over_http(champion, server, tmp_path):
    (text,) = _fresh_process_predict(champion, server, tmp_path)
    assert text.startswith("ROMEO:") and len(text) > len("ROMEO:")
    with servers.model_server(champion, server, tmp_path) as url:
        request = urllib.request.Request(
            f"{url}/invocations", data=json.dumps({"inputs": ["ROMEO:"], "params": PREDICT}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            served = json.load(response)
    assert served == {"predictions": [text]}  # same model, same seed: the same text


def test_generate_and_runs_read_the_registry(champion, server):
    with servers.tracking_at(server):
        generated = runner.invoke(app, ["generate", "--model", champion, "--max-new-tokens", "20",
                                        "--temperature", "0.8", "--top-k", "20", "--seed", "1", "ROMEO:"])
        listed = runner.invoke(app, ["runs"])
    assert generated.exit_code == 0 and generated.output.startswith("ROMEO:"), generated.output
    assert listed.exit_code == 0, listed.output
    assert "folio-tinyshakespeare v1 @champion" in listed.output  # the model named with its version


def _cached_outputs(project: Path) -> list[Path]:
    """Every dvc.yaml output DVC caches (not `cache: false`), resolved for this project."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    name = yaml.safe_load((project / "params.yaml").read_text())["data"]["name"]
    found = []
    for stage in stages.values():
        for out in stage.get("outs", []):
            path, options = (out, {}) if isinstance(out, str) else next(iter(out.items()))
            if (options or {}).get("cache", True):
                found.append(project / path.replace("${data.name}", name))
    return found


def _digests(paths: list[Path], project: Path) -> dict[str, str]:
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    return {str(f.relative_to(project)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_outputs_survive_a_round_trip_through_a_dvc_remote(project, tmp_path):
    outputs = _cached_outputs(project)
    assert {"models", "data/prepared", "data/tokenizer"} <= {str(p.relative_to(project)) for p in outputs}
    before = _digests(outputs, project)
    assert any(key.startswith("models/") for key in before)
    pp.run(project, "dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"))
    pp.run(project, "dvc", "push")
    shutil.rmtree(project / ".dvc" / "cache")
    for path in outputs:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert _digests(outputs, project) == {}
    pp.run(project, "dvc", "pull")
    assert _digests(outputs, project) == before
    assert "up to date" in pp.run(project, "dvc", "status")
