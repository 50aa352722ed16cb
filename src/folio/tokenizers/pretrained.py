"""Pretrained tiktoken encodings (`tiktoken:gpt2`, `tiktoken:cl100k_base`, ...), read from
tiktoken's cache only: nothing is downloaded. Missing files are named, with how to provide them."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from typing import Iterator

import tiktoken
import tiktoken.load

from folio.errors import FolioError
from folio.tokenizers.bpe import TiktokenTokenizer


class UnknownEncoding(FolioError, ValueError):
    """tiktoken has no encoding of that name."""


class PretrainedFilesMissing(FolioError, FileNotFoundError):
    pass


def cache_dir() -> str:
    """Where tiktoken looks for its files (the same rule as tiktoken.load.read_file_cached)."""
    return (os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
            or os.path.join(tempfile.gettempdir(), "data-gym-cache"))


def cache_path(url: str) -> str:
    return os.path.join(cache_dir(), hashlib.sha1(url.encode()).hexdigest())


class _Missing(Exception):
    def __init__(self, url: str):
        self.url = url


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """tiktoken calls `read_file` only on a cache miss; make a miss an error instead of a download."""
    def refuse(url: str) -> bytes:
        raise _Missing(url)

    original = tiktoken.load.read_file
    tiktoken.load.read_file = refuse
    try:
        yield
    finally:
        tiktoken.load.read_file = original


def load_pretrained(name: str) -> TiktokenTokenizer:
    if name not in tiktoken.list_encoding_names():
        raise UnknownEncoding(f"unknown tiktoken encoding {name!r}; use one of: "
                              f"{', '.join(tiktoken.list_encoding_names())}")
    try:
        with _offline():
            encoding = tiktoken.get_encoding(name)
    except _Missing as missing:
        raise PretrainedFilesMissing(
            f"tiktoken encoding {name!r} needs {missing.url}, which is not in tiktoken's cache "
            f"({cache_dir()}) and folio does not download it. On a machine with internet access run "
            f"`python -c \"import tiktoken; tiktoken.get_encoding('{name}')\"` with TIKTOKEN_CACHE_DIR "
            f"set, then copy that directory here and point TIKTOKEN_CACHE_DIR at it "
            f"(this file is expected at {cache_path(missing.url)})."
        ) from None
    return TiktokenTokenizer(f"tiktoken:{name}", encoding, _identity(name, encoding.n_vocab))


def _identity(name: str, n_vocab: int) -> str:
    return f"{name}/n_vocab={n_vocab}"


def pretrained_digest(name: str, n_vocab: int) -> str:
    """The digest of encoding `name`, the same as its loaded tokenizer's but known without its
    files (an imported GPT-2 checkpoint records it offline). The name identifies the vocabulary:
    tiktoken pins each named encoding's files by sha256 and refuses any others."""
    return TiktokenTokenizer(f"tiktoken:{name}", None, _identity(name, n_vocab)).digest
