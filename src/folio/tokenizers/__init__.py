"""Tokenizers, chosen by kind: `char`, `bpe` (rustbpe-trained, tiktoken-encoded), `word`, or
`tiktoken:<name>` (a pretrained encoding from tiktoken's cache).

Every tokenizer has `kind`, `vocab_size`, `digest`, `encode(text)`, `decode(ids)`. A tokenizer is
saved as a directory: `tokenizer.json` (kind, digest, vocab size and the kind's own settings)
plus, for BPE, its ranks in tiktoken's file format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from folio.errors import FolioError, MissingFile
from folio.fileio import write_json
from folio.tokenizers.bpe import END_OF_TEXT, BPETokenizer, TiktokenTokenizer
from folio.tokenizers.char import CharTokenizer
from folio.tokenizers.pretrained import PretrainedFilesMissing, load_pretrained
from folio.tokenizers.word import WordTokenizer

META_FILE = "tokenizer.json"
# Between two documents: the end-of-text token where the tokenizer has one (bpe, tiktoken:*),
# this text where it has none (char, word).
TEXT_SEPARATOR = "\n\n"
PRETRAINED_PREFIX = "tiktoken:"

__all__ = ["Tokenizer", "CharTokenizer", "BPETokenizer", "WordTokenizer", "TiktokenTokenizer",
           "PretrainedFilesMissing", "train_tokenizer", "save_tokenizer", "load_tokenizer",
           "check_kind", "document_separator", "end_of_text_id", "TEXT_SEPARATOR"]


class TokenizerError(FolioError, ValueError):
    """A tokenizer directory whose files do not match the digest it records."""


class Tokenizer(Protocol):
    kind: str
    lossless: bool  # decode(encode(text)) == text for any text it can encode

    @property
    def vocab_size(self) -> int: ...
    @property
    def digest(self) -> str: ...
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids) -> str: ...
    def config(self) -> dict: ...


def check_kind(kind: str) -> str:
    if kind in ("char", "bpe", "word") or (kind.startswith(PRETRAINED_PREFIX) and len(kind) > 9):
        return kind
    raise ValueError(f"unknown tokenizer kind {kind!r}: use char, bpe, word or tiktoken:<name>")


def train_tokenizer(kind: str, text: str, vocab_size: int) -> Tokenizer:
    """Build a tokenizer of `kind` from `text` (`vocab_size` applies to bpe and word)."""
    check_kind(kind)
    if kind == "char":
        return CharTokenizer.train(text)
    if kind == "bpe":
        return BPETokenizer.train(text, vocab_size)
    if kind == "word":
        return WordTokenizer.train(text, vocab_size)
    return load_pretrained(kind.removeprefix(PRETRAINED_PREFIX))


def end_of_text_id(tokenizer: Tokenizer) -> int | None:
    """The id of <|endoftext|>, where the tokenizer has one (bpe, most tiktoken encodings)."""
    encoding = getattr(tokenizer, "encoding", None)
    if encoding is not None and END_OF_TEXT in encoding.special_tokens_set:
        return encoding.encode_single_token(END_OF_TEXT)
    return None


def document_separator(tokenizer: Tokenizer) -> list[int]:
    """The ids put between two documents: <|endoftext|>, or TEXT_SEPARATOR encoded."""
    eot = end_of_text_id(tokenizer)
    return [eot] if eot is not None else tokenizer.encode(TEXT_SEPARATOR)


def save_tokenizer(tokenizer: Tokenizer, directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if hasattr(tokenizer, "save_files"):
        tokenizer.save_files(directory)
    write_json(directory / META_FILE, {"kind": tokenizer.kind, "digest": tokenizer.digest,
                                      "vocab_size": tokenizer.vocab_size, **tokenizer.config()})


def load_tokenizer(directory: str | Path) -> Tokenizer:
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.exists():
        raise MissingFile(f"no tokenizer at {directory} ({META_FILE} is missing); check the path")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    kind = check_kind(meta["kind"])
    if kind.startswith(PRETRAINED_PREFIX):
        tokenizer = load_pretrained(kind.removeprefix(PRETRAINED_PREFIX))
    else:
        cls = {"char": CharTokenizer, "bpe": BPETokenizer, "word": WordTokenizer}[kind]
        tokenizer = cls.from_config(meta, directory)
    if tokenizer.digest != meta["digest"]:
        raise TokenizerError(f"{meta_path}: the tokenizer's files do not match its digest "
                         f"({tokenizer.digest} != {meta['digest']}); rebuild it with `folio tokenize`")
    return tokenizer
