"""`folio serve` — in: a registered model (`models:/<name>@<alias>`, `models:/<name>/<version>`)
or a checkpoint and its tokenizer — out: an OpenAI-compatible HTTP server (pipeline/serve/).

Start-up checks, each one line and exit 1 before the model loads: exposing the server (`--host`
other than loopback) without an API key, a port in use, a registry that does not answer, an
alias or version that does not exist, a model file that does not load. The port is bound first
and handed to uvicorn, so nothing else can take it while the model loads.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from pipeline.console import log
from pipeline.serve.models import BatchSettings, ServeError

API_KEY_ENV = "FOLIO_API_KEY"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} on {host} is in use (another server?); pass --port N") from None
        raise ServeError(f"cannot listen on {host}:{port} ({err.strerror}); check --host and --port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _load(target: str, tokenizer_dir: Path, settings: BatchSettings, poll_seconds: float):
    """The models to serve; a failure that is not already one of folio's lines becomes one."""
    from folio.errors import FolioError
    from pipeline.errors import StageError
    from pipeline.serve.follower import Models

    try:
        return Models(target, tokenizer_dir, settings, poll_seconds)
    except (StageError, FolioError):
        raise
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ServeError(f"cannot load {target} ({reason}); check that the model and the registry "
                         "are there (`folio runs`)") from err


def serve(target: str, host: str, port: int, api_key: str | None, tokenizer_dir: Path,
          settings: BatchSettings, poll_seconds: float, threads: int | None = None) -> None:
    import torch
    import uvicorn

    from pipeline.serve.app import create_app

    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    if host not in LOOPBACK and not api_key:
        raise ServeError(f"--host {host} exposes the server beyond this machine: give it an API key "
                         f"(--api-key KEY or {API_KEY_ENV}), which clients send as `Authorization: Bearer KEY`")
    if poll_seconds <= 0:
        raise ServeError(f"--poll-seconds must be > 0, got {poll_seconds:g}")
    if threads:
        torch.set_num_threads(threads)
    sock = bind(host, port)
    try:
        models = _load(target, tokenizer_dir, settings, poll_seconds)
        what = f"{models.primary.id}" + (f" (following @{models.alias}, polled every {poll_seconds:g}s)"
                                         if models.alias else "")
        shown = f"[{host}]" if ":" in host else host
        log(f"serving {what} on http://{shown}:{port} (playground at /, OpenAI API at /v1)"
            + ("; API key required" if api_key else ""))
        config = uvicorn.Config(create_app(models, api_key), log_level="warning", access_log=False,
                                timeout_graceful_shutdown=5)
        uvicorn.Server(config).run(sockets=[sock])
        models.close()
    finally:
        sock.close()
