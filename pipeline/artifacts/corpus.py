"""data/raw/<name>.txt, the corpus, and data/raw/<name>.json, what download recorded about it."""

from __future__ import annotations

import json

from folio.download import sha256_of
from folio.fileio import write_json
from pipeline.artifacts import raw_corpus, raw_record, require


def read_bytes(name: str) -> bytes:
    return require(raw_corpus(name), "download").read_bytes()


def read_text(name: str) -> str:
    return require(raw_corpus(name), "download").read_text(encoding="utf-8")


def write_record(name: str, record: dict) -> None:
    write_json(raw_record(name), record)


def record(data) -> dict:
    """What download recorded about the corpus `data` (DataParams): {"sha256", "bytes", "source",
    "pinned"}. Rebuilt from the file itself when it was put in place by hand (no record beside it)."""
    path, corpus = raw_record(data.name), raw_corpus(data.name)
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    require(corpus, "download")
    return {"sha256": sha256_of(corpus), "bytes": corpus.stat().st_size, "source": data.url,
            "pinned": bool(data.sha256)}
