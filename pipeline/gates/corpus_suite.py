"""The corpus suite: is the raw corpus plain text worth training on, in any language or
programming language? (thresholds in params.yaml under `validate:`)
  utf8              every file decodes as UTF-8 (observed: byte offset of the first invalid sequence)
  not_lfs_pointer   no file is a Git LFS pointer standing in for the real file
  not_binary        no NUL characters (binary data, or UTF-16/32 text)
  control           few lines hold control characters other than tab, CR and form feed
  printable         nearly every character is printable or whitespace
  markup            few lines look like HTML/XML tags (an error page served instead of the file)
  min_bytes         at least validate.min_bytes bytes of text
  min_lines         at least validate.min_lines lines
  line_length       few lines longer than validate.max_line_length characters
  mean_line_length  lines are not shredded to a word or a character each
  duplicates        little of the text sits in lines repeating an earlier line
  distinct_chars    the character set is not degenerate and, for tokenizer.kind=char only, not too
                    large for a vocabulary of characters (bpe, word and tiktoken are not limited)
  documents         every file holds at least one document

The suite knows the tokenizer (tokenizer.kind) and what the text looks like: a failure of a check
that a preset sets for source code or web text names it ("this looks like source code: see
presets/code.yaml"), judging by the share of lines that look like code (`stats.code_line_fraction`).

The corpus is read once, streamed in bounded pieces (folio.corpus), whatever its size: every
statistic is exact but duplicates, which keeps 64-bit line hashes (never the lines) of every
line up to DUPLICATES_EXACT_BYTES of corpus, and past that of the lines whose hash falls in a
1/k sample, so the memory stays bounded; the report says which (`stats.duplicates_sampled`).
Lines are the text's lines whatever the pieces: a line a piece does not end goes on in the next
(the end of a document or file ends it), held while it is at most KEEP_LINE_CHARS long and past
that measured as it streams (its length, a running crc32/adler32 of its stripped text, its first
control character and tag), never held whole. GX then checks two DataFrames: one row of corpus
statistics and one row per file.

Writes reports/validation/corpus/corpus.json (success; per check the observed value, threshold and
result; corpus stats) and GX Data Docs in reports/validation/corpus/docs/ (open index.html). On
failure both are written first, then CorpusValidationError names every failed check with the file
and line where it first fails, so `dvc repro` stops before the tokenizer is built. A file that
cannot be read at all (a truncated gzip, a broken JSONL line, a Parquet file without the text
column) stops the stage at once, naming the file.
"""

from __future__ import annotations

import re
import unicodedata
import zlib

import numpy as np

from folio import corpus as corpus_files
from pipeline.gates import expectations
from pipeline.gates.expectations import Expectation, clip, percent
from pipeline.params import ValidateParams

# C0 and C1 control characters except \t \n \f \r, which occur in plain text and source code.
CONTROL = r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]"
# Document prologues and comments, any closing tag, any tag with a quoted attribute, bare common HTML
# tags. Comparisons (`a < b`, `x<a && a>y`) and generics (`List<String>`) in code do not match.
MARKUP = (
    r"(?i)<!doctype\b|<!--|<\?xml\b|</[a-z][\w:.-]*\s*>"
    r"|<[a-z][\w:.-]*(?:\s+[\w:.-]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))+\s*/?>"
    r"|<(?:html|head|body|div|span|p|a|b|i|br|hr|img|table|tr|td|ul|ol|li|h[1-6]|script|style|meta)\s*/?>"
)
# What Git stores instead of a file tracked with LFS: a few lines naming the real file's digest and size.
LFS_POINTER = re.compile(rb"\Aversion https://git-lfs\.github\.com/spec/v\d+\n(?:.*\n)*?oid (\S+)\nsize (\d+)\n?\Z")
# Unicode categories that are not text: control, surrogate, private use, unassigned.
NOT_TEXT = {"Cc", "Cs", "Co", "Cn"}
# A line of code: indented, starting with a keyword of a common language, or ending in ; { or }.
# Prose has few (Tiny Shakespeare 5%, these docs' Markdown 18%); source code most (Python 95%, C 81%).
CODE_START = (r"[ \t]+\S|(?:def|class|import|from|return|function|const|package|#include|#define|using|fn|func"
              r"|pub)\b")
