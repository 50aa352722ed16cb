"""Stage tokenize — in: data/raw/<name>.txt — params: tokenizer.kind, tokenizer.vocab_size,
data.val_fraction — out: data/tokenizer/ (tokenizer.json, plus bpe.tiktoken for BPE).

BPE and word vocabularies learn from the train split only; the character vocabulary takes every
character of the corpus, so the val split always encodes.
"""

from __future__ import annotations

import time

from folio.data import split_text
from folio.tokenizers import Tokenizer, load_tokenizer, save_tokenizer, train_tokenizer
from pipeline import paths
from pipeline.console import log
from pipeline.params import Params


def load() -> Tokenizer:
    return load_tokenizer(paths.TOKENIZER_DIR)


def main(params: Params) -> None:
    kind = params.tokenizer.kind
    text = paths.raw_corpus(params.data.name).read_text(encoding="utf-8")
    train_text, _ = split_text(text, params.data.val_fraction)
    started = time.perf_counter()
    tokenizer = train_tokenizer(kind, text if kind == "char" else train_text,
                                params.tokenizer.vocab_size)
    save_tokenizer(tokenizer, paths.TOKENIZER_DIR)
    log(f"{kind} tokenizer: {tokenizer.vocab_size:,} tokens in {time.perf_counter() - started:.2f}s "
        f"-> {paths.TOKENIZER_DIR}")
