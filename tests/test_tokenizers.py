"""Tokenizers: exact round trips (whole corpus; arbitrary Unicode for the byte-level kinds,
as a property test), save/load in tiktoken's file format without the trainer, pretrained
encodings from tiktoken's cache (and a clear error when its files are missing), word level."""

from __future__ import annotations

import base64
import hashlib
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from folio.tokenizers import (BPETokenizer, CharTokenizer, PretrainedFilesMissing, WordTokenizer,
                              load_tokenizer, save_tokenizer, train_tokenizer)
from folio.tokenizers.bpe import RANKS_FILE, read_ranks

SMALL = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
         "def f(x):\n    return x ** 2  # héllo wörld ✓ 日本\n") * 20


@pytest.fixture(scope="module")
def small_bpe():
    return BPETokenizer.train(SMALL, 300)


@pytest.fixture(scope="module")
def corpus_text(shared_corpus):
    return shared_corpus.read_text(encoding="utf-8")


# -- char ---------------------------------------------------------------------------------------

def test_char_round_trip_and_sorted_vocabulary(tiny_text):
    tok = CharTokenizer.train(tiny_text)
    assert tok.decode(tok.encode(tiny_text)) == tiny_text
    assert tok.chars == sorted(set(tiny_text))


def test_char_unknown_character_is_named():
    with pytest.raises(ValueError, match="'z' is not in the 3-character vocabulary"):
        CharTokenizer.train("abc").encode("abz")


def test_char_empty_text_is_refused():
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.train("")


# -- bpe ----------------------------------------------------------------------------------------

def test_bpe_vocab_size_and_compression(small_bpe):
    assert small_bpe.vocab_size == 300  # 256 bytes + 43 merges + <|endoftext|>
    assert len(small_bpe.encode(SMALL)) < len(SMALL.encode()) / 1.5  # merges compress


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_bpe_round_trips_arbitrary_unicode(small_bpe, text):
    assert small_bpe.decode(small_bpe.encode(text)) == text


def test_bpe_saves_in_tiktoken_format_and_reloads_without_the_trainer(small_bpe, tmp_path, monkeypatch):
    save_tokenizer(small_bpe, tmp_path)
    first = (tmp_path / RANKS_FILE).read_bytes().splitlines()[0].split()
    assert base64.b64decode(first[0]) == b"\x00" and first[1] == b"0"
    assert read_ranks(tmp_path / RANKS_FILE) == small_bpe.ranks
    monkeypatch.setitem(sys.modules, "rustbpe", None)  # import rustbpe now fails
    loaded = load_tokenizer(tmp_path)
    assert loaded.digest == small_bpe.digest and loaded.encode(SMALL) == small_bpe.encode(SMALL)


def test_bpe_too_small_vocab_is_refused():
    with pytest.raises(ValueError, match="258"):
        BPETokenizer.train(SMALL, 100)


def test_tampered_ranks_are_refused(small_bpe, tmp_path):
    save_tokenizer(small_bpe, tmp_path)
    lines = (tmp_path / RANKS_FILE).read_bytes().splitlines()
    (tmp_path / RANKS_FILE).write_bytes(b"\n".join(lines[:-1]) + b"\n")
    with pytest.raises(ValueError, match="do not match its digest"):
        load_tokenizer(tmp_path)


# -- whole corpus -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_exact_round_trip_on_the_whole_corpus(kind, corpus_text):
    tok = train_tokenizer(kind, corpus_text, 1024)
    assert tok.decode(tok.encode(corpus_text)) == corpus_text


# -- pretrained tiktoken ------------------------------------------------------------------------

def test_missing_pretrained_files_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    with pytest.raises(PretrainedFilesMissing) as err:
        train_tokenizer("tiktoken:gpt2", "", 0)
    message = str(err.value)
    assert "https://" in message and "TIKTOKEN_CACHE_DIR" in message and str(tmp_path) in message


FAKE_URL = "https://folio.invalid/folio_test.tiktoken"


def _write_plugin(root, ranks_hash):
    plugin = root / "plugins" / "tiktoken_ext"
    plugin.mkdir(parents=True)
    (plugin / "folio_test_encoding.py").write_text(
        "from tiktoken.load import load_tiktoken_bpe\n"
        "def folio_test():\n"
        f"    ranks = load_tiktoken_bpe({FAKE_URL!r}, expected_hash={ranks_hash!r})\n"
        "    return {'name': 'folio_test', 'pat_str': r'\\S+|\\s+', 'mergeable_ranks': ranks,\n"
        "            'special_tokens': {}}\n"
        "ENCODING_CONSTRUCTORS = {'folio_test': folio_test}\n")
    return root / "plugins"


def test_pretrained_encoding_loads_from_cache_files_the_test_writes(tmp_path, monkeypatch, small_bpe):
    """A tiktoken plugin encoding whose ranks live only in TIKTOKEN_CACHE_DIR, under the name
    tiktoken gives them (sha1 of the URL): the same path gpt2's files take."""
    import tiktoken.registry

    ranks = b"".join(base64.b64encode(t) + b" " + str(r).encode() + b"\n"
                     for t, r in sorted(small_bpe.ranks.items(), key=lambda kv: kv[1]))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / hashlib.sha1(FAKE_URL.encode()).hexdigest()).write_bytes(ranks)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.syspath_prepend(str(_write_plugin(tmp_path, hashlib.sha256(ranks).hexdigest())))
    monkeypatch.setattr(tiktoken.registry, "ENCODING_CONSTRUCTORS", None)  # rescan plugins
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    tiktoken.registry._available_plugin_modules.cache_clear()
    try:
        tok = train_tokenizer("tiktoken:folio_test", "", 0)
    finally:
        tiktoken.registry._available_plugin_modules.cache_clear()
    assert tok.kind == "tiktoken:folio_test" and tok.vocab_size == len(small_bpe.ranks)
    assert tok.decode(tok.encode("héllo wörld")) == "héllo wörld"
    save_tokenizer(tok, tmp_path / "saved")
    assert load_tokenizer(tmp_path / "saved").digest == tok.digest


# -- word ---------------------------------------------------------------------------------------

def test_word_vocabulary_keeps_the_most_frequent_pieces():
    tok = WordTokenizer.train("the cat and the dog and the bird", 5)
    assert tok.words == ["<unk>", " ", "the", "and", "bird"]  # ties broken alphabetically
    assert tok.decode(tok.encode("the cat and the bird")) == "the <unk> and the bird"


def test_word_round_trip_of_known_words_and_persistence(tmp_path, tiny_text):
    tok = WordTokenizer.train(tiny_text, 10_000)
    assert tok.decode(tok.encode(tiny_text)) == tiny_text
    save_tokenizer(tok, tmp_path)
    assert load_tokenizer(tmp_path).words == tok.words


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        train_tokenizer("sentencepiece", "abc", 10)
