"""Corpus files read as documents, in bounded pieces, whatever their size.

A corpus is a list of files; each file is `.txt` (one document), `.jsonl` (one document per line,
the text in a named field) or `.parquet` (one document per row, the text in a named column), each
optionally compressed (`.gz`, `.zst`). `pieces()` streams a file as (text, ends_document) pairs of
at most about PIECE_CHARS characters, cut after a newline, so no file is ever read whole: a 5 GB
single `.txt` streams like a thousand small ones.

Every unreadable file raises `CorpusError`, naming the file, the line where it knows it, and the cause.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from folio.errors import FolioError

FORMATS = ("txt", "jsonl", "parquet")
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
PIECE_CHARS = 1 << 20  # text handed on at a time: memory stays bounded by this, not by the file
READ_BYTES = 1 << 20


class CorpusError(FolioError, ValueError):
    """A corpus file cannot be read as the documents its format promises."""


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    format: str  # txt | jsonl | parquet
    compression: str | None = None  # gzip | zstd

    @property
    def name(self) -> str:
        return str(self.path)


def file_format(path: str | Path, forced: str = "auto") -> tuple[str, str | None] | None:
    """(format, compression) from the file's suffixes (`a.jsonl.gz` -> jsonl, gzip); None when the
    suffix is no known format and `forced` is auto. `forced` (txt, jsonl, parquet) overrides the suffix."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    if forced != "auto":
        return forced, compression
    ext = suffixes[-1].lstrip(".") if suffixes else ""
    return (ext, compression) if ext in FORMATS else None


def open_bytes(file: CorpusFile) -> BinaryIO:
    """The file's bytes, decompressed as they are read."""
    if file.compression == "gzip":
        return gzip.open(file.path, "rb")
    if file.compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(open(file.path, "rb"), closefd=True)
    return open(file.path, "rb")


def _decompression_errors() -> tuple[type[BaseException], ...]:
    errors: tuple = (EOFError, gzip.BadGzipFile, zlib.error)
    try:
        import zstandard

        errors += (zstandard.ZstdError,)
    except ImportError:  # zstd files then fail on open, with their own message
        pass
    return errors


def _cannot_decompress(file: CorpusFile, err: BaseException, where: str = "") -> CorpusError:
    return CorpusError(f"{file.name}: cannot decompress ({file.compression}){where}: {err or type(err).__name__}; "
                       "the file is truncated or corrupt: fetch it again")


def _blocks(stream: BinaryIO, file: CorpusFile) -> Iterator[bytes]:
    try:
        while block := stream.read(READ_BYTES):
            yield block
    except _decompression_errors() as err:
        raise _cannot_decompress(file, err) from None


def _lines(file: CorpusFile) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of the (decompressed) file."""
    line_number = 0
    with open_bytes(file) as stream:
        reader = io.BufferedReader(stream, READ_BYTES) if file.compression else stream
        try:
            for line_number, line in enumerate(reader, 1):
                yield line_number, line
        except _decompression_errors() as err:
            raise _cannot_decompress(file, err, f" after line {line_number:,}") from None


def _txt_pieces(file: CorpusFile, on_bad_utf8: Callable[[int, int, bytes], None] | None,
                on_bytes: Callable[[bytes, int], None] | None) -> Iterator[tuple[str, bool]]:
    """The file as one document in pieces cut after a newline. Invalid UTF-8 raises CorpusError,
    or, with `on_bad_utf8(byte_offset, line, next_bytes)`, is reported once and replaced by U+FFFD.
    `on_bytes(block, offset)` sees the (decompressed) bytes as they are read."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = lines = 0  # bytes and newlines before the current block
    carry = ""
    with open_bytes(file) as stream:
        for block in _blocks(stream, file):
            if on_bytes is not None:
                on_bytes(block, offset)
            pending = decoder.getstate()[0]  # bytes of a character cut by the previous block
            try:
                text = decoder.decode(block)
            except UnicodeDecodeError as err:
                at = offset - len(pending) + err.start
                line = lines + (pending + block).count(b"\n", 0, err.start) + 1
                if on_bad_utf8 is None:
                    raise CorpusError(f"{file.name}: not valid UTF-8 at byte {at:,} (line {line:,}); "
                                      "convert it to UTF-8") from None
                on_bad_utf8(at, line, (pending + block)[err.start:err.start + 8])
                decoder = codecs.getincrementaldecoder("utf-8")("replace")
                text = decoder.decode(pending + block)
            offset += len(block)
            lines += block.count(b"\n")
            carry += text
            if len(carry) >= PIECE_CHARS:
                cut = carry.rfind("\n", 0, len(carry)) + 1 or len(carry)  # a line longer than a piece is cut
                yield carry[:cut], False
                carry = carry[cut:]
        pending = decoder.getstate()[0]
        try:
            carry += decoder.decode(b"", final=True)
        except UnicodeDecodeError:  # the file ends inside a character
            if on_bad_utf8 is None:
                raise CorpusError(f"{file.name}: not valid UTF-8 at its end (byte {offset - len(pending):,}): "
                                  "the file is truncated or not UTF-8") from None
            on_bad_utf8(offset - len(pending), lines + 1, pending)
            carry += "\ufffd"
    yield carry, True


