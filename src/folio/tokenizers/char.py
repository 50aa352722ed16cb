"""The character tokenizer: one id per distinct character of the corpus, sorted by code point."""

from __future__ import annotations

import hashlib

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
        try:
            return [self.stoi[ch] for ch in text]
        except KeyError as err:
            raise UnknownCharacter(f"character {err.args[0]!r} is not in the {len(self.chars)}-character "
                                   "vocabulary (it never occurs in the corpus)") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def config(self) -> dict:
        return {"chars": self.chars}

    @classmethod
    def from_config(cls, config: dict, directory) -> "CharTokenizer":
        return cls(config["chars"])
