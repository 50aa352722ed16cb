"""A throwaway git copy of the project for tests that run the real pipeline: what is copied, the
tiny params that make `dvc repro` take seconds, a loopback HTTP server for the corpus, and
running commands (dvc, folio, git) inside the copy, and a `folio train` in the background."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import yaml

from pipeline.stages import STAGES
from tests.conftest import PROJECT, _QuietHandler

COPIED = ["pyproject.toml", "params.yaml", "dvc.yaml", ".dvc/config", ".dvc/.gitignore",
          ".dvcignore", ".gitignore", "src", "pipeline", "data/suites"]
TINY = {
    "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
    "train": {"max_iters": 30, "batch_size": 8, "eval_interval": 10, "eval_iters": 2,
              "warmup_iters": 5, "device": "cpu"},
    "sample": {"max_new_tokens": 40},
}


def env(tracking_uri: str | None = None) -> dict:
    """The test's environment for a subprocess: the venv's tools first, MLflow pointed at
    `tracking_uri` (None: the project's own sqlite store), no data mirror."""
    result = dict(os.environ)
    result["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{result['PATH']}"
    result.pop("MLFLOW_TRACKING_URI", None)
    result.pop("FOLIO_DATA_MIRROR", None)
    if tracking_uri:
        result["MLFLOW_TRACKING_URI"] = tracking_uri
    return result


def run(project: Path, *args: str, check: bool = True, tracking_uri: str | None = None,
        timeout: float = 600) -> str:
    """Run a command in the project; its stdout + stderr, or AssertionError naming the failure."""
    proc = subprocess.run(args, cwd=project, env=env(tracking_uri), capture_output=True, text=True,
                          timeout=timeout)
    output = proc.stdout + proc.stderr
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{output}")
    return output


def git(project: Path, *args: str) -> str:
    return run(project, "git", "-c", "user.name=folio-test", "-c", "user.email=test@folio.invalid",
               *args)


def ran(output: str) -> set[str]:
    """The stages a `dvc repro` output says it ran."""
    return {name for name in STAGES if f"Running stage '{name}'" in output}


def set_params(project: Path, updates: dict) -> None:
    path = project / "params.yaml"
    tree = yaml.safe_load(path.read_text())
    for section, values in updates.items():
        tree.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(tree, sort_keys=False))


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """A loopback HTTP server for `directory` while the block runs; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def make_project(root: Path, corpus_url: str, params: dict | None = None) -> Path:
    """Copy the project to `root` with TINY params (then `params`) reading the corpus from
    `corpus_url`, as a git repository with one commit."""
    root.mkdir(parents=True)
    for name in COPIED:
        src = PROJECT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    set_params(root, {**TINY, "data": {"url": corpus_url}})
    if params:
        set_params(root, params)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "test copy")
    return root


def clone(template: Path, root: Path) -> Path:
    """A copy of a project made by `make_project` (git, DVC cache, outputs, dvc.lock and all)."""
    shutil.copytree(template, root, symlinks=True)
    return root


class Training:
    """`folio train --set ...` in the background, its output in a file; killed at the end."""

    def __init__(self, project: Path, sets: list[str], tracking_uri: str | None = None):
        self.project, self.log = project, project.parent / f"train-{time.monotonic_ns()}.log"
        args = ["folio", "train", *(f"--set={s}" for s in sets)]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(args, cwd=project, env=env(tracking_uri), stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, condition, timeout: float = 120, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            assert self.proc.poll() is None, f"folio train exited early ({what}):\n{self.output()}"
            time.sleep(0.1)
        raise TimeoutError(f"waited {timeout}s for {what}:\n{self.output()}")

    def checkpoint_step(self) -> int:
        from folio import checkpoint

        last = self.project / "models" / "last.pt"
        try:
            return checkpoint.load(last)["step"] if last.exists() else -1
        except checkpoint.CheckpointError:  # being replaced right now
            return -1

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
