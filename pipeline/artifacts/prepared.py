"""data/prepared/: the encoded splits (train.bin, val.bin) and meta.json (counts, dtype, tokenizer)."""

from __future__ import annotations

import json

from folio.data import read_tokens, write_tokens
from folio.fileio import write_json
from pipeline.artifacts import PREPARED_META, prepared_split, require


def read_meta() -> dict:
    return json.loads(require(PREPARED_META, "prepare").read_text(encoding="utf-8"))


def write_meta(meta: dict) -> None:
    write_json(PREPARED_META, meta)


def write_split(split: str, ids, dtype) -> None:
    write_tokens(prepared_split(split), ids, dtype)


def load_split(split: str):
    """One prepared split as an int64 tensor, read with the dtype prepare chose."""
    meta = read_meta()
    return read_tokens(require(prepared_split(split), "prepare"), meta["dtype"])
