"""The corpus suite: is the raw corpus plain text worth training on, in any language or
programming language? (thresholds in params.yaml under `validate:`)
  utf8              the file decodes as UTF-8 (observed: byte offset of the first invalid sequence)
  not_lfs_pointer   the file is not a Git LFS pointer standing in for the real file
  not_binary        no NUL bytes (binary data, or UTF-16/32 text)
  control           few lines hold control characters other than tab, CR and form feed
  printable         nearly every character is printable or whitespace
  markup            few lines look like HTML/XML tags (an error page served instead of the file)
  min_bytes         at least validate.min_bytes bytes
  min_lines         at least validate.min_lines lines
  line_length       few lines longer than validate.max_line_length characters
  mean_line_length  lines are not shredded to a word or a character each
  duplicates        little of the text sits in lines repeating an earlier line
  distinct_chars    the character vocabulary is neither degenerate nor a logography's

GX has no text expectations, so the corpus becomes two DataFrames: one row per line, and one row of
file statistics computed in plain Python (size, NUL bytes, first invalid UTF-8 byte, ...).

Writes reports/validation/corpus/corpus.json (success; per check the observed value, threshold and
result; corpus stats) and GX Data Docs in reports/validation/corpus/docs/ (open index.html). On
failure both are written first, then CorpusValidationError names every failed check, so
`dvc repro` stops before the tokenizer is built.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

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


class CorpusValidationError(expectations.ValidationFailed):
    """The corpus failed expectations; the message names each with its observed value, threshold and an example."""


SUITE = expectations.Suite("corpus", "corpus validation", CorpusValidationError)


def _printable(ch: str) -> bool:
    # U+FFFD is what decoding put in place of invalid bytes (or what an earlier bad decode left)
    return ch in "\t\n\r\f" or (unicodedata.category(ch) not in NOT_TEXT and ch != "\ufffd")


def lfs_pointer(raw: bytes) -> str | None:
    """`oid sha256:… size N` if the file is a Git LFS pointer, else None."""
    match = LFS_POINTER.match(raw[:1024])
    return f"oid {match[1].decode()}, size {int(match[2]):,} bytes" if match else None


def duplicate_fraction(lines: list[str]) -> float:
    """The share of the text in lines that repeat an earlier line: lines are compared stripped, and
    weighted by their characters, so blank lines, braces and a play's speaker names weigh little.
    Tiny Shakespeare: 7%; Python's standard library: 16%; a file appended to itself: over 50%."""
    seen, repeated, total = set(), 0, 0
    for line in map(str.strip, lines):
        total += len(line)
        if line in seen:
            repeated += len(line)
        seen.add(line)
    return round(repeated / total, 6) if total else 0.0


def profile(raw: bytes):
    """The corpus as a DataFrame with one row per line (its text and length), and a dict of file statistics."""
    import pandas as pd

    try:
        text, bad_offset = raw.decode("utf-8"), None
    except UnicodeDecodeError as err:  # check the rest anyway, with U+FFFD for the bad bytes
        text, bad_offset = raw.decode("utf-8", errors="replace"), err.start
    # split("\n"), not splitlines(): that also splits at \v \f \x1c.. and so would hide them
    split = text.removesuffix("\n").split("\n") if text else []
    lines = pd.DataFrame({"line": pd.Series(split, dtype=object), "length": pd.Series(map(len, split), dtype=int)})
    chars = Counter(text)
    stats = {
        "bytes": len(raw),
        "characters": len(text),
        "lines": len(lines),
        "distinct_characters": len(chars),
        "longest_line": int(lines["length"].max()) if split else 0,
        "mean_line_length": round(float(lines["length"].mean()), 1) if split else None,
        "nul_bytes": raw.count(b"\0"),
        "first_invalid_utf8_byte": bad_offset,
        "lfs_pointer": lfs_pointer(raw),
        "printable_fraction": round(sum(n for c, n in chars.items() if _printable(c)) / len(text), 6) if text else 1.0,
        "duplicate_fraction": duplicate_fraction(split),
    }
    return lines, stats, chars


