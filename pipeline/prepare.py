"""Stage prepare — in: corpus, tokenizer — params: data.val_fraction —
out: data/prepared/{train,val}.bin (uint16 token ids) and meta.json."""

from __future__ import annotations

import numpy as np

from folio.data import TOKEN_DTYPE, split_ids, write_tokens
from folio.fileio import write_json
from pipeline import paths
from pipeline.console import log
from pipeline.params import Params
from pipeline.tokenize import load_tokenizer


def main(params: Params) -> None:
    text = paths.raw_corpus(params.data.name).read_text(encoding="utf-8")
    tokenizer = load_tokenizer()
    ids = np.array(tokenizer.encode(text), dtype=np.int64)
    train_ids, val_ids = split_ids(ids, params.data.val_fraction)
    write_tokens(paths.TRAIN_BIN, train_ids)
    write_tokens(paths.VAL_BIN, val_ids)
    meta = {
        "tokenizer_kind": tokenizer.kind,
        "tokenizer_digest": tokenizer.digest,
        "vocab_size": tokenizer.vocab_size,
        "dtype": np.dtype(TOKEN_DTYPE).name,
        "train_tokens": len(train_ids),
        "val_tokens": len(val_ids),
        "val_fraction": params.data.val_fraction,
        "corpus_bytes": len(text.encode("utf-8")),
    }
    write_json(paths.PREPARED_META, meta)
    log(f"train {len(train_ids):,} tokens, val {len(val_ids):,} tokens -> {paths.PREPARED_DIR}")
