"""A word-level tokenizer: the `vocab_size - 1` most frequent words, punctuation marks and
whitespace runs, plus `<unk>` (id 0) for everything else. Decoding is exact except for unknowns."""

from __future__ import annotations

import hashlib
import re
from collections import Counter

UNK = "<unk>"
# words, single punctuation marks, runs of whitespace: concatenating the pieces gives the text back
PIECES = re.compile(r"\w+|[^\w\s]|\s+")


class WordTokenizer:
    kind = "word"
    lossless = False  # unknown pieces come back as <unk>: decode(encode(x)) == normalize(x)

    def __init__(self, words: list[str]):
        if words[:1] != [UNK]:
            raise ValueError(f"the first word of the vocabulary must be {UNK}")
        self.words = list(words)
        self.stoi = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def train(cls, text: str, vocab_size: int) -> "WordTokenizer":
        if vocab_size < 2:
            raise ValueError(f"a word vocabulary needs vocab_size >= 2, got {vocab_size}")
        counts = Counter(PIECES.findall(text))
        # most frequent first; ties broken alphabetically so the vocabulary is deterministic
        ranked = sorted(counts, key=lambda w: (-counts[w], w))
        return cls([UNK, *ranked[: vocab_size - 1]])

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    @property
    def digest(self) -> str:
        return hashlib.sha256("\0".join(self.words).encode("utf-8")).hexdigest()[:16]

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(piece, 0) for piece in PIECES.findall(text)]

    def decode(self, ids) -> str:
        return "".join(self.words[int(i)] for i in ids)

    def normalize(self, text: str) -> str:
        """The text as this vocabulary can represent it: unknown pieces become <unk>."""
        return "".join(p if p in self.stoi else UNK for p in PIECES.findall(text))

    def config(self) -> dict:
        return {"words": self.words}

    @classmethod
    def from_config(cls, config: dict, directory) -> "WordTokenizer":
        return cls(config["words"])
