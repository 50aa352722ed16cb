"""The character tokenizer: round trip, persistence, unknown characters, digest."""

import pytest

from folio.tokenizer import CharTokenizer


def test_round_trip_and_sorted_vocabulary(tiny_text):
    tok = CharTokenizer.train(tiny_text)
    assert tok.decode(tok.encode(tiny_text)) == tiny_text
    assert tok.chars == sorted(set(tiny_text))


def test_round_trip_on_the_real_corpus(shared_corpus):
    text = shared_corpus.read_text(encoding="utf-8")
    tok = CharTokenizer.train(text)
    assert tok.vocab_size == 65
    assert tok.decode(tok.encode(text)) == text


def test_save_and_load(tmp_path):
    tok = CharTokenizer.train("héllo wörld\n")
    tok.save(tmp_path / "tok.json")
    loaded = CharTokenizer.load(tmp_path / "tok.json")
    assert loaded.chars == tok.chars and loaded.digest == tok.digest


def test_unknown_character_is_named():
    with pytest.raises(ValueError, match="'z' is not in the vocabulary"):
        CharTokenizer.train("abc").encode("abz")


def test_digest_changes_with_the_vocabulary():
    assert CharTokenizer.train("abc").digest != CharTokenizer.train("abd").digest


def test_empty_text_is_refused():
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.train("")