def _field(record, field: str, file: CorpusFile, where: str) -> str:
    if not isinstance(record, dict) or field not in record:
        keys = ", ".join(map(str, record)) if isinstance(record, dict) else type(record).__name__
        raise CorpusError(f"{file.name} {where}: no field {field!r} (found: {keys}); set data.text_field")
    text = record[field]
    if not isinstance(text, str):
        raise CorpusError(f"{file.name} {where}: field {field!r} holds {type(text).__name__}, not text")
    return text


def _jsonl_pieces(file: CorpusFile, field: str) -> Iterator[tuple[str, bool]]:
    for line_number, line in _lines(file):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CorpusError(f"{file.name} line {line_number:,}: not a JSON record ({err}); "
                              "fix or remove the line") from None
        yield _field(record, field, file, f"line {line_number:,}"), True


def _parquet_pieces(file: CorpusFile, field: str) -> Iterator[tuple[str, bool]]:
    import pyarrow
    import pyarrow.parquet as pq

    try:
        with open_bytes(file) as stream:
            source = pq.ParquetFile(stream if file.compression else file.path)
            if field not in source.schema_arrow.names:
                raise CorpusError(f"{file.name}: no column {field!r} (found: {', '.join(source.schema_arrow.names)}); "
                                  "set data.text_field")
            row = 0
            for batch in source.iter_batches(batch_size=1024, columns=[field]):
                for text in batch.column(0).to_pylist():
                    row += 1
                    if not isinstance(text, str):
                        raise CorpusError(f"{file.name} row {row:,}: column {field!r} holds "
                                          f"{type(text).__name__}, not text")
                    yield text, True
    except (pyarrow.ArrowException, OSError) as err:
        raise CorpusError(f"{file.name}: not a readable Parquet file ({err})") from None


def pieces(file: CorpusFile, text_field: str = "text",
           on_bad_utf8: Callable[[int, int, bytes], None] | None = None,
           on_bytes: Callable[[bytes, int], None] | None = None) -> Iterator[tuple[str, bool]]:
    """The file's documents as (text, ends_document) pieces, in order (the hooks: see _txt_pieces)."""
    if file.format == "txt":
        return _txt_pieces(file, on_bad_utf8, on_bytes)
    if file.format == "jsonl":
        return _jsonl_pieces(file, text_field)
    if file.format == "parquet":
        return _parquet_pieces(file, text_field)
    raise CorpusError(f"{file.name}: unknown format {file.format!r}: use one of {', '.join(FORMATS)}")


def count_documents(file: CorpusFile, text_field: str = "text") -> int:
    """Documents in the file: 1 for text, the non-blank lines of JSONL, the rows of Parquet (from
    its footer); JSONL records are not parsed here (validate does)."""
    if file.format == "txt":
        return 1
    if file.format == "parquet" and not file.compression:
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(file.path).metadata.num_rows
        except Exception as err:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
            raise CorpusError(f"{file.name}: not a readable Parquet file ({err})") from None
    if file.format == "parquet":
        return sum(1 for _ in pieces(file, text_field))
    return sum(1 for _, line in _lines(file) if line.strip())
