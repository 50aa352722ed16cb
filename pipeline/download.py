"""Stage download — params: data.name, data.url, data.sha256 — out: data/raw/<name>.txt.

With FOLIO_DATA_MIRROR set (a directory or an http(s) base URL holding `<name>.txt`) the mirror
is tried first; the checksum is verified whichever source serves the file.
"""

from __future__ import annotations

import os

from folio.download import fetch, sha256_of
from pipeline import paths
from pipeline.console import Progress, log
from pipeline.params import Params

MIRROR_ENV = "FOLIO_DATA_MIRROR"


def sources(name: str, url: str) -> list[str]:
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return [url]
    return [f"{mirror.rstrip('/')}/{name}.txt", url]


def main(params: Params) -> None:
    data = params.data
    dest = paths.raw_corpus(data.name)
    if dest.exists() and sha256_of(dest) == data.sha256:
        log(f"{dest} already present and verified")
        return
    candidates = sources(data.name, data.url)
    log(f"downloading {data.name} from {' then '.join(candidates)}")
    with Progress(f"download {data.name}", total=None, every=5.0) as bar:
        fetch(candidates, dest, data.sha256, progress=lambda done, total: bar.update(done, total), log=log)
    log(f"wrote {dest} ({dest.stat().st_size:,} bytes, sha256 verified)")
