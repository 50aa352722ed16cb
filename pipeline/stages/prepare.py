"""Stage prepare — in: data/raw/<name>.txt, data/tokenizer/ — params: data.val_fraction —
out: data/prepared/{train,val}.bin (uint16 ids, uint32 for vocabularies over 65,536) and meta.json."""

from __future__ import annotations

import time

from folio.data import split_text, token_dtype
from pipeline import artifacts
from pipeline.artifacts import corpus, prepared, tokenizer as tokenizer_files
from pipeline.console import log
from pipeline.params import Params


def main(params: Params) -> None:
    text = corpus.read_text(params.data.name)
    tokenizer = tokenizer_files.load()
    dtype = token_dtype(tokenizer.vocab_size)
    meta = {"tokenizer_kind": tokenizer.kind, "tokenizer_digest": tokenizer.digest,
            "vocab_size": tokenizer.vocab_size, "dtype": dtype.name,
            "val_fraction": params.data.val_fraction}
    started = time.perf_counter()
    for split, part in zip(("train", "val"), split_text(text, params.data.val_fraction)):
        ids = tokenizer.encode(part)
        prepared.write_split(split, ids, dtype)
        meta |= {f"{split}_tokens": len(ids), f"{split}_bytes": len(part.encode("utf-8")),
                 f"{split}_chars": len(part)}
    seconds = time.perf_counter() - started
    meta["bytes_per_token"] = (meta["train_bytes"] + meta["val_bytes"]) / (
        meta["train_tokens"] + meta["val_tokens"])
    prepared.write_meta(meta)
    log(f"train {meta['train_tokens']:,} tokens, val {meta['val_tokens']:,} tokens "
        f"({meta['bytes_per_token']:.2f} bytes/token, {dtype.name}, encoded in {seconds:.2f}s) "
        f"-> {artifacts.PREPARED_DIR}")
