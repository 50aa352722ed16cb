"""Streaming text: byte-level BPE tokens that split multi-byte characters come out whole, and
stop strings end the text before them, even when they span tokens or start inside held text."""

import pytest

from folio.textstream import Detokenizer, TextStream
from folio.tokenizers import BPETokenizer, CharTokenizer

MULTIBYTE = "日本語 ✓ é 🙂 and the fox"


@pytest.fixture(scope="module")
def bpe():
    text = "日本語のテキスト ✓ café é naïve 🙂 " * 20 + "the quick brown fox " * 50
    return BPETokenizer.train(text, 300)


def _stream(tokenizer, ids, stop=()):
    stream = TextStream(tokenizer, stop)
    pieces = [stream.push(i) for i in ids if not stream.stopped]
    return pieces + [stream.finish()], stream


def test_bpe_pieces_join_to_the_full_decode(bpe):
    ids = bpe.encode(MULTIBYTE)
    split = [i for i in ids if not _is_utf8(bpe.decode_bytes([i]))]
    assert len(split) >= 3  # tokens that hold part of a character: the case under test
    pieces, stream = _stream(bpe, ids)
    assert "".join(pieces) == stream.text == bpe.decode(ids) == MULTIBYTE
    assert not any("\ufffd" in p for p in pieces)  # no piece held half a character


def test_decoding_each_token_alone_would_break_characters(bpe):
    """What the incremental decoder avoids: per-token decoding mangles split characters."""
    ids = bpe.encode(MULTIBYTE)
    assert "".join(bpe.decode([i]) for i in ids) != MULTIBYTE


def test_an_unfinished_character_at_the_end_becomes_a_replacement_mark(bpe):
    ids = bpe.encode("✓")
    assert len(ids) > 1
    pieces, _ = _stream(bpe, ids[:-1])
    assert "".join(pieces) == "\ufffd" == bpe.decode(ids[:-1])


def test_char_tokens_decode_one_by_one():
    tok = CharTokenizer.train("abc\n")
    detok = Detokenizer(tok)
    assert [detok.push(i) for i in tok.encode("ab\nc")] == ["a", "b", "\n", "c"] and detok.flush() == ""


@pytest.fixture
def chars():
    return CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ,\n")


def test_stop_string_spanning_tokens_ends_the_text_before_it(chars):
    pieces, stream = _stream(chars, chars.encode("hello world, hello"), stop=["o w"])
    assert stream.text == "".join(pieces) == "hell" and stream.stopped
    assert len(stream.token_ids) == len("hello w")  # nothing after the stop string was consumed


def test_possible_stop_prefix_is_held_then_released(chars):
    stream = TextStream(chars, ["xyz"])
    assert [stream.push(i) for i in chars.encode("abxy")] == ["a", "b", "", ""]  # "x", "xy" held
    assert stream.push(chars.encode("a")[0]) == "xya"  # "xya" is no stop string: released
    assert stream.push(chars.encode("x")[0]) == ""
    assert stream.finish() == "x" and stream.text == "abxyax" and not stream.stopped


def test_earliest_of_several_stop_strings_wins(chars):
    _, stream = _stream(chars, chars.encode("one two three"), stop=["three", "two", "ne t"])
    assert stream.text == "o"


def test_stop_string_within_a_multibyte_run(bpe):
    _, stream = _stream(bpe, bpe.encode(MULTIBYTE), stop=["✓"])
    assert stream.text == "日本語 " and stream.stopped


def test_empty_stop_strings_are_ignored(chars):
    _, stream = _stream(chars, chars.encode("abc"), stop=[""])
    assert stream.text == "abc" and not stream.stopped


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
