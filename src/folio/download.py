"""Fetch a file from a list of sources, streamed, retried, verified by sha256, written atomically.

A source is an http(s) URL, a `file://` URL or a plain path. An http(s) download whose connection
breaks resumes with a `Range` request if the server accepts byte ranges, and starts over otherwise;
a body shorter than its Content-Length never becomes the file.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from folio.errors import FolioError, MissingFile
from folio.fileio import atomic_path

CHUNK = 1 << 16
# progress(bytes_done, bytes_total_or_None)
Progress = Callable[[int, int | None], None]


class DownloadError(FolioError, RuntimeError):
    """No source yielded the file; the message names each source and why it failed."""


class ChecksumMismatch(DownloadError):
    """A source served a file whose sha256 is not the expected one."""


@dataclass(frozen=True)
class Fetched:
    path: Path
    source: str  # the source that served the file
    sha256: str
    bytes: int


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def local_path(source: str) -> Path | None:
    """The path a `file://` URL or a plain path names; None for http(s)."""
    if source.startswith(("http://", "https://")):
        return None
    if source.startswith("file:"):
        return Path(urllib.request.url2pathname(urllib.parse.urlparse(source).path))
    return Path(source).expanduser()


class HttpBody:
    """Streams one URL into a file. Called again after a broken connection, it asks for the rest
    (`Range: bytes=N-`) if the server said `Accept-Ranges: bytes`, else it starts over."""

    def __init__(self, url: str, dest: Path, timeout: float):
        self.url, self.dest, self.timeout = url, dest, timeout
        self.resumable = False

    def copy(self, progress: Progress | None) -> None:
        offset = self.dest.stat().st_size if self.resumable and self.dest.exists() else 0
        headers = {"User-Agent": "folio"} | ({"Range": f"bytes={offset}-"} if offset else {})
        try:
            response = urllib.request.urlopen(urllib.request.Request(self.url, headers=headers), timeout=self.timeout)
        except urllib.error.HTTPError as err:
            if err.code == 416:  # the range no longer fits the file: start over
                self.resumable = False
            raise
        with response, open(self.dest, "ab" if response.status == 206 else "wb") as out:
            self.resumable = response.headers.get("Accept-Ranges", "").lower() == "bytes"
            done = offset if response.status == 206 else 0  # 200: the server sent the whole file
            if response.status == 206 and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                self.resumable = False
                raise DownloadError(f"asked for bytes {offset}- but got {response.headers.get('Content-Range')!r}")
            length = response.headers.get("Content-Length")
            total = done + int(length) if length else None
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if total is not None and done != total:
            raise DownloadError(f"connection closed after {done:,} of {total:,} bytes")


def _copy_local(path: Path, tmp: Path, progress: Progress | None) -> None:
    if not path.is_file():
        raise MissingFile(f"{path} does not exist or is not a file; check the path")
    shutil.copyfile(path, tmp)
    if progress:
        size = path.stat().st_size
        progress(size, size)


def _is_permanent(err: Exception) -> bool:
    """Client errors (404, 403, a missing local file) will not fix themselves on retry."""
    if isinstance(err, urllib.error.HTTPError):
        return 400 <= err.code < 500 and err.code not in (408, 416, 429)
    return isinstance(err, (FileNotFoundError, PermissionError))


def _download(source: str, tmp: Path, retries: int, timeout: float, backoff: float,
              progress: Progress | None, log: Callable[[str], None]) -> None:
    """Copy one source into `tmp`, up to `retries` attempts with exponential backoff."""
    path = local_path(source)
    body = HttpBody(source, tmp, timeout) if path is None else None
    for attempt in range(1, retries + 1):
        try:
            if body is not None:
                body.copy(progress)
            else:
                _copy_local(path, tmp, progress)
            return
        # a connection dropped mid-body surfaces as OSError, HTTPException or our short-body error
        except (OSError, http.client.HTTPException, DownloadError) as err:
            if _is_permanent(err) or attempt == retries:
                raise DownloadError(f"{source} (attempt {attempt}/{retries}): {err}") from err
            wait = backoff * 2 ** (attempt - 1)
            resume = " (resuming)" if body is not None and body.resumable else ""
            log(f"download failed ({err}); retrying in {wait:.0f}s{resume}")
            time.sleep(wait)


def fetch(
    sources: list[str],
    dest: str | Path,
    sha256: str = "",
    *,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 1.0,
    progress: Progress | None = None,
    log: Callable[[str], None] = print,
) -> Fetched:
    """Try each source in order until one yields the file; with `sha256` set, only a file whose
    digest matches counts (with it empty, the digest is computed and returned). Nothing is left at
    `dest` unless it succeeded."""
    dest = Path(dest)
    failures = []
    for source in sources:
        try:
            with atomic_path(dest) as tmp:
                _download(source, tmp, retries, timeout, backoff, progress, log)
                actual = sha256_of(tmp)
                if sha256 and actual != sha256:
                    raise ChecksumMismatch(f"sha256 mismatch for {source}: expected {sha256}, got {actual}")
            return Fetched(dest, source, actual, dest.stat().st_size)
        except DownloadError as err:
            failures.append(" ".join(str(err).split()))  # one line, whatever the server sent
    raise DownloadError("could not fetch " + "; ".join(failures))  # each names its source
