"""Download: served over loopback HTTP; checksum failure names both digests and keeps no file;
retries with backoff on server errors; no retry on 404; a broken connection resumes with a Range
request when the server accepts ranges and starts over when it does not; a body that stays short
is an error, never a file; file:// URLs and plain paths; an empty sha256 is computed and recorded
by the stage; a mirror directory is tried first; a failure is one line naming each source; a local
data.url that is not there (file, folder, glob) is one line from `folio download` naming it."""

import hashlib
import http.server
import json

import pytest

from folio.download import DownloadError, fetch
from folio.fileio import write_text
from pipeline.stages.download import sources

BODY = b"to be, or not to be\n" * 100
DIGEST = hashlib.sha256(BODY).hexdigest()


def test_fetch_over_http(tmp_path, http_server):
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "c.txt").write_bytes(BODY)
    url = http_server(tmp_path / "srv") + "/c.txt"
    seen = []
    got = fetch([url], tmp_path / "out" / "c.txt", DIGEST, progress=lambda d, t: seen.append((d, t)))
    assert got.path.read_bytes() == BODY and got.source == url and got.sha256 == DIGEST
    assert seen[-1] == (len(BODY), len(BODY))


def test_checksum_mismatch_names_both_digests_and_keeps_no_file(tmp_path, http_server):
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "c.txt").write_bytes(BODY)
    url = http_server(tmp_path / "srv") + "/c.txt"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as err:
        fetch([url], tmp_path / "c.txt", wrong, backoff=0)
    assert wrong in str(err.value) and DIGEST in str(err.value)
    assert list(tmp_path.glob("c.txt*")) == [] and list(tmp_path.glob(".c.txt*")) == []


def test_failed_download_leaves_an_existing_file_untouched(tmp_path):
    dest = tmp_path / "c.txt"
    write_text(dest, "old")
    with pytest.raises(DownloadError):
        fetch([str(tmp_path / "missing.txt")], dest, DIGEST, backoff=0)
    assert dest.read_text() == "old"


def _flaky_handler(failures_before_success: int, status: int, calls: list):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            calls.append(self.path)
            if len(calls) <= failures_before_success:
                self.send_error(status)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

        def log_message(self, *args):
            pass

    return Handler


def test_server_errors_are_retried(tmp_path, http_server):
    calls = []
    url = http_server(handler=_flaky_handler(2, 503, calls)) + "/c.txt"
    logs = []
    fetch([url], tmp_path / "c.txt", DIGEST, retries=3, backoff=0, log=logs.append)
    assert len(calls) == 3 and len(logs) == 2 and "retrying" in logs[0]


def test_not_found_is_not_retried(tmp_path, http_server):
    calls = []
    url = http_server(handler=_flaky_handler(99, 404, calls)) + "/c.txt"
    with pytest.raises(DownloadError, match="404") as err:
        fetch([url, str(tmp_path / "missing.txt")], tmp_path / "c.txt", DIGEST, retries=3, backoff=0)
    assert len(calls) == 1
    assert str(err.value).startswith(f"could not fetch {url} (attempt 1/3)")  # each source, one line
    assert f"; {tmp_path / 'missing.txt'} (attempt 1/3)" in str(err.value) and "\n" not in str(err.value)


def test_mirror_is_tried_first_then_the_url(tmp_path, monkeypatch):
    monkeypatch.setenv("FOLIO_DATA_MIRROR", str(tmp_path / "mirror"))
    assert sources("shakes", "https://example.org/x.txt") == [
        f"{tmp_path / 'mirror'}/shakes.txt",
        "https://example.org/x.txt",
    ]
    monkeypatch.setenv("FOLIO_DATA_MIRROR", "http://127.0.0.1:9/base/")
    assert sources("s", "u")[0] == "http://127.0.0.1:9/base/s.txt"
    monkeypatch.delenv("FOLIO_DATA_MIRROR")
    assert sources("s", "u") == ["u"]


def test_mirror_directory_serves_the_real_corpus(tmp_path, shared_corpus):
    from tests.conftest import SHAKESPEARE_SHA256

    got = fetch([str(shared_corpus)], tmp_path / "t.txt", SHAKESPEARE_SHA256)
    assert got.path.stat().st_size == got.bytes == 1_115_394