CODE_END = r"[;{}][ \t]*"
CODE_LINE = re.compile(rf"(?m)^(?:{CODE_START}|[^\n]*{CODE_END}$)")
NON_BLANK_LINE = re.compile(r"(?m)^[^\S\n]*\S")  # a line holding more than whitespace
CODE_LINE_FRACTION = 0.5  # past this share of the non-blank lines, the text looks like source code
# The preset for each kind of text, and the checks whose thresholds (or tokenizer) it sets: a failure
# of one of those checks names the preset (tests/test_presets.py checks it does set them). The
# defaults suit prose from books; the web preset, prose from the web.
PRESETS = {
    "source code": ("presets/code.yaml", ("control", "markup", "line_length", "distinct_chars")),
    "prose": ("presets/web.yaml", ("control", "printable", "markup", "line_length", "distinct_chars")),
}


class CorpusValidationError(expectations.ValidationFailed):
    """The corpus failed expectations; the message names each with its observed value, threshold and an example."""


SUITE = expectations.Suite("corpus", "corpus validation", CorpusValidationError)


DUPLICATES_EXACT_BYTES = 256 * 10**6  # past this much text, duplicates are estimated over a hash sample
KEEP_LINE_CHARS = 1 << 16  # a line a piece does not end is held up to this long, then measured as it streams
HEAD_CHARS = 64  # of a streamed line, kept for examples
OVERLAP_CHARS = 1024  # of a streamed line, searched again with its next part: a tag cut between them is found
SNIPPET_CHARS = 61  # quoted from where a check first fails in a streamed line (clip's 60 and one)
EXAMPLE_TEXTS = 10_000  # repeated lines whose text is kept for the "most repeated" example
CODE_POINTS = 0x110000


def _printable(ch: str) -> bool:
    # U+FFFD is what decoding put in place of invalid bytes (or what an earlier bad decode left)
    return ch in "\t\n\r\f" or (unicodedata.category(ch) not in NOT_TEXT and ch != "\ufffd")


def lfs_pointer(raw: bytes) -> str | None:
    """`oid sha256:… size N` if the file is a Git LFS pointer, else None."""
    match = LFS_POINTER.match(raw[:1024])
    return f"oid {match[1].decode()}, size {int(match[2]):,} bytes" if match else None


class Duplicates:
    """The share of the text in lines repeating an earlier one: Σ (occurrences − 1) × length over
    distinct stripped lines, divided by the characters of all stripped lines. A line is known by a
    64-bit key (crc32 and adler32 of its bytes: the same in every process, unlike hash()). With `every` = k > 1
    only lines whose crc32 is a multiple of k are counted: every occurrence of a sampled line
    is, so the share stays an unbiased estimate while the table holds 1/k of the lines."""

    def __init__(self, every: int):
        self.every, self.seen, self.repeats, self.texts = every, set(), {}, {}
        self.repeated = self.total = 0

    def add_lines(self, lines: list[str]) -> None:
        """Count every stripped non-blank line of `lines` (one loop, locals only: it runs per line)."""
        every, seen, repeats, texts = self.every, self.seen, self.repeats, self.texts
        crc32, adler32 = zlib.crc32, zlib.adler32
        repeated = total = 0
        for line in lines:
            line = line.strip()
            if not line:
                continue
            data = line.encode("utf-8", "surrogatepass")
            crc = crc32(data)
            if every > 1 and crc % every:
                continue
            total += len(line)
            key = crc | (adler32(data) << 32)
            if key in seen:
                repeated += len(line)
                repeats[key] = repeats.get(key, 1) + 1
                if len(texts) < EXAMPLE_TEXTS:
                    texts.setdefault(key, line)
            else:
                seen.add(key)
        self.repeated += repeated
        self.total += total

    def add_key(self, crc: int, adler: int, length: int, text: str) -> None:
        """Count one stripped line known by the crc32 and adler32 of its bytes and its length in
        characters (a line measured as it streamed, never held whole: LongLine); `text` begins it."""
        if not length or (self.every > 1 and crc % self.every):
            return
        self.total += length
        key = crc | (adler << 32)
        if key in self.seen:
            self.repeated += length
            self.repeats[key] = self.repeats.get(key, 1) + 1
            if len(self.texts) < EXAMPLE_TEXTS:
                self.texts.setdefault(key, text)
        else:
            self.seen.add(key)

    def fraction(self) -> float:
        return round(self.repeated / self.total, 6) if self.total else 0.0

    def most_repeated(self) -> str | None:
        if not self.repeats:
            return None
        key = max(self.repeats, key=lambda k: (self.repeats[k], k in self.texts))
        return f"most repeated: {clip(self.texts.get(key, '(text not kept)'), 50)} ×{self.repeats[key]:,}"


