"""data/tokenizer/: the tokenizer the tokenize stage built, and source.json: what it was built
from (the corpus digest and the data.* keys that choose its training text)."""

from __future__ import annotations

import json

from folio import tokenizers
from folio.fileio import write_json
from pipeline.artifacts import TOKENIZER_DIR, TOKENIZER_FILE, require
from pipeline.errors import StageError

SOURCE_FILE = TOKENIZER_DIR / "source.json"
SOURCE_KEYS = ("split", "seed", "val_fraction", "text_field")  # data.*: which text it learned from


def load() -> tokenizers.Tokenizer:
    require(TOKENIZER_FILE, "tokenize")
    try:
        return tokenizers.load_tokenizer(TOKENIZER_DIR)
    except ValueError as err:  # files that do not match their digest
        raise StageError(str(err)) from None


def source_of(data, corpus_sha256: str) -> dict:
    return {"corpus_sha256": corpus_sha256, **{f"data.{k}": getattr(data, k) for k in SOURCE_KEYS}}


def save(tokenizer, data, corpus_sha256: str) -> None:
    tokenizers.save_tokenizer(tokenizer, TOKENIZER_DIR)
    write_json(SOURCE_FILE, source_of(data, corpus_sha256))


def check_source(data, corpus_sha256: str) -> None:
    """Refuse a tokenizer built from another corpus, or from another split of it, than `data`'s."""
    try:
        built = json.loads(SOURCE_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        built = {}
    wanted = source_of(data, corpus_sha256)
    differs = [f"{k} {built.get(k, 'unknown')!r} -> {v!r}" for k, v in wanted.items() if built.get(k) != v]
    if differs:
        raise StageError(f"{TOKENIZER_DIR}/ was not built from this corpus and split "
                         f"({', '.join(differs)}); run `folio tokenize` (or `dvc repro`) first")