def _byte_example(raw: bytes, offset: int) -> str:
    line = raw.count(b"\n", 0, offset) + 1
    return f"line {line}: {raw[offset:offset + 8]!r}"


def _nul_example(raw: bytes) -> str:
    offset = raw.find(b"\0")
    return f"first at byte {offset:,}, {_byte_example(raw, offset)}"


def _regex_example(lines, regex: str):
    """Where `regex` first matches, with the line clipped around the match."""
    pattern = re.compile(regex)

    def example() -> str | None:
        for line_number, line in enumerate(lines["line"], 1):
            if match := pattern.search(line):
                column = match.start()
                return f"first at line {line_number}, column {column + 1}: {clip(line[max(0, column - 20):])}"
        return None

    return example


def _long_line_example(lines, limit: int):
    def example() -> str | None:
        for line_number, line in enumerate(lines["line"], 1):
            if len(line) > limit:
                return f"first: line {line_number}, {len(line):,} characters: {clip(line, 40)}"
        return None

    return example


def _most_repeated(lines) -> str:
    line, count = Counter(s for s in map(str.strip, lines["line"]) if s).most_common(1)[0]
    return f"most repeated: {clip(line, 50)} ×{count:,}"


def _rarest(chars: Counter, keep) -> str:
    shown = [f"{c!r} ×{n:,}" for c, n in sorted(chars.items(), key=lambda cn: cn[1]) if keep(c)][:5]
    return "e.g. " + ", ".join(shown)


