"""Bad data never reaches training. Each case is a real file, served over loopback HTTP and run
through the real stage commands (`folio <stage>`, in dvc.yaml order) until one fails: the pipeline
stops at the stage that should catch it, the error names the cause, and every output of the later
stages keeps its exact bytes (the outputs of train, evaluate and sample are placeholders: training
is slow). The good baseline is a generated Python-source corpus, not Shakespeare, with an empty
data.sha256. One case runs through the real `dvc repro` in a git repository."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.stages import STAGES
from tests.conftest import PROJECT

ORDER = list(STAGES)
GATED = ORDER[: ORDER.index("validate_tokens") + 1]  # the stages these tests run; the rest are placeholders
DVC_STAGES = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
NAME = "corpus"
TINY = {"data": {"name": NAME, "sha256": ""}, "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32}}
runner = CliRunner()


def python_source(functions: int = 120) -> str:
    """Plausible, varied Python source code: ASCII only, ~40 kB, ~1,100 lines."""
    rng = random.Random(7)
    words = "alpha beta gamma delta count total index value items result name path size offset token".split()
    parts = ['"""A generated module: plausible Python source, not Shakespeare."""\n\nimport math\n\n\n']
    for i in range(functions):
        a, b, c = rng.sample(words, 3)
        parts.append(
            f"def {a}_{b}_{i}({a}: int, {c}: list[int] | None = None) -> int:\n"
            f'    """Return the {b} of {a} over {c} (case {i})."""\n'
            f"    {c} = {c} or [{rng.randrange(100)}, {rng.randrange(100)}]\n"
            f"    {b} = sum(x * {rng.randrange(2, 9)} for x in {c} if x % {rng.randrange(2, 7)})\n"
            f"    if {a} > {rng.randrange(1000)}:\n"
            f"        return math.floor({b} / max({a}, 1))  # {rng.choice(words)} guard\n"
            f"    return {b} + {a}\n\n\n")
    return "".join(parts)


def outputs(stages: list[str]) -> list[Path]:
    """The outs, metrics and plots dvc.yaml declares for `stages`."""
    found = []
    for stage in stages:
        entries = sum((DVC_STAGES[stage].get(k, []) for k in ("outs", "metrics", "plots")), [])
        for entry in entries:
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            found.append(Path(path.replace("${data.name}", NAME)))
    return found


def digests(stages: list[str]) -> dict[str, str]:
    """sha256 of every file the stages' outputs hold; every output must exist."""
    result = {}
    for out in outputs(stages):
        assert out.exists(), out
        for file in sorted(out.rglob("*")) if out.is_dir() else [out]:
            if file.is_file():
                result[str(file)] = hashlib.sha256(file.read_bytes()).hexdigest()
    return result


def write_params(url: str, sha256: str = "") -> None:
    tree = yaml.safe_load((PROJECT / "params.yaml").read_text())
    for section, values in TINY.items():
        tree[section].update(values)
    tree["data"].update(url=url, sha256=sha256)
    Path("params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))


def run_pipeline(url: str, sha256: str = "") -> tuple[str | None, str]:
    """Run the gated stages in order through the CLI until one fails: (failed stage or None, output)."""
    write_params(url, sha256)
    output = ""
    for stage in GATED:
        result = runner.invoke(app, [stage])
        output += result.output
        if result.exit_code:
            assert isinstance(result.exception, SystemExit), output  # a clean error, not a traceback
            return stage, output
    return None, output


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """A project that ran every gated stage on a good corpus, with placeholder outputs for the rest."""
    root = tmp_path_factory.mktemp("gates")
    corpus = root / "served" / "good.py.txt"
    corpus.parent.mkdir()
    corpus.write_text(python_source(), encoding="utf-8")
    project = root / "project"
    project.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        failed, output = run_pipeline(str(corpus))  # a plain path
        assert failed is None, output
        for out in outputs(ORDER[len(GATED):]):
            placeholder = out if out.suffix else out / "placeholder.pt"
            placeholder.parent.mkdir(parents=True, exist_ok=True)
            placeholder.write_text(f"placeholder for {out}\n")
    return project


@pytest.fixture
def project(baseline, tmp_path, monkeypatch) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(baseline, copy)
    monkeypatch.chdir(copy)
    return copy


def serve_bytes(http_server, tmp_path: Path, body: bytes) -> str:
    (tmp_path / "served").mkdir(exist_ok=True)
    (tmp_path / "served" / "corpus.txt").write_bytes(body)
    return http_server(tmp_path / "served") + "/corpus.txt"


def assert_stops_at(stage: str, url: str, *causes: str, sha256: str = "") -> str:
    # a failed download leaves its own output alone too (the file is written atomically)
    later = ORDER[ORDER.index(stage) + (stage != "download"):]
    before = digests(later)
    failed, output = run_pipeline(url, sha256)
    assert failed == stage, output
    assert f"error: {stage}: " in output
    for cause in causes:
        assert cause in output, output
    assert digests(later) == before
    return output


class Handler(http.server.BaseHTTPRequestHandler):
    status, body, sent = 200, b"", None  # `sent`: how many bytes of body to write before hanging up

    def do_GET(self):
        if self.status != 200:
            self.send_error(self.status)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[: self.sent])

    def log_message(self, *args):
        pass


def handler(**attributes) -> type:
    return type("CaseHandler", (Handler,), attributes)


