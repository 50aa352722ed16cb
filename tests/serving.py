"""Helpers for the `folio serve` tests: a sqlite registry holding two versions of a tiny GPT built
here, `folio serve` as a real process on a free loopback port (stopped when the block ends), and
MLflow's REST server in this process over that registry, which a test can stop and start again
(a registry that goes away and comes back)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from folio import checkpoint
from folio.model import GPT, GPTConfig
from folio.tokenizers import CharTokenizer, save_tokenizer
from pipeline.params import SampleParams
from pipeline.tracking import registry
from pipeline.tracking import store as tracking
from tests.servers import free_port, process, tracking_at, wait_until_up

TEXT = "ROMEO: the quick brown fox jumps over the lazy dog.\nJULIET: PACK MY BOX WITH FIVE DOZEN JUGS!\n" * 20
NAME = "folio-serve"
BLOCK_SIZE = 32
API_KEY = "test-key-123"
URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@dataclass(frozen=True)
class Registry:
    root: Path
    uri: str  # sqlite:///...
    checkpoints: list[Path]  # version i+1's weights
    tokenizer_dir: Path


def tiny_checkpoint(path: Path, tokenizer, seed: int) -> Path:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=BLOCK_SIZE))
    checkpoint.save(path, {
        "model": model.state_dict(), "model_config": model.config.to_dict(), "step": 1,
        "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "digest": tokenizer.digest},
        "best_val_loss": 2.0})
    return path


def build_registry(root: Path, versions: int = 2) -> Registry:
    """`versions` versions of NAME (different random weights), @champion on version 1."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tokenizer = CharTokenizer.train(TEXT)
    save_tokenizer(tokenizer, root / "tokenizer")
    paths = [tiny_checkpoint(root / f"v{i}.pt", tokenizer, seed=i) for i in range(1, versions + 1)]
    sample = SampleParams(prompts=["ROMEO:"], max_new_tokens=8, temperature=0.8, top_k=20, seed=1)
    with contextlib.chdir(root), tracking_at(uri):
        tracking.setup()
        for i, path in enumerate(paths, 1):
            with tracking.mlflow().start_run(run_name=f"tiny-{i}") as run:
                tracking.mlflow().log_metric("final_val_bits_per_byte", 3.0 - i / 10)
            logged = registry.log_model(run.info.run_id, path, root / "tokenizer", sample)
            registry.register(logged.model_uri, NAME, {"val_bits_per_byte": str(3.0 - i / 10)})
        registry.promote(NAME, 1, "champion", "bits_per_byte", force=True)
    return Registry(root, uri, paths, root / "tokenizer")


def move_champion(reg: Registry, version: int) -> None:
    with contextlib.chdir(reg.root), tracking_at(reg.uri):
        registry.promote(NAME, version, "champion", "bits_per_byte", force=True)


def serve_env(tracking_uri: str) -> dict:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "FOLIO_API_KEY": ""}
    env.pop("FOLIO_DEBUG", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    return env


@contextlib.contextmanager
def folio_serve(args: list[str], root: Path, tracking_uri: str, log_name: str = "serve.log") -> Iterator[tuple[str, Path]]:
    """`folio serve ARGS --port <free>` in root; yields (base URL, its log file)."""
    port = free_port()
    log = root / log_name
    command = [sys.executable, "-m", "pipeline.cli", "serve", *args, "--port", str(port)]
    with process(command, log, env=serve_env(tracking_uri), cwd=root) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/health", proc, log, timeout=90)
        yield url, log


def request(url: str, body=None, key: str | None = None, raw: bytes | None = None, timeout: float = 30):
    """(status, headers, parsed JSON body) of a GET (body None) or a POST of JSON."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout:g}s: {what}")


class RestRegistry:
    """MLflow's tracking REST server (its Flask app, under werkzeug) in this process, over the
    sqlite store `backend_uri`, on a fixed loopback port: `stop()` makes the registry unreachable,
    `start()` brings it back at the same address."""

    def __init__(self, backend_uri: str):
        os.environ["_MLFLOW_SERVER_FILE_STORE"] = backend_uri
        os.environ["_MLFLOW_SERVER_REGISTRY_STORE"] = backend_uri
        from mlflow.server import app

        self.app, self.port, self.server = app, free_port(), None
        self.environment = {key: os.environ.get(key) for key in URI_VARIABLES}
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def close(self) -> None:
        """Stop it, and undo what MLflow's server code set in this process: its handlers point
        mlflow's tracking and registry URIs at their store, globally and in the environment."""
        import mlflow

        self.stop()
        os.environ.pop("_MLFLOW_SERVER_FILE_STORE", None)
        os.environ.pop("_MLFLOW_SERVER_REGISTRY_STORE", None)
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        for key, value in self.environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
