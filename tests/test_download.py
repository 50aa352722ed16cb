"""Download: served over loopback HTTP; checksum failure names both digests and keeps no file;
retries with backoff on server errors; no retry on 404; a mirror directory is tried first."""

import hashlib
import http.server

import pytest

from folio.download import DownloadError, fetch
from folio.fileio import write_text
from pipeline.download import sources

BODY = b"to be, or not to be\n" * 100
DIGEST = hashlib.sha256(BODY).hexdigest()


def test_fetch_over_http(tmp_path, http_server):
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "c.txt").write_bytes(BODY)
    url = http_server(tmp_path / "srv") + "/c.txt"
    seen = []
    dest = fetch([url], tmp_path / "out" / "c.txt", DIGEST, progress=lambda d, t: seen.append((d, t)))
    assert dest.read_bytes() == BODY
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
    with pytest.raises(DownloadError, match="404"):
        fetch([url], tmp_path / "c.txt", DIGEST, retries=3, backoff=0)
    assert len(calls) == 1


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

    dest = fetch([str(shared_corpus)], tmp_path / "t.txt", SHAKESPEARE_SHA256)
    assert dest.stat().st_size == 1_115_394