def test_a_python_source_corpus_passes_both_gates(baseline):
    corpus, tokens = (json.loads((baseline / f"reports/validation/{s}/{s}.json").read_text()) for s in ("corpus", "tokens"))
    assert corpus["success"] and tokens["success"]
    assert corpus["stats"]["distinct_characters"] == tokens["stats"]["vocab_size"]
    record = json.loads((baseline / f"data/raw/{NAME}.json").read_text())
    raw = (baseline / f"data/raw/{NAME}/{NAME}.txt").read_bytes()
    assert record["sha256"] == hashlib.sha256(raw).hexdigest() and record["pinned"] is False
    for suite in ("corpus", "tokens"):
        assert (baseline / f"reports/validation/{suite}/docs/index.html").exists()


def test_wrong_checksum_stops_at_download(project, http_server, tmp_path):
    body = python_source().encode()
    wrong = "0" * 64
    assert_stops_at("download", serve_bytes(http_server, tmp_path, body), "sha256 mismatch",
                    f"expected {wrong}, got {hashlib.sha256(body).hexdigest()}", sha256=wrong)


def test_truncated_download_stops_at_download(project, http_server):
    body = python_source().encode()
    url = http_server(handler=handler(body=body, sent=len(body) // 3)) + "/corpus.txt"
    assert_stops_at("download", url, f"connection closed after {len(body) // 3:,} of {len(body):,} bytes",
                    "attempt 3/3")


@pytest.mark.parametrize("status", [404, 500])
def test_http_errors_stop_at_download(project, http_server, status):
    url = http_server(handler=handler(status=status)) + "/corpus.txt"
    output = assert_stops_at("download", url, f"HTTP Error {status}")
    assert output.count("retrying") == (0 if status == 404 else 2)  # a 404 will not fix itself


HTML_ERROR_PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Page not found &middot; GitHub</title>
  <link rel="stylesheet" href="/assets/site.css">
</head>
<body class="logged-out">
  <div class="container">
    <h1>404</h1>
    <p>This is not the web page you are looking for.</p>
    <a href="/">Go home</a>
  </div>
</body>
</html>
"""
LFS_POINTER = (b"version https://git-lfs.github.com/spec/v1\n"
               b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 1115394\n")


def _repeated_line() -> bytes:
    return b"All work and no play makes Jack a dull boy.\n" * 1_000


BAD_CORPORA = {  # case -> (the file's bytes, what the error must say)
    "html_error_page_with_status_200": (lambda: HTML_ERROR_PAGE, ["markup: ", "look like HTML/XML tags",
                                                                 "line 1, column 1: '<!DOCTYPE html>'"]),
    "git_lfs_pointer": (lambda: LFS_POINTER, ["not_lfs_pointer: the file is a Git LFS pointer (oid sha256:4d7a2146",
                                              "size 1,115,394 bytes"]),
    "binary": (lambda: random.Random(0).randbytes(20_000), ["not_binary: ", "NUL bytes (none allowed)"]),
    "utf16": (lambda: python_source().encode("utf-16"), ["utf8: not valid UTF-8: first invalid byte at offset 0"]),
    "empty": (lambda: b"", ["min_bytes: the corpus is 0 bytes", "min_lines: the corpus has 0 lines"]),
    "200_bytes": (lambda: python_source().encode()[:200], ["min_bytes: the corpus is 200 bytes, fewer than "
                                                           "validate.min_bytes=10,000"]),
    "one_line_repeated": (_repeated_line, ["duplicates: 99.90% of the text repeats earlier lines",
                                           "most repeated: 'All work and no play makes Jack a dull boy.' ×1,000"]),
}


@pytest.mark.parametrize("case", BAD_CORPORA)
def test_bad_corpus_stops_at_validate(project, http_server, tmp_path, case):
    body, causes = BAD_CORPORA[case]
    assert_stops_at("validate", serve_bytes(http_server, tmp_path, body()), *causes)


def test_a_character_only_in_the_val_split_stops_at_validate_tokens(project, http_server, tmp_path):
    text = python_source() + "# a café\n"  # the tail is the val split; é occurs nowhere else
    output = assert_stops_at("validate_tokens", serve_bytes(http_server, tmp_path, text.encode()),
                             "val_ids_in_train: ", "validate_tokens.max_unseen_val_fraction=0.0",
                             "ids found in val only (1): 'é'")
    assert "error: validate:" not in output and "token validation" in output


def _env() -> dict:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for key in ("MLFLOW_TRACKING_URI", "FOLIO_DATA_MIRROR"):
        env.pop(key, None)
    return env


def test_dvc_repro_stops_at_validate_on_an_error_page(project, http_server, tmp_path):
    """The real `dvc repro` in a git repo: the failed gate stops DVC, later stages never run."""
    for name in ["pyproject.toml", "dvc.yaml", ".dvc/config", ".dvc/.gitignore", ".dvcignore", "src", "pipeline"]:
        src, dest = PROJECT / name, project / name
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    write_params(serve_bytes(http_server, tmp_path, HTML_ERROR_PAGE))
    later = ORDER[ORDER.index("validate") + 1:]
    before = digests(later)
    git = ["git", "-c", "user.name=folio-test", "-c", "user.email=test@folio.invalid"]
    code = ["pyproject.toml", "dvc.yaml", "params.yaml", ".dvc/config", ".dvcignore", "src", "pipeline"]
    for args in (["init", "-q", "-b", "main"], ["add", *code], ["commit", "-q", "-m", "gates"]):
        subprocess.run(git + args, check=True, capture_output=True, env=_env())
    proc = subprocess.run(["dvc", "repro"], capture_output=True, text=True, env=_env(), timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    ran = [name for name in ORDER if f"Running stage '{name}'" in output]
    assert ran == ["download", "validate"], output
    assert "error: validate: " in output and "markup: " in output
    assert digests(later) == before
