"""folio.corpus and folio.splits: a long text streams in bounded pieces cut after a newline (a
character cut by a read block survives), every format and compression yields its documents, bad
bytes are named by offset and line; splits cut a stream by its tail (bytes, at a character) or by a
seeded set of documents, with a boundary marker between documents of a split."""

from __future__ import annotations

import gzip

import pytest

from folio.corpus import PIECE_CHARS, READ_BYTES, CorpusError, CorpusFile, file_format, pieces
from folio.splits import BOUNDARY, document_plan, split_stream, tail_plan


def test_a_long_text_streams_in_bounded_pieces_cut_after_a_newline(tmp_path):
    line = "é" * 99 + "\n"  # two bytes per é: read blocks end inside a character
    text = line * (3 * PIECE_CHARS // len(line))
    (tmp_path / "big.txt").write_text(text, encoding="utf-8")
    got = list(pieces(CorpusFile(tmp_path / "big.txt", "txt")))
    assert len(got) >= 3 and [end for _, end in got] == [False] * (len(got) - 1) + [True]
    assert "".join(t for t, _ in got) == text
    assert all(t.endswith("\n") and len(t) <= PIECE_CHARS + READ_BYTES for t, _ in got)


def test_formats_come_from_suffixes_or_the_param():
    assert file_format("a/b.jsonl.gz") == ("jsonl", "gzip")
    assert file_format("x.PARQUET") == ("parquet", None) and file_format("y.txt.zst") == ("txt", "zstd")
    assert file_format("notes.md") is None and file_format("notes.md", "txt") == ("txt", None)


def test_invalid_utf8_is_named_by_byte_and_line_or_reported_and_replaced(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"fine\nalso fine\ncaf\xe9 au lait\n")
    with pytest.raises(CorpusError, match=r"bad.txt: not valid UTF-8 at byte 18 \(line 3\)"):
        list(pieces(CorpusFile(tmp_path / "bad.txt", "txt")))
    seen = []
    text = "".join(t for t, _ in pieces(CorpusFile(tmp_path / "bad.txt", "txt"),
                                       on_bad_utf8=lambda *where: seen.append(where)))
    assert seen == [(18, 3, b"\xe9 au lai")] and "caf\ufffd au lait" in text


def test_gzip_text_and_broken_records_are_named(tmp_path):
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(b"hello\nworld\n"))
    assert list(pieces(CorpusFile(tmp_path / "a.txt.gz", "txt", "gzip"))) == [("hello\nworld\n", True)]
    (tmp_path / "r.jsonl").write_text('{"text": "one"}\n\n{"body": "two"}\n')
    with pytest.raises(CorpusError, match=r"r.jsonl line 3: no field 'text' \(found: body\); set data.text_field"):
        list(pieces(CorpusFile(tmp_path / "r.jsonl", "jsonl")))


def _stream(*documents):
    return [(d, True) for d in documents]


def test_a_tail_split_cuts_the_last_fraction_of_the_bytes_at_a_character():
    docs = ["a" * 50, "b" * 30, "c" * 20]
    out = list(split_stream(_stream(*docs), tail_plan(100, 0.25)))
    assert out == [("train", "a" * 50), ("train", BOUNDARY), ("train", "b" * 25), ("val", "b" * 5),
                   ("val", BOUNDARY), ("val", "c" * 20)]
    # 2 bytes per é: the cut at byte 75 falls inside the 38th é, which goes to val with the rest
    out = list(split_stream(_stream("é" * 50), tail_plan(100, 0.25)))
    assert out == [("train", "é" * 37), ("val", "é" * 13)]


def test_a_document_split_holds_out_whole_documents_chosen_by_the_seed():
    docs = [f"doc {i}" for i in range(10, 60)]  # 6 bytes each: 5 of them are 10% of the bytes
    plan = document_plan([6] * 50, 0.1, seed=1)
    out = list(split_stream(_stream(*docs), plan))
    val = [t for s, t in out if s == "val" and t is not BOUNDARY]
    assert len(val) == 5 and val == [d for d, v in zip(docs, plan.val_documents) if v]
    assert sum(1 for s, t in out if s == "val" and t is BOUNDARY) == 4  # between, not around
    assert (document_plan([6] * 50, 0.1, seed=1).val_documents == plan.val_documents).all()
    assert not (document_plan([6] * 50, 0.1, seed=2).val_documents == plan.val_documents).all()


def test_a_file_ending_inside_a_character_is_named_or_reported(tmp_path):
    (tmp_path / "cut.txt").write_bytes("naïve\n".encode()[:3])  # b"na\xc3": the ï is cut
    with pytest.raises(CorpusError, match="cut.txt: not valid UTF-8 at its end \\(byte 2\\)"):
        list(pieces(CorpusFile(tmp_path / "cut.txt", "txt")))
    seen = []
    assert list(pieces(CorpusFile(tmp_path / "cut.txt", "txt"), on_bad_utf8=lambda *w: seen.append(w))) == [
        ("na\ufffd", True)]
    assert seen == [(2, 1, b"\xc3")]
