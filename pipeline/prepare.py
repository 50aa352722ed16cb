"""Stage prepare — in: corpus, tokenizer — params: data.val_fraction —
out: data/prepared/{train,val}.bin (uint16 ids, uint32 for vocabularies over 65,536) and meta.json."""

from __future__ import annotations

import json
import time

from folio.data import read_tokens, split_text, token_dtype, write_tokens
from folio.fileio import write_json
from pipeline import paths, tokenize
from pipeline.console import log
from pipeline.params import Params


def load_split(name: str):
    """One prepared split as an int64 tensor, read with the dtype prepare chose."""
    meta = json.loads(paths.PREPARED_META.read_text())
    return read_tokens(paths.prepared_split(name), meta["dtype"])


def main(params: Params) -> None:
    text = paths.raw_corpus(params.data.name).read_text(encoding="utf-8")
    tokenizer = tokenize.load()
    dtype = token_dtype(tokenizer.vocab_size)
    meta = {"tokenizer_kind": tokenizer.kind, "tokenizer_digest": tokenizer.digest,
            "vocab_size": tokenizer.vocab_size, "dtype": dtype.name,
            "val_fraction": params.data.val_fraction}
    started = time.perf_counter()
    for split, part in zip(("train", "val"), split_text(text, params.data.val_fraction)):
        ids = tokenizer.encode(part)
        write_tokens(paths.prepared_split(split), ids, dtype)
        meta |= {f"{split}_tokens": len(ids), f"{split}_bytes": len(part.encode("utf-8")),
                 f"{split}_chars": len(part)}
    seconds = time.perf_counter() - started
    meta["bytes_per_token"] = (meta["train_bytes"] + meta["val_bytes"]) / (
        meta["train_tokens"] + meta["val_tokens"])
    write_json(paths.PREPARED_META, meta)
    log(f"train {meta['train_tokens']:,} tokens, val {meta['val_tokens']:,} tokens "
        f"({meta['bytes_per_token']:.2f} bytes/token, {dtype.name}, encoded in {seconds:.2f}s) "
        f"-> {paths.PREPARED_DIR}")
