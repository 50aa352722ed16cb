"""data/prepared/: the token shards (<split>-NNNNN.bin) and meta.json (shards, counts, dtype, tokenizer)."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from folio.data import TokenSplit
from folio.fileio import write_json
from pipeline.artifacts import PREPARED_META, prepared_shard, require, validation
from pipeline.errors import StageError


def read_meta() -> dict:
    return json.loads(require(PREPARED_META, "prepare").read_text(encoding="utf-8"))


def digest(meta: dict) -> str:
    """What names one encoding of the corpus: the digest of meta.json's content (shards, counts,
    the corpus's and the tokenizer's digests). The token gate's verdict and a training run's
    identity hold it."""
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]


def require_validated(meta: dict, tokenizer) -> None:
    """Refuse, in one line naming the stage to run, tokens that have not passed the token gate or
    that another tokenizer than `tokenizer` encoded (their ids would mean other text)."""
    validation.require_passed("tokens", digest(meta), f"the tokens in {PREPARED_META.parent}/ (digest {digest(meta)})")
    if meta.get("tokenizer_digest") != tokenizer.digest:
        raise StageError(f"{PREPARED_META.parent}/ was encoded by tokenizer {meta.get('tokenizer_kind')} "
                         f"(digest {meta.get('tokenizer_digest')}), but data/tokenizer/ holds {tokenizer.kind} "
                         f"(digest {tokenizer.digest}); run `folio prepare` and `folio validate_tokens` "
                         "(or `dvc repro`) first")


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


def mixture_ranges(meta: dict, data, split: str = "train") -> list[tuple[str, int, int, float]] | None:
    """A mixture's (name, start, end, weight) of each source in `split`, as the sampler takes them;
    None for a corpus of one source. Tokens prepared for other sources or weights than data.sources
    are refused in one line."""
    have = [(m["name"], m["weight"]) for m in meta.get("mixture", [])]
    if have != [(s.name, s.weight) for s in data.sources]:
        said = ", ".join(f"{n} (weight {w:g})" for n, w in have) or "one source"
        raise StageError(f"{PREPARED_META.parent}/ was prepared for {said}, not for data.sources as set "
                         "now; run `folio prepare` and `folio validate_tokens` (or `dvc repro`) first")
    return [(m["name"], *m[split], m["weight"]) for m in meta["mixture"]] if have else None