def build_suite(p: ValidateParams, raw: bytes, lines, stats: dict, chars: Counter) -> list[Expectation]:
    """The corpus suite: one Expectation per check, observed values in the units of its threshold."""
    import great_expectations.expectations as gxe

    def at_most(fraction: float) -> float:  # GX's `mostly`: the fraction of rows that must pass
        return 1.0 - fraction

    def stat(column: str, **bounds):
        return gxe.ExpectColumnValuesToBeBetween(column=column, **bounds)

    utf8 = stats["first_invalid_utf8_byte"]
    return [
        Expectation("utf8", "stats", gxe.ExpectColumnValuesToBeNull(column="first_invalid_utf8_byte"),
                    "byte offset of the first invalid UTF-8 sequence (none: the file decodes)", "valid",
                    "not valid UTF-8: first invalid byte at offset {o:,}", utf8,
                    lambda: _byte_example(raw, utf8), lambda o: "valid" if o is None else f"bad byte at {o:,}"),
        Expectation("not_lfs_pointer", "stats", gxe.ExpectColumnValuesToBeNull(column="lfs_pointer"),
                    "the Git LFS pointer the file holds instead of the corpus, if any", "not a pointer",
                    "the file is a Git LFS pointer ({o}), not the file it points to: download the "
                    "real file (`git lfs pull`, or the host's LFS/media URL)", stats["lfs_pointer"],
                    show=lambda o: "no" if o is None else "LFS pointer"),
        Expectation("not_binary", "stats", stat("nul_bytes", max_value=0), "NUL bytes in the file", "= 0",
                    "{o:,} NUL bytes (none allowed): binary data or UTF-16/32, not UTF-8 text", stats["nul_bytes"],
                    lambda: _nul_example(raw)),
        Expectation("control", "lines", gxe.ExpectColumnValuesToNotMatchRegex(
                        column="line", regex=CONTROL, mostly=at_most(p.max_control_char_fraction)),
                    "fraction of lines holding control characters other than tab, CR and form feed",
                    f"≤ {percent(p.max_control_char_fraction)}",
                    "{s} of lines hold control characters, more than "
                    f"validate.max_control_char_fraction={p.max_control_char_fraction}",
                    example=_regex_example(lines, CONTROL), show=percent),
        Expectation("printable", "stats", stat("printable_fraction", min_value=p.min_printable_fraction),
                    "fraction of characters that are printable or whitespace", f"≥ {percent(p.min_printable_fraction)}",
                    "only {s} of characters are printable or whitespace, fewer than "
                    f"validate.min_printable_fraction={p.min_printable_fraction}", stats["printable_fraction"],
                    lambda: _rarest(chars, lambda c: not _printable(c)), percent),
        Expectation("markup", "lines", gxe.ExpectColumnValuesToNotMatchRegex(
                        column="line", regex=MARKUP, mostly=at_most(p.max_markup_line_fraction)),
                    "fraction of lines that look like HTML/XML tags", f"≤ {percent(p.max_markup_line_fraction)}",
                    "{s} of lines look like HTML/XML tags (an error page?), more than "
                    f"validate.max_markup_line_fraction={p.max_markup_line_fraction}",
                    example=_regex_example(lines, MARKUP), show=percent),
        Expectation("min_bytes", "stats", stat("bytes", min_value=p.min_bytes), "size of the corpus in bytes",
                    f"≥ {p.min_bytes:,}", f"the corpus is {{o:,}} bytes, fewer than validate.min_bytes={p.min_bytes:,}",
                    stats["bytes"]),
        Expectation("min_lines", "lines", gxe.ExpectTableRowCountToBeBetween(min_value=p.min_lines),
                    "lines in the corpus", f"≥ {p.min_lines:,}",
                    f"the corpus has {{o:,}} lines, fewer than validate.min_lines={p.min_lines:,}"),
        Expectation("line_length", "lines", gxe.ExpectColumnValueLengthsToBeBetween(
                        column="line", max_value=p.max_line_length, mostly=at_most(p.max_long_line_fraction)),
                    f"fraction of lines longer than {p.max_line_length:,} characters",
                    f"≤ {percent(p.max_long_line_fraction)}",
                    f"{{s}} of lines are longer than validate.max_line_length={p.max_line_length:,} characters, "
                    f"more than validate.max_long_line_fraction={p.max_long_line_fraction}",
                    example=_long_line_example(lines, p.max_line_length), show=percent),
        Expectation("mean_line_length", "lines", gxe.ExpectColumnMeanToBeBetween(
                        column="length", min_value=p.min_mean_line_length),
                    "mean line length in characters", f"≥ {p.min_mean_line_length:g}",
                    "lines hold {s} characters on average, fewer than "
                    f"validate.min_mean_line_length={p.min_mean_line_length:g}: text shredded into lines?",
                    example=lambda: "first lines: " + ", ".join(map(clip, lines["line"][:5])) if len(lines) else None),
        Expectation("duplicates", "stats", stat("duplicate_fraction", max_value=p.max_duplicate_fraction),
                    "share of the text (non-blank lines, by characters) in lines repeating an earlier line",
                    f"≤ {percent(p.max_duplicate_fraction)}",
                    "{s} of the text repeats earlier lines, more than "
                    f"validate.max_duplicate_fraction={p.max_duplicate_fraction}", stats["duplicate_fraction"],
                    lambda: _most_repeated(lines), percent),
        Expectation("distinct_chars", "stats", stat("distinct_characters", min_value=p.min_distinct_chars,
                                                    max_value=p.max_distinct_chars),
                    "distinct characters (a character tokenizer's vocabulary)",
                    f"{p.min_distinct_chars:,} to {p.max_distinct_chars:,}",
                    f"{{o:,}} distinct characters, outside validate.min_distinct_chars={p.min_distinct_chars:,} "
                    f"to validate.max_distinct_chars={p.max_distinct_chars:,}", stats["distinct_characters"],
                    lambda: _rarest(chars, lambda c: True)),
    ]


def _stats_frame(stats: dict):
    import pandas as pd

    return pd.DataFrame([stats])


def check(p: ValidateParams, raw: bytes, subject: str) -> list:
    """Run the suite over the corpus bytes; writes reports/validation/corpus/ and raises
    CorpusValidationError if any expectation fails."""
    lines, stats, chars = profile(raw)
    suite = build_suite(p, raw, lines, stats, chars)
    return expectations.validate(SUITE, {"lines": lines, "stats": _stats_frame(stats)}, suite,
                                 subject=subject, extra={"corpus": subject, "stats": stats})
