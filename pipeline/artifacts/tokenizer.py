"""data/tokenizer/: the tokenizer the tokenize stage built."""

from __future__ import annotations

from folio import tokenizers
from pipeline.artifacts import TOKENIZER_DIR, TOKENIZER_FILE, require


def load() -> tokenizers.Tokenizer:
    require(TOKENIZER_FILE, "tokenize")
    return tokenizers.load_tokenizer(TOKENIZER_DIR)


def save(tokenizer) -> None:
    tokenizers.save_tokenizer(tokenizer, TOKENIZER_DIR)