class LongLine:
    """A line longer than KEEP_LINE_CHARS, measured part by part as it streams and never held whole:
    its length; the crc32, adler32 and length of its stripped text, running over the parts (the
    whitespace after the last non-blank character is hashed into a second running state, which
    becomes the line's only if more text follows); the column and text of its first control
    character and first tag (each part is searched behind the last OVERLAP_CHARS characters of the
    one before, so a tag cut between two parts is found); its first characters, for examples."""

    def __init__(self, scan: "Scan", where: str):
        self.control, self.markup, self.where = scan.control, scan.markup, where
        self.chars = 0
        self.head = self.stripped_head = ""  # the first HEAD_CHARS characters, of the line and of it stripped
        self.tail = ""  # the last OVERLAP_CHARS characters
        self.started = False  # past the leading whitespace
        self.running = self.kept = (0, 1, 0)  # crc32, adler32, characters: with and without trailing whitespace
        self.found: dict[str, list] = {}  # check -> [column, SNIPPET_CHARS characters from 20 before it]

    def add(self, part: str) -> None:
        if len(self.head) < HEAD_CHARS:
            self.head += part[:HEAD_CHARS - len(self.head)]
        for found in self.found.values():
            if len(found[1]) < SNIPPET_CHARS:
                found[1] += part[:SNIPPET_CHARS - len(found[1])]
        window = self.tail + part
        self._search(window, self.chars - len(self.tail), final=False)
        self.chars += len(part)
        self.tail = window[-OVERLAP_CHARS:]
        self._hash(part)

    def _search(self, window: str, before: int, final: bool) -> None:
        for check, regex in (("control", self.control), ("markup", self.markup)):
            if check in self.found or not (match := regex.search(window)):
                continue
            # a tag reaching the window's end may go on in the next part: it is searched again there
            if final or check == "control" or match.end() < len(window):
                at = match.start()
                self.found[check] = [before + at + 1, window[max(0, at - 20):][:SNIPPET_CHARS]]

    def _hash(self, part: str) -> None:
        if not self.started:
            part = part.lstrip()
            if not part:
                return
            self.started = True
        if len(self.stripped_head) < HEAD_CHARS:
            self.stripped_head += part[:HEAD_CHARS - len(self.stripped_head)]
        body = part.rstrip()
        crc, adler, length = self.running
        if body:
            data = body.encode("utf-8", "surrogatepass")
            crc, adler, length = zlib.crc32(data, crc), zlib.adler32(data, adler), length + len(body)
            self.kept = (crc, adler, length)
        if len(body) < len(part):
            data = part[len(body):].encode("utf-8", "surrogatepass")
            crc, adler, length = zlib.crc32(data, crc), zlib.adler32(data, adler), length + len(part) - len(body)
        self.running = (crc, adler, length)

    def finish(self) -> None:
        """The line has ended: a tag reaching its end counts."""
        self._search(self.tail, self.chars - len(self.tail), final=True)


