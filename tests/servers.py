"""Real servers for tests, on loopback only: `mlflow server`, `mlflow models serve` and a throwaway
PostgreSQL cluster. Each runs in its own process group (or, for PostgreSQL, its own data
directory) and is stopped when its `with` block ends; waits are bounded and a server that dies
early fails with the tail of its log. Also: MLflow in this process pointed at a server for a
block, GETs against its REST API, and what that API must show after a pipeline run."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests import pipeline_project
from tests.conftest import SHAKESPEARE_SHA256

BIN = Path(sys.executable).parent
STARTUP_SECONDS = 120


@contextlib.contextmanager
def tracking_at(uri: str) -> Iterator[None]:
    """MLflow in this process (pipeline.tracking reads MLFLOW_TRACKING_URI) pointed at `uri`
    while the block runs; afterwards mlflow's global URI and the environment are as before."""
    import mlflow

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(None)


def rest(server: str, endpoint: str, **query) -> dict:
    """GET an MLflow REST endpoint, e.g. rest(url, "runs/get", run_id=...)."""
    url = f"{server}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = STARTUP_SECONDS) -> None:
    """Poll `url` until it answers 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s:\n{_tail(log)}")


@contextlib.contextmanager
def process(args: list[str], log: Path, env: dict | None = None, cwd: Path | None = None) -> Iterator[subprocess.Popen]:
    """Run `args` in a new process group, output to `log`; stop the group afterwards."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _server_env() -> dict:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no GenAI job workers: 4 fewer processes
    return env


@contextlib.contextmanager
def mlflow_server(backend_uri: str, root: Path, port: int | None = None, extra_args: tuple[str, ...] = (),
                  env: dict[str, str] | None = None) -> Iterator[str]:
    """`mlflow server` on a loopback port (a free one by default) with artifacts proxied into
    root/artifacts, plus `extra_args` (e.g. `--app-name basic-auth`) and `env` added to its
    environment; yields its URL."""
    port = port or free_port()
    args = [str(BIN / "mlflow"), "server", "--backend-store-uri", backend_uri,
            "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", *extra_args]
    log = root / "mlflow-server.log"
    with process(args, log, env={**_server_env(), **(env or {})}) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/health", proc, log)
        yield url


@contextlib.contextmanager
def model_server(model_uri: str, tracking_uri: str, root: Path) -> Iterator[str]:
    """`mlflow models serve --env-manager local` for a registry URI; yields its URL."""
    port = free_port()
    args = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
            "-h", "127.0.0.1", "-p", str(port), "--workers", "1"]
    log = root / "model-server.log"
    env = {**_server_env(), "MLFLOW_TRACKING_URI": tracking_uri}
    with process(args, log, env=env, cwd=root) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/ping", proc, log)
        yield url


def postgres_bin_dir() -> Path | None:
    """Where initdb and pg_ctl live (Debian keeps them out of PATH), or None."""
    if shutil.which("initdb") and shutil.which("pg_ctl"):
        return Path(shutil.which("initdb")).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres_user(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user when we are root."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throwaway cluster on a free loopback port; yields the URI of its `postgres` database."""
    bin_dir = postgres_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="folio-pg-"))  # not under pytest's root-only tmp
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    port, data = free_port(), root / "data"

    def pg(*args: str) -> None:
        proc = subprocess.run(_as_postgres_user(list(args)), capture_output=True, text=True, timeout=120)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
                               f"\n{_tail(root / 'postgres.log')}")

    try:
        pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
           "--no-sync")
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log"), "-w",
           "-t", "60", "-o", f"-k {root} -h 127.0.0.1 -p {port} -F", "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def assert_tracked(server: str, project: Path) -> None:
    """What the server's REST API must show after `dvc repro` and `folio promote`."""
    run_id = json.loads((project / "models/run.json").read_text())["run_id"]
    registered = json.loads((project / "reports/registered_model.json").read_text())
    run = rest(server, "runs/get", run_id=run_id)["run"]
    assert run["info"]["status"] == "FINISHED"
    assert {"final_val_loss", "final_val_bits_per_byte"} <= {m["key"] for m in run["data"]["metrics"]}
    version = rest(server, "model-versions/get", name=registered["name"],
                   version=registered["version"])["model_version"]
    tags = {t["key"]: t["value"] for t in version["tags"]}
    assert version["run_id"] == run_id and tags["data.sha256"] == SHAKESPEARE_SHA256
    assert float(tags["val_bits_per_byte"]) > 0
    assert tags["git.commit"] == pipeline_project.git(project, "rev-parse", "HEAD").strip()
    holder = rest(server, "registered-models/alias", name=registered["name"], alias="champion")
    assert holder["model_version"]["version"] == str(registered["version"])
    assert tags["alias.champion.promoted_from"] == "none"
