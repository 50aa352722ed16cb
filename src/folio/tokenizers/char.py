"""The character tokenizer: one id per distinct character of the corpus, sorted by code point."""

from __future__ import annotations

import hashlib

import numpy as np

from folio.errors import FolioError


class UnknownCharacter(FolioError, ValueError):
    """Text holds a character the vocabulary lacks."""


class CharTokenizer:
    kind = "char"
    lossless = True

    def __init__(self, chars: list[str]):
        if len(set(chars)) != len(chars):
            raise ValueError("duplicate characters in the vocabulary")
        self.chars = list(chars)
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}
        self._codes = np.array([ord(ch) for ch in self.chars], dtype=np.uint32)  # sorted: ids by search

    @classmethod
    def train(cls, text: str) -> "CharTokenizer":
        if not text:
            raise ValueError("cannot build a character vocabulary from empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def digest(self) -> str:
        return hashlib.sha256("".join(self.chars).encode("utf-8")).hexdigest()[:16]

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def encode_array(self, text: str) -> np.ndarray:
        """The ids as an array, looked up in C (prepare encodes gigabytes through this)."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        if self._codes.size == 0 or bool(np.any(np.diff(self._codes) <= 0)):  # not sorted: look up one by one
            return np.array([self._id(ch) for ch in text], dtype=np.int64)
        ids = np.minimum(np.searchsorted(self._codes, codes), len(self._codes) - 1)
        unknown = np.flatnonzero(self._codes[ids] != codes)
        if unknown.size:
            self._id(text[unknown[0]])
        return ids.astype(np.int64)

    def _id(self, ch: str) -> int:
        if ch not in self.stoi:
            raise UnknownCharacter(f"character {ch!r} is not in the {len(self.chars)}-character "
                                   "vocabulary (it never occurs in the corpus)")
        return self.stoi[ch]

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def config(self) -> dict:
        return {"chars": self.chars}

    @classmethod
    def from_config(cls, config: dict, directory) -> "CharTokenizer":
        return cls(config["chars"])