class Scan:
    """Every statistic of the suite, accumulated piece by piece, with the first place each check
    fails. Lines are real lines whatever the pieces: a line a piece does not end waits for the next
    (held while it is at most KEEP_LINE_CHARS long, past that measured as it streams: LongLine); the
    end of a document ends a line."""

    def __init__(self, p: ValidateParams, duplicates_every: int):
        self.p = p
        self.counts = np.zeros(CODE_POINTS, dtype=np.int64)  # occurrences of every code point
        self.duplicates = Duplicates(duplicates_every)
        self.lines = self.line_chars = self.text_bytes = self.long_lines = self.longest = 0
        self.code_lines = self.non_blank_lines = 0
        self.control_lines = self.markup_lines = 0
        self.first_bad_utf8: int | None = None
        self.examples: dict[str, str] = {}
        self.files: list[dict] = []
        self.control = re.compile(CONTROL)
        self.markup = re.compile(MARKUP)
        self.progress = None  # progress(text bytes scanned so far), after every piece
        self.line = 0  # lines ended so far in the document at hand
        self.pending: list[str] = []  # the parts of a line not ended yet, up to KEEP_LINE_CHARS
        self.pending_chars = 0
        self.long_line: LongLine | None = None  # a line not ended yet, past KEEP_LINE_CHARS
        self.first_lines: list[str] = []  # the first 5, clipped: the mean_line_length example

    def example(self, check: str, text: str) -> None:
        self.examples.setdefault(check, text)

    def add_file(self, file, text_field: str) -> None:
        row = {"path": file.name, "format": file.format, "documents": 0, "lines": 0,
               "first_invalid_utf8_byte": None, "lfs_pointer": None, "nul_characters": 0}
        with open(file.path, "rb") as raw:
            row["lfs_pointer"] = lfs_pointer(raw.read(1024))
        if row["lfs_pointer"]:
            self.example("not_lfs_pointer", f"{file.name}: {row['lfs_pointer']}")

        def bad_utf8(offset: int, line: int, following: bytes) -> None:
            row["first_invalid_utf8_byte"] = offset
            if self.first_bad_utf8 is None:
                self.first_bad_utf8 = offset
            self.example("utf8", f"line {line}: {following!r} in {file.name}")

        newlines = [0]  # in the bytes read so far

        def raw_bytes(block: bytes, offset: int) -> None:
            if "not_binary" not in self.examples and (at := block.find(b"\0")) >= 0:
                line = newlines[0] + block.count(b"\n", 0, at) + 1
                self.example("not_binary", f"first at byte {offset + at:,}, line {line}: "
                                           f"{block[at:at + 8]!r} in {file.name}")
            newlines[0] += block.count(b"\n")

        for text, ends in corpus_files.pieces(file, text_field, on_bad_utf8=bad_utf8, on_bytes=raw_bytes):
            self.add_text(text, ends, file, row)
            if ends:
                row["documents"] += 1
        self.files.append(row)

    def add_text(self, text: str, ends: bool, file, row: dict) -> None:
        """One piece (`ends`: the document ends with it): its characters, then its lines."""
        if text:
            self._add_characters(text, file, row)
        start = 0
        if self.long_line is not None or self.pending:  # a line goes on from earlier pieces
            end = text.find("\n")
            if end < 0 and not ends:  # and past this one
                self._continue_line(text, file)
                text = ""
            elif self.long_line is not None:
                self.long_line.add(text if end < 0 else text[:end])
                self._end_long_line(file, row)
                start = len(text) if end < 0 else end + 1
            else:
                text = "".join(self.pending) + text
                self.pending, self.pending_chars = [], 0
        cut = len(text) if ends else text.rfind("\n") + 1  # after the last line this piece ends
        if cut > start:
            self._add_lines(text[start:cut] if start or cut < len(text) else text, file, row)
        if cut < len(text):
            self._continue_line(text[cut:], file)
        if ends:
            self.line = 0
        if self.progress:
            self.progress(self.text_bytes)

    def _add_characters(self, text: str, file, row: dict) -> None:
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        piece_counts = np.bincount(codes)  # up to the highest code point present
        self.counts[:len(piece_counts)] += piece_counts
        row["nul_characters"] += int(piece_counts[0])
        if piece_counts[0] and "not_binary" not in self.examples:
            at = text.index("\0")
            self.example("not_binary", f"first at line {self.line + text.count(chr(10), 0, at) + 1}: "
                                       f"{clip(text[at:], 20)} in {file.name}")
        self.text_bytes += len(text.encode("utf-8", "surrogatepass"))

    def _continue_line(self, part: str, file) -> None:
        """`part` of a line that goes on in the next piece: held, or streamed once the line is long."""
        if self.long_line is None:
            self.pending.append(part)
            self.pending_chars += len(part)
            if self.pending_chars <= KEEP_LINE_CHARS:
                return
            part = "".join(self.pending)
            self.pending, self.pending_chars = [], 0
            self.long_line = LongLine(self, self._where(file, self.line)(0))
        self.long_line.add(part)

    def _end_long_line(self, file, row: dict) -> None:
        line, self.long_line = self.long_line, None
        line.finish()
        self.lines += 1
        row["lines"] += 1
        self.line += 1
        self.line_chars += line.chars
        self.longest = max(self.longest, line.chars)
        if line.chars > self.p.max_line_length:
            self.long_lines += 1
            self.example("line_length", f"first: {line.where}, {line.chars:,} characters: "
                                        f"{clip(line.head, 40)} in {file.name}")
        self.control_lines += "control" in line.found
        self.markup_lines += "markup" in line.found
        for check, (column, snippet) in line.found.items():
            self.example(check, f"first at {line.where}, column {column}: {clip(snippet)} in {file.name}")
        crc, adler, length = line.kept
        self.duplicates.add_key(crc, adler, length, line.stripped_head[:length])
        if line.started:  # what CODE_LINE and NON_BLANK_LINE find in a line held whole
            self.non_blank_lines += 1
            self.code_lines += bool(re.match(CODE_START, line.head) or re.search(CODE_END + r"\Z", line.tail))
        self._first_lines([line.head])

    def _first_lines(self, lines: list[str]) -> None:
        if len(self.first_lines) < 5:
            self.first_lines += map(clip, lines[:5 - len(self.first_lines)])
            self.examples["mean_line_length"] = "first lines: " + ", ".join(self.first_lines)

    def _add_lines(self, text: str, file, row: dict) -> None:
        """The lines of `text`, which ends where a line ends (a newline, or the document's end)."""
        line_base = self.line
        lines = text.removesuffix("\n").split("\n")
        where = self._where(file, line_base)
        lengths = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
        self.lines += len(lines)
        row["lines"] += len(lines)
        self.line_chars += int(lengths.sum())
        self.longest = max(self.longest, int(lengths.max()))
        long = np.flatnonzero(lengths > self.p.max_line_length)
        self.long_lines += len(long)
        if len(long):
            i = int(long[0])
            self.example("line_length", f"first: {where(i)}, {len(lines[i]):,} characters: "
                                        f"{clip(lines[i], 40)} in {file.name}")
        if self.control.search(text):
            self.control_lines += self._matching_lines(self.control, text, lines, "control", where, file.name)
        self.markup_lines += self._matching_lines(self.markup, text, lines, "markup", where, file.name)
        self.duplicates.add_lines(lines)
        self.code_lines += len(CODE_LINE.findall(text))
        self.non_blank_lines += len(NON_BLANK_LINE.findall(text))
        self._first_lines(lines)
        self.line += len(lines)

    @staticmethod
    def _where(file, line_base: int):
        if file.format == "txt":
            return lambda i: f"line {line_base + i + 1}"
        return lambda i: f"document line {line_base + i + 1}"

    def _matching_lines(self, regex, text: str, lines: list[str], check: str, where, name: str) -> int:
        """Lines of `text` holding a match of `regex`, counted once each."""
        count, line, position, last_line = 0, 0, 0, -1
        for match in regex.finditer(text):
            line += text.count("\n", position, match.start())
            position = match.start()
            if line != last_line:
                count, last_line = count + 1, line
                if check not in self.examples:
                    column = match.start() - (text.rfind("\n", 0, match.start()) + 1)
                    self.example(check, f"first at {where(line)}, column {column + 1}: "
                                        f"{clip(lines[line][max(0, column - 20):])} in {name}")
        return count

    def stats(self) -> dict:
        present = np.flatnonzero(self.counts)
        printable = sum(int(self.counts[c]) for c in present if _printable(chr(c)))
        characters = int(self.counts.sum())
        return {
            "bytes": self.text_bytes,
            "characters": characters,
            "lines": self.lines,
            "files": len(self.files),
            "documents": sum(f["documents"] for f in self.files),
            "distinct_characters": len(present),
            "longest_line": self.longest,
            "mean_line_length": round(self.line_chars / self.lines, 1) if self.lines else 0.0,
            "nul_bytes": int(self.counts[0]),
            "first_invalid_utf8_byte": self.first_bad_utf8,
            "lfs_pointer": next((f["lfs_pointer"] for f in self.files if f["lfs_pointer"]), None),
            "printable_fraction": round(printable / characters, 6) if characters else 1.0,
            "control_line_fraction": round(self.control_lines / self.lines, 6) if self.lines else 0.0,
            "markup_line_fraction": round(self.markup_lines / self.lines, 6) if self.lines else 0.0,
            "long_line_fraction": round(self.long_lines / self.lines, 6) if self.lines else 0.0,
            "duplicate_fraction": self.duplicates.fraction(),
            "code_line_fraction": round(self.code_lines / self.non_blank_lines, 6) if self.non_blank_lines else 0.0,
            "duplicates_sampled": (f"1/{self.duplicates.every} of distinct lines (by hash)"
                                   if self.duplicates.every > 1 else "exact"),
        }

    def rarest(self, keep) -> str:
        present = [int(c) for c in np.flatnonzero(self.counts) if keep(chr(c))]
        present.sort(key=lambda c: self.counts[c])
        return "e.g. " + ", ".join(f"{chr(c)!r} ×{int(self.counts[c]):,}" for c in present[:5])


