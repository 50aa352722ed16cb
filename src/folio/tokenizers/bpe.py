"""Byte-level BPE: merges learned by rustbpe (Rust, parallel), encoding and decoding by a
`tiktoken.Encoding` built from the learned ranks. Saved in tiktoken's own format (one
`base64(token) rank` line per token), so it reloads without the trainer."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import tiktoken

# GPT-4's split pattern with numbers in groups of at most two, as nanochat uses.
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
END_OF_TEXT = "<|endoftext|>"
RANKS_FILE = "bpe.tiktoken"


def write_ranks(path: Path, ranks: dict[bytes, int]) -> None:
    lines = (base64.b64encode(token) + b" " + str(rank).encode() for token, rank in
             sorted(ranks.items(), key=lambda item: item[1]))
    path.write_bytes(b"\n".join(lines) + b"\n")


def read_ranks(path: Path) -> dict[bytes, int]:
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


class TiktokenTokenizer:
    """A tokenizer backed by a `tiktoken.Encoding`: the trained BPE, or a pretrained encoding."""

    lossless = True

    def __init__(self, kind: str, encoding: tiktoken.Encoding, ranks_digest: str):
        self.kind, self.encoding, self.ranks_digest = kind, encoding, ranks_digest

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.kind}:{self.ranks_digest}".encode()).hexdigest()[:16]

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def decode(self, ids) -> str:
        return self.encoding.decode([int(i) for i in ids])

    def config(self) -> dict:
        return {}

    def decode_bytes(self, ids) -> bytes:
        """Bytes, not text: a token may end inside a multi-byte character (for streaming)."""
        return self.encoding.decode_bytes([int(i) for i in ids])


def _ranks_digest(ranks: dict[bytes, int]) -> str:
    digest = hashlib.sha256()
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        digest.update(base64.b64encode(token) + b" " + str(rank).encode() + b"\n")
    return digest.hexdigest()


class BPETokenizer(TiktokenTokenizer):
    def __init__(self, ranks: dict[bytes, int], pattern: str = SPLIT_PATTERN):
        self.ranks, self.pattern = ranks, pattern
        encoding = tiktoken.Encoding(
            "folio-bpe", pat_str=pattern, mergeable_ranks=ranks,
            special_tokens={END_OF_TEXT: len(ranks)},
        )
        super().__init__("bpe", encoding, _ranks_digest(ranks))

    @classmethod
    def train(cls, text: str, vocab_size: int) -> "BPETokenizer":
        """Learn `vocab_size - 1` byte-level tokens (the 256 bytes and merges) plus <|endoftext|>."""
        import rustbpe

        if vocab_size < 257 + 1:
            raise ValueError(f"a byte-level BPE needs vocab_size >= 258, got {vocab_size}")
        trainer = rustbpe.Tokenizer()
        trainer.train_from_iterator(iter(text.splitlines(keepends=True)), vocab_size - 1,
                                    pattern=SPLIT_PATTERN)
        return cls({bytes(token): rank for token, rank in trainer.get_mergeable_ranks()})

    def config(self) -> dict:
        return {"pattern": self.pattern, "special_tokens": {END_OF_TEXT: len(self.ranks)},
                "ranks_file": RANKS_FILE}

    def save_files(self, directory: Path) -> None:
        write_ranks(directory / RANKS_FILE, self.ranks)

    @classmethod
    def from_config(cls, config: dict, directory: Path) -> "BPETokenizer":
        return cls(read_ranks(Path(directory) / config["ranks_file"]), config["pattern"])