def _breaking_handler(calls: list, *, accept_ranges: bool, honour_range: bool = True, breaks: int = 1):
    """Serves BODY; the first `breaks` responses stop halfway and close the connection."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            calls.append(self.headers.get("Range"))
            start = int(self.headers["Range"][6:-1]) if self.headers.get("Range") and honour_range else 0
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(BODY) - 1}/{len(BODY)}")
            if accept_ranges:
                self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(BODY) - start))
            self.end_headers()
            part = BODY[start:]
            self.wfile.write(part[: len(part) // 2] if len(calls) <= breaks else part)

        def log_message(self, *args):
            pass

    return Handler


def test_a_broken_connection_resumes_with_a_range_request(tmp_path, http_server):
    calls, logs = [], []
    url = http_server(handler=_breaking_handler(calls, accept_ranges=True)) + "/c.txt"
    got = fetch([url], tmp_path / "c.txt", DIGEST, backoff=0, log=logs.append)
    assert got.path.read_bytes() == BODY
    assert calls == [None, f"bytes={len(BODY) // 2}-"]  # the second request asks only for the rest
    assert "connection closed after 1,000 of 2,000 bytes" in logs[0] and "resuming" in logs[0]


@pytest.mark.parametrize("accept_ranges", [False, True])
def test_without_range_support_a_broken_download_starts_over(tmp_path, http_server, accept_ranges):
    calls = []
    # either the server does not offer ranges, or it offers them but answers a Range request with 200
    url = http_server(handler=_breaking_handler(calls, accept_ranges=accept_ranges, honour_range=False)) + "/c"
    got = fetch([url], tmp_path / "c.txt", DIGEST, backoff=0, log=lambda m: None)
    assert got.path.read_bytes() == BODY
    assert calls[1] == (f"bytes={len(BODY) // 2}-" if accept_ranges else None)


def test_a_body_that_stays_short_is_an_error_and_never_a_file(tmp_path, http_server):
    calls = []
    url = http_server(handler=_breaking_handler(calls, accept_ranges=False, breaks=99)) + "/c.txt"
    with pytest.raises(DownloadError, match=r"attempt 3/3\): connection closed after 1,000 of 2,000 bytes"):
        fetch([url], tmp_path / "c.txt", "", retries=3, backoff=0, log=lambda m: None)
    assert len(calls) == 3 and list(tmp_path.iterdir()) == []


def test_file_urls_and_plain_paths_are_sources(tmp_path, monkeypatch):
    (tmp_path / "my corpus.txt").write_bytes(BODY)
    for source in [(tmp_path / "my corpus.txt").as_uri(), str(tmp_path / "my corpus.txt"), "my corpus.txt"]:
        monkeypatch.chdir(tmp_path)  # the last is relative to the project root
        got = fetch([source], tmp_path / "out" / "c.txt", DIGEST)
        assert got.path.read_bytes() == BODY and got.source == source


def test_an_empty_sha256_is_computed_recorded_and_logged(tmp_path, monkeypatch, capsys):
    from pipeline import artifacts
    from pipeline.artifacts import corpus
    from pipeline.stages import download
    from pipeline.params import validate

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_bytes(BODY)
    params = validate({"data": {"name": "mine", "url": "mine.txt", "sha256": ""}})
    download.main(params)
    record = json.loads(artifacts.raw_record("mine").read_text())
    assert record == {"sha256": DIGEST, "bytes": len(BODY), "source": "mine.txt", "pinned": False,
                      "documents": 1, "files": [{"path": "mine.txt", "format": "txt", "compression": None,
                                                 "bytes": len(BODY), "sha256": DIGEST, "documents": 1}]}
    assert (artifacts.raw_dir("mine") / "mine.txt").read_bytes() == BODY
    assert DIGEST in capsys.readouterr().err
    assert corpus.record(params.data) == record  # what train logs to MLflow


@pytest.mark.parametrize("url, said", [
    ("nope.txt", "nope.txt does not exist (a file, folder or glob on this machine, or an http(s) URL)"),
    ("nope/", "nope/ does not exist (a file, folder or glob on this machine, or an http(s) URL)"),
    ("corpora/**/*.jsonl", "corpora/**/*.jsonl: the glob matches no file on this machine"),
])
def test_a_local_data_url_that_is_not_there_is_one_line_naming_it_as_given(tmp_path, monkeypatch, url, said):
    """Through the real `folio download`: a missing file, folder or a glob matching nothing is one
    line naming data.url as the user wrote it (not a file name folio made up), with no talk of
    the network, no traceback, exit status 1, and nothing written under data/."""
    import os
    import subprocess
    import sys

    from tests.conftest import PROJECT

    (tmp_path / "params.yaml").write_text((PROJECT / "params.yaml").read_text())
    (tmp_path / "corpora" / "a").mkdir(parents=True)  # the glob's folder exists, its files do not
    (tmp_path / "corpora" / "a" / "notes.txt").write_text("not a jsonl file")
    env = {k: v for k, v in os.environ.items() if k != "FOLIO_DATA_MIRROR"}
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "download", "--set", f"data.url={url}",
                           "--set", "data.sha256="], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: download: data.url: {said}"), done.stderr
    assert f"looked for in {tmp_path}" in lines[0] and "network" not in lines[0]
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.txt"))
