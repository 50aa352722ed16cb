"""Fetch a file from a list of sources, streamed, retried, verified by sha256, written atomically."""

from __future__ import annotations

import hashlib
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from folio.fileio import atomic_path

CHUNK = 1 << 16
# progress(bytes_done, bytes_total_or_None)
Progress = Callable[[int, int | None], None]


class DownloadError(RuntimeError):
    pass


class ChecksumMismatch(DownloadError):
    pass


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_from(source: str, tmp: Path, timeout: float, progress: Progress | None) -> None:
    """Stream one source (http(s) URL or local path) into `tmp`."""
    if source.startswith(("http://", "https://")):
        request = urllib.request.Request(source, headers={"User-Agent": "folio"})
        with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as out:
            total = response.headers.get("Content-Length")
            total = int(total) if total else None
            done = 0
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            if total is not None and done != total:
                raise DownloadError(f"{source}: received {done} of {total} bytes")
    else:
        path = Path(source.removeprefix("file://"))
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        shutil.copyfile(path, tmp)
        if progress:
            size = path.stat().st_size
            progress(size, size)


def _is_permanent(err: Exception) -> bool:
    """Client errors (404, 403, a missing local file) will not fix themselves on retry."""
    if isinstance(err, urllib.error.HTTPError):
        return 400 <= err.code < 500 and err.code not in (408, 429)
    return isinstance(err, FileNotFoundError)


def fetch(
    sources: list[str],
    dest: str | Path,
    sha256: str,
    *,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 1.0,
    progress: Progress | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Try each source in order, each up to `retries` times with exponential backoff, until one
    yields a file whose sha256 matches. Nothing is left at `dest` unless it verified."""
    dest = Path(dest)
    failures = []
    for source in sources:
        for attempt in range(1, retries + 1):
            try:
                with atomic_path(dest) as tmp:
                    _copy_from(source, tmp, timeout, progress)
                    actual = sha256_of(tmp)
                    if actual != sha256:
                        raise ChecksumMismatch(
                            f"sha256 mismatch for {source}: expected {sha256}, got {actual}"
                        )
                return dest
            except ChecksumMismatch as err:
                failures.append(str(err))
                break  # the same bytes would come again
            except (OSError, DownloadError) as err:
                failures.append(f"{source} (attempt {attempt}/{retries}): {err}")
                if _is_permanent(err) or attempt == retries:
                    break
                wait = backoff * 2 ** (attempt - 1)
                log(f"download failed ({err}); retrying in {wait:.0f}s")
                time.sleep(wait)
    raise DownloadError("could not fetch a verified file:\n  " + "\n  ".join(failures))