def scan(p: ValidateParams, files: list, text_field: str, total_bytes: int, progress=None) -> Scan:
    """One pass over `files`; `progress(text_bytes_so_far)` after every piece."""
    every = max(1, -(-total_bytes // DUPLICATES_EXACT_BYTES))
    result = Scan(p, every)
    result.progress = progress
    for file in files:
        result.add_file(file, text_field)
    return result


def looks_like(stats: dict) -> str:
    """What the corpus looks like: "source code" when at least CODE_LINE_FRACTION of its non-blank
    lines look like code, else "prose"."""
    return "source code" if stats["code_line_fraction"] >= CODE_LINE_FRACTION else "prose"


def preset_hint(stats: dict, check: str) -> str:
    """Which preset fits, for a check the preset for this kind of text sets, else "": prose that
    fails the defaults (made for books) is likely from the web."""
    kind = looks_like(stats)
    preset, checks = PRESETS[kind]
    if check not in checks:
        return ""
    if kind == "source code":
        return f"this looks like source code ({percent(stats['code_line_fraction'])} of its lines): see {preset}"
    return f"if this is text from the web, see {preset}"


def distinct_chars(p: ValidateParams, stats: dict, tokenizer_kind: str, gxe) -> tuple:
    """(GX expectation, description, threshold, failure) of the distinct_chars check: a char
    vocabulary is bounded both ways, other tokenizers only below (too few is not language)."""
    low, high = p.min_distinct_chars, p.max_distinct_chars
    observed = stats["distinct_characters"]
    if tokenizer_kind != "char":
        return (gxe.ExpectColumnValuesToBeBetween(column="distinct_characters", min_value=low),
                f"distinct characters (tokenizer.kind={tokenizer_kind} does not make a vocabulary of them: "
                "validate.max_distinct_chars, a char vocabulary's limit, is not applied)",
                f"≥ {low:,} (no maximum for {tokenizer_kind})",
                f"{{o:,}} distinct characters, fewer than validate.min_distinct_chars={low:,}: not text in a language")
    advice = (": too many for a vocabulary of characters; use tokenizer.kind=bpe (or raise "
              "validate.max_distinct_chars)" if observed > high else ": not text in a language")
    return (gxe.ExpectColumnValuesToBeBetween(column="distinct_characters", min_value=low, max_value=high),
            "distinct characters (the vocabulary of tokenizer.kind=char)", f"{low:,} to {high:,}",
            f"{{o:,}} distinct characters, outside validate.min_distinct_chars={low:,} "
            f"to validate.max_distinct_chars={high:,} (tokenizer.kind=char){advice}")


def build_suite(p: ValidateParams, result: Scan, stats: dict, tokenizer_kind: str = "char") -> list[Expectation]:
    """The corpus suite: one Expectation per check, observed values in the units of its threshold;
    `tokenizer_kind` (tokenizer.kind) decides whether the character set is bounded above."""
    import great_expectations.expectations as gxe

    def stat(column: str, **bounds):
        return gxe.ExpectColumnValuesToBeBetween(column=column, **bounds)

    def example(check: str):
        return lambda: result.examples.get(check)

    utf8 = stats["first_invalid_utf8_byte"]
    empty = [f["path"] for f in result.files if not f["documents"]]
    suite = [
        Expectation("utf8", "stats", gxe.ExpectColumnValuesToBeNull(column="first_invalid_utf8_byte"),
                    "byte offset of the first invalid UTF-8 sequence (none: the files decode)", "valid",
                    "not valid UTF-8: first invalid byte at offset {o:,}", utf8,
                    example("utf8"), lambda o: "valid" if o is None else f"bad byte at {o:,}"),
        Expectation("not_lfs_pointer", "stats", gxe.ExpectColumnValuesToBeNull(column="lfs_pointer"),
                    "the Git LFS pointer a file holds instead of the corpus, if any", "not a pointer",
                    "the file is a Git LFS pointer ({o}), not the file it points to: download the "
                    "real file (`git lfs pull`, or the host's LFS/media URL)", stats["lfs_pointer"],
                    example("not_lfs_pointer"), show=lambda o: "no" if o is None else "LFS pointer"),
        Expectation("not_binary", "stats", stat("nul_bytes", max_value=0), "NUL characters in the text", "= 0",
                    "{o:,} NUL bytes (none allowed): binary data or UTF-16/32, not UTF-8 text", stats["nul_bytes"],
                    example("not_binary")),
        Expectation("control", "stats", stat("control_line_fraction", max_value=p.max_control_char_fraction),
                    "fraction of lines holding control characters other than tab, CR and form feed",
                    f"≤ {percent(p.max_control_char_fraction)}",
                    "{s} of lines hold control characters, more than "
                    f"validate.max_control_char_fraction={p.max_control_char_fraction}",
                    stats["control_line_fraction"], example("control"), percent),
        Expectation("printable", "stats", stat("printable_fraction", min_value=p.min_printable_fraction),
                    "fraction of characters that are printable or whitespace", f"≥ {percent(p.min_printable_fraction)}",
                    "only {s} of characters are printable or whitespace, fewer than "
                    f"validate.min_printable_fraction={p.min_printable_fraction}", stats["printable_fraction"],
                    lambda: result.rarest(lambda c: not _printable(c)), percent),
        Expectation("markup", "stats", stat("markup_line_fraction", max_value=p.max_markup_line_fraction),
                    "fraction of lines that look like HTML/XML tags", f"≤ {percent(p.max_markup_line_fraction)}",
                    "{s} of lines look like HTML/XML tags (an error page?), more than "
                    f"validate.max_markup_line_fraction={p.max_markup_line_fraction}",
                    stats["markup_line_fraction"], example("markup"), percent),
        Expectation("min_bytes", "stats", stat("bytes", min_value=p.min_bytes), "size of the text in bytes",
                    f"≥ {p.min_bytes:,}", f"the corpus is {{o:,}} bytes, fewer than validate.min_bytes={p.min_bytes:,}",
                    stats["bytes"]),
        Expectation("min_lines", "stats", stat("lines", min_value=p.min_lines),
                    "lines in the corpus", f"≥ {p.min_lines:,}",
                    f"the corpus has {{o:,}} lines, fewer than validate.min_lines={p.min_lines:,}", stats["lines"]),
        Expectation("line_length", "stats", stat("long_line_fraction", max_value=p.max_long_line_fraction),
                    f"fraction of lines longer than {p.max_line_length:,} characters",
                    f"≤ {percent(p.max_long_line_fraction)}",
                    f"{{s}} of lines are longer than validate.max_line_length={p.max_line_length:,} characters, "
                    f"more than validate.max_long_line_fraction={p.max_long_line_fraction}",
                    stats["long_line_fraction"], example("line_length"), percent),
        Expectation("mean_line_length", "stats", stat("mean_line_length", min_value=p.min_mean_line_length),
                    "mean line length in characters", f"≥ {p.min_mean_line_length:g}",
                    "lines hold {s} characters on average, fewer than "
                    f"validate.min_mean_line_length={p.min_mean_line_length:g}: text shredded into lines?",
                    stats["mean_line_length"], example("mean_line_length")),
        Expectation("duplicates", "stats", stat("duplicate_fraction", max_value=p.max_duplicate_fraction),
                    "share of the text (non-blank lines, by characters) in lines repeating an earlier line"
                    + ("" if stats["duplicates_sampled"] == "exact" else f", over {stats['duplicates_sampled']}"),
                    f"≤ {percent(p.max_duplicate_fraction)}",
                    "{s} of the text repeats earlier lines, more than "
                    f"validate.max_duplicate_fraction={p.max_duplicate_fraction}", stats["duplicate_fraction"],
                    result.duplicates.most_repeated, percent),
        Expectation("distinct_chars", "stats", *distinct_chars(p, stats, tokenizer_kind, gxe),
                    stats["distinct_characters"], lambda: result.rarest(lambda c: True)),
        Expectation("documents", "files", stat("documents", min_value=1),
                    "fraction of files holding no document", "= 0.00%",
                    "{s} of the files hold no document (an empty JSONL or Parquet file?)",
                    example=lambda: f"first: {empty[0]}" if empty else None, show=percent),
    ]
    too_many = stats["distinct_characters"] > p.max_distinct_chars  # too few: no preset helps
    for e in suite:
        e.hint = preset_hint(stats, e.name) if e.name != "distinct_chars" or too_many else ""
    return suite


def check(p: ValidateParams, files: list, text_field: str, total_bytes: int, subject: str,
          progress=None, digest: str | None = None, tokenizer_kind: str = "char") -> list:
    """Scan the corpus files, run the suite over what the scan found (for a `tokenizer_kind`
    vocabulary); writes reports/validation/corpus/ and raises CorpusValidationError if any
    expectation fails."""
    import pandas as pd

    result = scan(p, files, text_field, total_bytes, progress)
    stats = result.stats()
    suite = build_suite(p, result, stats, tokenizer_kind)
    frames = {"stats": pd.DataFrame([stats]), "files": pd.DataFrame(result.files)}
    return expectations.validate(SUITE, frames, suite, subject=subject,
                                 extra={"corpus": subject, "corpus_sha256": digest, "tokenizer_kind": tokenizer_kind,
                                        "looks_like": looks_like(stats), "stats": stats})
