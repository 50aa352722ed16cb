"""Shared fixtures: a loopback HTTP server, the shared corpus, tiny models and token streams, and
a copy of the project whose data stages have run (for tests that run the rest of the pipeline)."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import pytest

# Phone-home off for everything the tests start (GX, MLflow, DVC read these).
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
os.environ["DVC_NO_ANALYTICS"] = "1"

PROJECT = Path(__file__).resolve().parents[1]
SHARED_CORPUS = PROJECT.parent / "shared" / "data" / "tinyshakespeare.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


@pytest.fixture(scope="session")
def shared_corpus() -> Path:
    if not SHARED_CORPUS.exists():
        pytest.skip(f"shared corpus not found at {SHARED_CORPUS}")
    return SHARED_CORPUS


@pytest.fixture(scope="session")
def prepared_project(tmp_path_factory, shared_corpus) -> Path:
    """A git copy of the project (tests/pipeline_project.py, tiny params) whose data stages —
    every stage before train — have run. Tests copy it (`pipeline_project.clone`) so that their
    `dvc repro` runs only training and what follows."""
    from pipeline.stages import STAGES
    from tests import pipeline_project as pp

    data_stages = list(STAGES)[:list(STAGES).index("train")]
    with pp.serve_directory(shared_corpus.parent) as base_url:
        root = pp.make_project(tmp_path_factory.mktemp("prepared") / "folio",
                               f"{base_url}/{shared_corpus.name}")
        pp.run(root, "dvc", "repro", *data_stages)
    return root


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    """`serve(directory, handler=None)` -> base URL of a loopback server, stopped after the test."""
    servers = []

    def serve(directory: Path | None = None, handler=None) -> str:
        handler = handler or functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tiny_text() -> str:
    line = "the quick brown fox jumps over the lazy dog. PACK MY BOX WITH FIVE DOZEN JUGS!\n"
    return line * 40


STAGE_TEXT = "".join(f"Line {i}: the quick brown fox, número {i % 7} — jumps!\n" for i in range(400))


@pytest.fixture
def stage_project(tmp_path, monkeypatch):
    """A project directory (the cwd) with its own MLflow store and data/raw/t/t.txt, for running
    stage `main()`s in-process with `data.name: t`."""
    from pipeline import artifacts

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    artifacts.raw_dir("t").mkdir(parents=True)
    (artifacts.raw_dir("t") / "t.txt").write_text(STAGE_TEXT, encoding="utf-8")
    return tmp_path


def record_gate_passes(params) -> None:
    """Record the data gates' verdicts as passes on the corpus and tokens now on disk, as the
    validate and validate_tokens stages do for data that passes. For tests of the other stages,
    run in-process on tiny corpora the gates are not about (the gates have their own tests, and
    the end-to-end tests run them for real). Call it after download and again after prepare."""
    import json

    from folio.fileio import write_json
    from pipeline import artifacts
    from pipeline.artifacts import corpus, prepared

    write_json(artifacts.validation_report("corpus"),
               {"success": True, "corpus_sha256": corpus.record(params.data)["sha256"], "expectations": []})
    if artifacts.PREPARED_META.exists():
        meta = json.loads(artifacts.PREPARED_META.read_text(encoding="utf-8"))
        write_json(artifacts.validation_report("tokens"),
                   {"success": True, "prepared_digest": prepared.digest(meta), "expectations": []})


def tokenized_and_prepared(params) -> None:
    """The tokenize and prepare stages in-process, with the data gates recorded as passed before
    and after (record_gate_passes): what a stage test needs before train."""
    from pipeline.stages import prepare, tokenize

    record_gate_passes(params)
    tokenize.main(params)
    prepare.main(params)
    record_gate_passes(params)
