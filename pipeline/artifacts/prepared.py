"""data/prepared/: the token shards (<split>-NNNNN.bin) and meta.json (shards, counts, dtype, tokenizer)."""

from __future__ import annotations

import json

import numpy as np

from folio.data import TokenSplit
from folio.fileio import write_json
from pipeline.artifacts import PREPARED_META, prepared_shard, require
from pipeline.errors import StageError


def read_meta() -> dict:
    return json.loads(require(PREPARED_META, "prepare").read_text(encoding="utf-8"))


def write_meta(meta: dict) -> None:
    write_json(PREPARED_META, meta)


def shard_paths(split: str, meta: dict | None = None) -> list:
    """The split's shard files, each checked against the size meta.json gives it."""
    meta = meta or read_meta()
    if "shards" not in meta:  # written by a folio before sharded splits
        raise StageError(f"{PREPARED_META} names no shards (an older folio wrote it); run `folio prepare` "
                         "(or `dvc repro`) again")
    paths = []
    for shard in meta["shards"][split]:
        path = prepared_shard(shard["file"])
        expected = shard["tokens"] * np.dtype(meta["dtype"]).itemsize
        if not path.exists() or path.stat().st_size != expected:
            raise StageError(f"{path} is missing or not the size meta.json says ({expected:,} bytes): "
                             "the shards are partial; run `folio prepare` (or `dvc repro`) again")
        paths.append(path)
    return paths


def load_split(split: str, meta: dict | None = None) -> TokenSplit:
    """One prepared split, read from its shard files, with the dtype prepare chose."""
    meta = meta or read_meta()
    return TokenSplit.open(shard_paths(split, meta), meta["dtype"])
