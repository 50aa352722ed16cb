"""folio's tokenizers as Hugging Face tokenizer files: `tokenizer.json` (built with the
`tokenizers` library) and `tokenizer_config.json`, which `AutoTokenizer.from_pretrained` loads
as a `PreTrainedTokenizerFast` with no folio installed. The ids are folio's, for every kind:

- char: a BPE model whose vocabulary is the characters and which has no merges, with no
  normalizer or pre-tokenizer: every character is its own token. A character outside the
  vocabulary, which folio refuses, is dropped (there is no unknown token to give it).
- bpe and tiktoken:<name>: byte-level BPE over the same byte-to-token ranks (GPT-2's byte-to-
  character map), the merges recovered from the ranks as tiktoken applies them, the encoding's own
  split regex, and tiktoken's rule that a piece which is one token is taken whole
  (`ignore_merges`). The special tokens (<|endoftext|>) keep their ids; Hugging Face treats their
  text as the special token, where folio's `encode` (tiktoken's `encode_ordinary`) does not.
- word: a WordLevel model over folio's words, `<unk>` (id 0) for the rest, pre-tokenized by
  folio's own pattern (words, single punctuation marks, runs of whitespace) with Python's `\\w`
  and `\\s` written out as the characters they match in the Python that exports, so Unicode
  version differences between Python's `re` and the Oniguruma regex engine of `tokenizers` do not
  matter.

Decoding concatenates the tokens (no spaces put between them, no clean-up), as folio's does.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from folio.errors import FolioError

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"


class UnsupportedTokenizer(FolioError, ValueError):
    """A tokenizer with no exact Hugging Face form."""


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character: how byte-level BPE vocabularies
    spell their tokens (the same table as `tokenizers`' ByteLevel pre-tokenizer)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _merge_parts(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """The pieces tiktoken's BPE reaches for `token` using only merges ranked below `max_rank`:
    for a token it can build, the two that make it."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best, best_rank = None, None
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < max_rank and (best_rank is None or rank < best_rank):
                best, best_rank = i, rank
        if best is None:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts


def byte_level_bpe(ranks: dict[bytes, int], pattern: str, special_tokens: dict[str, int]):
    """A `tokenizers.Tokenizer` that encodes as tiktoken's `Encoding(pat_str=pattern,
    mergeable_ranks=ranks)` does (its `encode_ordinary`)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    spell = byte_to_unicode()
    word = lambda token: "".join(spell[b] for b in token)  # noqa: E731
    vocab = {word(token): rank for token, rank in ranks.items()}
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) > 1:
            parts = _merge_parts(ranks, token, rank)
            if len(parts) == 2:  # else no merge builds it: only a whole piece can be this token
                merges.append((word(parts[0]), word(parts[1])))
    vocab.update(special_tokens)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True, fuse_unk=False,
                                     byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(text, special=True, normalized=False)
                                  for text in special_tokens])
    return tokenizer


def _ranges(chars: str) -> str:
    """A regex character class body for `chars`, as \\x{..} ranges."""
    codes = sorted({ord(c) for c in chars})
    out, start = [], codes[0]
    for prev, code in zip(codes, codes[1:] + [None]):
        if code != prev + 1:
            out.append(f"\\x{{{start:X}}}" + (f"-\\x{{{prev:X}}}" if prev > start else ""))
            start = code
    return "".join(out)


def python_word_pattern() -> str:
    """folio's word pieces, `\\w+|[^\\w\\s]|\\s+`, with Python's \\w and \\s as explicit classes."""
    every = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000)
    word, space = _ranges("".join(re.findall(r"\w", every))), _ranges("".join(re.findall(r"\s", every)))
    return f"[{word}]+|[^{word}{space}]|[{space}]+"


def word_level(words: list[str], unk: str):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=unk))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(python_word_pattern()), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()  # <unk> is an ordinary token: decoded as text, as folio does
    return tokenizer


def characters(chars: list[str]):
    from tokenizers import Tokenizer, decoders, models

    tokenizer = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(chars)}, merges=[]))
    tokenizer.decoder = decoders.Fuse()
    return tokenizer


def hf_tokenizer(tokenizer):
    """The `tokenizers.Tokenizer` of a folio tokenizer (folio.tokenizers); UnsupportedTokenizer
    for one it cannot represent exactly."""
    from folio.tokenizers.bpe import BPETokenizer, TiktokenTokenizer
    from folio.tokenizers.char import CharTokenizer
    from folio.tokenizers.word import UNK, WordTokenizer

    if isinstance(tokenizer, CharTokenizer):
        if any(len(c) != 1 for c in tokenizer.chars):
            raise UnsupportedTokenizer("a char vocabulary entry is not one character")
        return characters(tokenizer.chars)
    if isinstance(tokenizer, WordTokenizer):
        return word_level(tokenizer.words, UNK)
    if isinstance(tokenizer, BPETokenizer):
        return byte_level_bpe(tokenizer.ranks, tokenizer.pattern, tokenizer.encoding._special_tokens)
    if isinstance(tokenizer, TiktokenTokenizer):
        encoding = tokenizer.encoding
        return byte_level_bpe(encoding._mergeable_ranks, encoding._pat_str, encoding._special_tokens)
    raise UnsupportedTokenizer(f"tokenizer kind {tokenizer.kind!r} has no Hugging Face form")


def end_of_text(tokenizer) -> str | None:
    """The text of the end-of-text token, where the tokenizer has one."""
    from folio.tokenizers import END_OF_TEXT, end_of_text_id

    return END_OF_TEXT if end_of_text_id(tokenizer) is not None else None


def save_hf_tokenizer(tokenizer, directory: str | Path, model_max_length: int) -> list[str]:
    """Write `tokenizer.json` and `tokenizer_config.json` for `tokenizer` into `directory`;
    returns the names written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    hf_tokenizer(tokenizer).save(str(directory / TOKENIZER_FILE))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model_max_length,
              "clean_up_tokenization_spaces": False, "add_bos_token": False, "add_eos_token": False,
              "folio_tokenizer": {"kind": tokenizer.kind, "digest": tokenizer.digest}}
    eot = end_of_text(tokenizer)
    if eot is not None:
        config.update(bos_token=eot, eos_token=eot)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                         encoding="utf-8")
    return [TOKENIZER_FILE, CONFIG_FILE]
