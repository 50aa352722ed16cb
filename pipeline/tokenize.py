"""Stage tokenize — in: data/raw/<name>.txt — params: tokenizer.kind — out: data/tokenizer/."""

from __future__ import annotations

from folio.tokenizer import CharTokenizer
from pipeline import paths
from pipeline.console import log
from pipeline.params import Params


def load_tokenizer() -> CharTokenizer:
    return CharTokenizer.load(paths.TOKENIZER)


def main(params: Params) -> None:
    text = paths.raw_corpus(params.data.name).read_text(encoding="utf-8")
    tokenizer = CharTokenizer.train(text)
    tokenizer.save(paths.TOKENIZER)
    log(f"{params.tokenizer.kind} tokenizer: {tokenizer.vocab_size} tokens -> {paths.TOKENIZER}")
