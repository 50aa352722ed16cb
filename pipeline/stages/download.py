"""Stage download — params: data.name, data.url, data.sha256 — out: data/raw/<name>.txt and
data/raw/<name>.json (the file's sha256, size and the source that served it).

`data.url` is an http(s) URL, a `file:///absolute/path` URL or a plain path (relative to the project
root). With `data.sha256` set, a file with any other digest fails the stage naming both digests;
with it empty (a corpus of your own), the digest is computed, logged and recorded, and the validate
stage is the gate. With FOLIO_DATA_MIRROR set (a directory or an http(s) base URL holding
`<name>.txt`) the mirror is tried first; the checksum is verified whichever source serves the file.
"""

from __future__ import annotations

import os

from folio.download import DownloadError, fetch, sha256_of
from pipeline import artifacts
from pipeline.artifacts import corpus
from pipeline.console import Progress, log
from pipeline.errors import StageError
from pipeline.params import Params

MIRROR_ENV = "FOLIO_DATA_MIRROR"


def sources(name: str, url: str) -> list[str]:
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return [url]
    return [f"{mirror.rstrip('/')}/{name}.txt", url]


def _hint(err: DownloadError, sha256: str) -> str:
    if "sha256 mismatch" in str(err) and sha256:
        return ("check data.url; if the file changed on purpose, set data.sha256 to its new digest "
                "(or to \"\" to accept any file, with validate as the gate)")
    return f"check data.url (and {MIRROR_ENV}, if set), the network, or put the file at a local path"


def main(params: Params) -> None:
    data = params.data
    dest, record = artifacts.raw_corpus(data.name), artifacts.raw_record(data.name)
    if data.sha256 and dest.exists() and record.exists() and sha256_of(dest) == data.sha256:
        log(f"{dest} already present and verified")
        return
    candidates = sources(data.name, data.url)
    log(f"downloading {data.name} from {' then '.join(candidates)}")
    with Progress(f"download {data.name}", total=None, every=5.0) as bar:
        try:
            got = fetch(candidates, dest, data.sha256, progress=lambda done, total: bar.update(done, total), log=log)
        except DownloadError as err:
            raise StageError(f"{err}\n{_hint(err, data.sha256)}") from None
    corpus.write_record(data.name, {"sha256": got.sha256, "bytes": got.bytes,
                                  "source": got.source, "pinned": bool(data.sha256)})
    if data.sha256:
        log(f"wrote {dest} ({got.bytes:,} bytes from {got.source}, sha256 verified)")
    else:
        log(f"wrote {dest} ({got.bytes:,} bytes from {got.source}); data.sha256 is empty, so nothing was "
            f"verified: its sha256 is {got.sha256} (set data.sha256 to pin it; validate is the gate)")
