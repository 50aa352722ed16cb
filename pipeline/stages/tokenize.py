"""Stage tokenize — in: data/raw/<name>.txt — params: tokenizer.kind, tokenizer.vocab_size,
data.val_fraction — out: data/tokenizer/ (tokenizer.json, plus bpe.tiktoken for BPE).

BPE and word vocabularies learn from the train split only; the character vocabulary takes every
character of the corpus, so the val split always encodes.
"""

from __future__ import annotations

import time

from folio.data import split_text
from folio.tokenizers import train_tokenizer
from pipeline import artifacts
from pipeline.artifacts import corpus, tokenizer as tokenizer_files
from pipeline.console import log
from pipeline.params import Params


def main(params: Params) -> None:
    kind = params.tokenizer.kind
    text = corpus.read_text(params.data.name)
    train_text, _ = split_text(text, params.data.val_fraction)
    started = time.perf_counter()
    tokenizer = train_tokenizer(kind, text if kind == "char" else train_text,
                                params.tokenizer.vocab_size)
    tokenizer_files.save(tokenizer)
    log(f"{kind} tokenizer: {tokenizer.vocab_size:,} tokens in {time.perf_counter() - started:.2f}s "
        f"-> {artifacts.TOKENIZER_DIR}")
