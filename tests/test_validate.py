"""The validate stage: the real corpus and plain prose/code pass; HTML, binary, UTF-16/Latin-1, tiny,
empty, long-line, control-character, non-printable, Git LFS pointer, repeated-line, shredded and
wrong-alphabet corpora fail with messages naming the check, its observed value and threshold (the
character set is bounded above for a char vocabulary only); corpus.json and the Data Docs are
written either way, and no gx/ folder is scaffolded. Lines are the text's lines whatever the read
size: a line longer than a piece is one line of its full length (never held whole), documents and
files end lines, and every statistic is that of the whole text."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from pipeline import artifacts
from pipeline.params import validate
from pipeline.gates.corpus_suite import CorpusValidationError
from pipeline.stages.validate import main

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare.txt"


def run_stage(tmp_path: Path, monkeypatch, corpus: bytes, tokenizer: str = "char",
              **thresholds) -> tuple[dict, str | None]:
    """Validate `corpus` in a fresh project dir for a `tokenizer` vocabulary; return corpus.json and
    the error message (None if it passed)."""
    monkeypatch.chdir(tmp_path)
    artifacts.raw_dir("t").mkdir(parents=True, exist_ok=True)
    (artifacts.raw_dir("t") / "t.txt").write_bytes(corpus)
    artifacts.raw_record("t").unlink(missing_ok=True)
    params = validate({"data": {"name": "t", "url": "file:///x", "sha256": "0" * 64}, "validate": thresholds,
                       "tokenizer": {"kind": tokenizer}})
    try:
        main(params)
        error = None
    except CorpusValidationError as err:
        error = str(err)
    assert (tmp_path / "reports/validation/corpus/docs/index.html").exists()  # written on failure too
    assert not (tmp_path / "gx").exists()
    return json.loads(artifacts.validation_report("corpus").read_text()), error


def failed_checks(report: dict) -> list[str]:
    return [e["name"] for e in report["expectations"] if not e["passed"]]


def prose_and_code(n_paragraphs: int = 150) -> str:
    """English-ish prose (some of it one paragraph per line, CRLF, curly quotes) and Python code."""
    rng = random.Random(0)
    words = ("the of and a to in is it that was for on are with as his they be at one have this from "
             "or had by word but what some we can out other were all there when up use your how said "
             "café naïve — “quoted” don’t").split()
    parts = []
    for i in range(n_paragraphs):
        sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 15))).capitalize() + "."
                     for _ in range(rng.randint(2, 6))]
        parts.append(" ".join(sentences) + ("\r\n" if i % 7 == 0 else "\n"))
        parts.append(
            f"def f{i}(xs: dict[str, list[int]], a: int = {i}) -> bool:\n"
            f"\t\"\"\"Return whether a < b and b > c for item {i}.\"\"\"\n"
            f"    if a < len(xs) and xs.get('k', [0])[0] >= a:  # x<a && a>y in C\n"
            f"        return [v for v in xs if v != '<none>'] == []\n"
            f"    return a <= {i} or a >> 2 > 1\n\n"
        )
    return "".join(parts)


def html_page() -> str:
    rows = "".join(f'    <div class="row" id="r{i}"><p>Paragraph {i} of some text.</p></div>\n' for i in range(300))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head><title>A page</title></head>\n<body>\n"
            f"{rows}</body>\n</html>\n")


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason=f"{SHAKESPEARE} not present")
def test_tiny_shakespeare_passes_with_default_thresholds(tmp_path, monkeypatch):
    report, error = run_stage(tmp_path, monkeypatch, SHAKESPEARE.read_bytes())
    assert error is None
    assert report["success"] and failed_checks(report) == []
    assert [e["name"] for e in report["expectations"]] == [
        "utf8", "not_lfs_pointer", "not_binary", "control", "printable", "markup", "min_bytes", "min_lines",
        "line_length", "mean_line_length", "duplicates", "distinct_chars", "documents"]
    stats = report["stats"]
    assert stats["bytes"] == 1_115_394 and stats["lines"] == 40_000 and stats["distinct_characters"] == 65
    assert 0.05 < stats["duplicate_fraction"] < 0.1  # speaker names and refrains, not copies
    index = (tmp_path / "reports/validation/corpus/docs/index.html").read_text(encoding="utf-8")
    assert "corpus_files" in index and "corpus_stats" in index  # both validation results are listed
    assert list((tmp_path / "reports/validation/corpus/docs/validations").rglob("*.html"))


def test_english_prose_and_python_code_pass(tmp_path, monkeypatch):
    report, error = run_stage(tmp_path, monkeypatch, prose_and_code().encode("utf-8"))
    assert error is None, error
    assert report["stats"]["first_invalid_utf8_byte"] is None


def test_html_page_fails_naming_markup(tmp_path, monkeypatch):
    report, error = run_stage(tmp_path, monkeypatch, html_page().encode("utf-8"))
    assert failed_checks(report) == ["markup"]
    assert "markup: 100.00% of lines look like HTML/XML tags" in error
    assert "validate.max_markup_line_fraction=0.01" in error
    assert "line 1, column 1: '<!DOCTYPE html>'" in error
    # the threshold is honoured: allow markup on every line and a re-run over the same page passes
    report, error = run_stage(tmp_path, monkeypatch, html_page().encode("utf-8"), max_markup_line_fraction=1.0)
    assert error is None and report["success"]


def test_binary_file_fails_naming_nul_bytes(tmp_path, monkeypatch):
    rng = random.Random(0)
    corpus = bytes(rng.randrange(256) for _ in range(20_000))
    report, error = run_stage(tmp_path, monkeypatch, corpus)
    assert {"utf8", "not_binary", "control"} <= set(failed_checks(report))
    count, first = corpus.count(b"\0"), corpus.find(b"\0")
    assert f"not_binary: {count:,} NUL bytes (none allowed)" in error
    assert f"first at byte {first:,}, line " in error


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_non_utf8_file_fails_naming_utf8_and_offset(tmp_path, monkeypatch, encoding):
    text = prose_and_code(40).replace("café", "cafe").replace("naïve", "naive")  # ASCII ...
    text = text.encode("ascii", errors="ignore").decode() + "Un café au lait.\n"  # ... then one é
    corpus = text.encode(encoding)
    offset = 0 if encoding == "utf-16" else corpus.index(b"\xe9")  # utf-16: the byte-order mark
    report, error = run_stage(tmp_path, monkeypatch, corpus)
    assert "utf8" in failed_checks(report)
    assert report["expectations"][0]["observed"] == offset
    assert f"utf8: not valid UTF-8: first invalid byte at offset {offset:,}" in error
    if encoding == "latin-1":
        assert failed_checks(report) == ["utf8"]  # the rest is checked on the text all the same
        assert "b'\\xe9 au lai'" in error


def test_too_small_file_fails_naming_min_bytes(tmp_path, monkeypatch):
    corpus = b"To be, or not to be.\n" * 5
    report, error = run_stage(tmp_path, monkeypatch, corpus, min_lines=1, max_duplicate_fraction=1.0)
    assert failed_checks(report) == ["min_bytes"]
    assert "min_bytes: the corpus is 105 bytes, fewer than validate.min_bytes=10,000" in error


def test_overly_long_lines_fail_naming_line_length(tmp_path, monkeypatch):
    corpus = ("word " * 4_000 + "\n") * 5 + "a short line\n" * 5  # five 20,000-character lines
    report, error = run_stage(tmp_path, monkeypatch, corpus.encode(), min_lines=1, max_duplicate_fraction=1.0)
    assert failed_checks(report) == ["line_length"]
    assert report["expectations"][8]["observed"] == 0.5
    assert "line_length: 50.00% of lines are longer than validate.max_line_length=5,000" in error
    assert "validate.max_long_line_fraction=0.001" in error
    assert "line 1, 20,000 characters" in error


def test_control_characters_fail_with_an_example_line(tmp_path, monkeypatch):
    corpus = "".join(f"plain line {i} of text\n" for i in range(1_000)) + "colour \x1b[31mred\x1b[0m here\n"
    report, error = run_stage(tmp_path, monkeypatch, corpus.encode())
    assert failed_checks(report) == ["control"]
    assert "control: 0.10% of lines hold control characters" in error
    assert "line 1001, column 8: 'colour \\x1b[31mred" in error


LFS_POINTER = (b"version https://git-lfs.github.com/spec/v1\n"
               b"oid sha256:86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed\nsize 1115394\n")


def test_git_lfs_pointer_fails_naming_the_pointer(tmp_path, monkeypatch):
    report, error = run_stage(tmp_path, monkeypatch, LFS_POINTER)
    assert failed_checks(report)[0] == "not_lfs_pointer"
    assert ("not_lfs_pointer: the file is a Git LFS pointer (oid sha256:86c4e6aa9db7c042ec79f339dcb96d42b00"
            "75e16b8fc2e86bf0ca57e2dc565ed, size 1,115,394 bytes)") in error
    # a text that merely mentions LFS is not a pointer
    report, _ = run_stage(tmp_path, monkeypatch, LFS_POINTER + prose_and_code().encode())
    assert "not_lfs_pointer" not in failed_checks(report)


def test_empty_file_fails_naming_size_and_lines(tmp_path, monkeypatch):
    report, error = run_stage(tmp_path, monkeypatch, b"")
    assert failed_checks(report) == ["min_bytes", "min_lines", "mean_line_length", "distinct_chars"]
    assert "min_bytes: the corpus is 0 bytes, fewer than validate.min_bytes=10,000" in error
    assert "min_lines: the corpus has 0 lines, fewer than validate.min_lines=100" in error


def test_one_line_repeated_fails_naming_duplicates(tmp_path, monkeypatch):
    line = "All work and no play makes Jack a dull boy.\n"
    report, error = run_stage(tmp_path, monkeypatch, (line * 1_000).encode())
    assert failed_checks(report) == ["duplicates"]
    assert "duplicates: 99.90% of the text repeats earlier lines, more than validate.max_duplicate_fraction=0.5" in error
    assert "most repeated: 'All work and no play makes Jack a dull boy.' ×1,000" in error


def test_a_corpus_appended_to_itself_fails_duplicates(tmp_path, monkeypatch):
    once, _ = run_stage(tmp_path, monkeypatch, prose_and_code().encode())
    twice, error = run_stage(tmp_path, monkeypatch, (prose_and_code() * 2).encode())
    assert once["success"] and failed_checks(twice) == ["duplicates"]
    assert twice["stats"]["duplicate_fraction"] > 0.5 > once["stats"]["duplicate_fraction"]


def test_private_use_and_replacement_characters_fail_printable(tmp_path, monkeypatch):
    corpus = "".join(f"line {i} shows an icon \ue000 and a lost byte \ufffd here\n" for i in range(300))
    report, error = run_stage(tmp_path, monkeypatch, corpus.encode())
    assert failed_checks(report) == ["printable"]
    observed = 1 - 600 / len(corpus)
    assert f"printable: only {observed:.2%} of characters are printable or whitespace" in error
    assert "validate.min_printable_fraction=0.999" in error
    assert "'\\ue000' ×300" in error and "'�' ×300" in error


def test_text_shredded_one_character_per_line_fails_mean_line_length(tmp_path, monkeypatch):
    corpus = "\n".join(prose_and_code(20).replace("\n", " ")) + "\n"
    report, error = run_stage(tmp_path, monkeypatch, corpus.encode(), max_duplicate_fraction=1.0)
    assert failed_checks(report) == ["mean_line_length"]
    assert "mean_line_length: lines hold 1 characters on average" in error
    assert "validate.min_mean_line_length=5" in error


def test_distinct_characters_outside_bounds_fail(tmp_path, monkeypatch):
    rng = random.Random(0)
    ideographs = "".join("".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(40)) + "\n" for _ in range(300))
    report, error = run_stage(tmp_path, monkeypatch, ideographs.encode())
    assert failed_checks(report) == ["distinct_chars"]
    count = len(set(ideographs))
    assert f"distinct_chars: {count:,} distinct characters, outside validate.min_distinct_chars=10 to " \
           "validate.max_distinct_chars=1,000 (tokenizer.kind=char): too many for a vocabulary of characters; " \
           "use tokenizer.kind=bpe (or raise validate.max_distinct_chars)" in error
    assert error.endswith("; if this is text from the web, see presets/web.yaml")  # not code
    binary_numbers = "".join(f"{i:b}\n" for i in range(2_000))
    report, error = run_stage(tmp_path, monkeypatch, binary_numbers.encode())
    assert failed_checks(report) == ["distinct_chars"]
    assert "distinct_chars: 3 distinct characters" in error and "'\\n'" in error


@pytest.mark.parametrize("tokenizer", ["bpe", "word", "tiktoken:gpt2"])
def test_the_character_set_bounds_a_char_vocabulary_only(tmp_path, monkeypatch, tokenizer):
    """bpe, word and tiktoken make no vocabulary of characters: 2,000+ distinct ones pass, the
    report says why; too few still fail (not text in a language), naming no preset."""
    rng = random.Random(0)
    ideographs = "".join("".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(40)) + "\n" for _ in range(300))
    report, error = run_stage(tmp_path, monkeypatch, ideographs.encode(), tokenizer)
    assert error is None and report["tokenizer_kind"] == tokenizer
    (check,) = [e for e in report["expectations"] if e["name"] == "distinct_chars"]
    assert check["observed"] == len(set(ideographs)) > 1_000 and check["threshold"] == f"≥ 10 (no maximum for {tokenizer})"
    assert f"tokenizer.kind={tokenizer} does not make a vocabulary of them" in check["description"]
    report, error = run_stage(tmp_path, monkeypatch, "".join(f"{i:b}\n" for i in range(2_000)).encode(), tokenizer)
    assert failed_checks(report) == ["distinct_chars"]
    assert "distinct_chars: 3 distinct characters, fewer than validate.min_distinct_chars=10: not text in a " \
           "language (e.g." in error and "presets/" not in error


def reference_line_stats(documents: list[str], max_line_length: int = 5000) -> dict:
    """The line statistics of the suite computed on each document's whole text at once: a document
    ends its last line, a final newline ends a line and starts none."""
    from pipeline.gates.corpus_suite import CONTROL, MARKUP

    lines = [line for doc in documents if doc for line in doc.removesuffix("\n").split("\n")]
    seen, repeated, total = set(), 0, 0
    for line in (line.strip() for line in lines):
        total += len(line)
        if line in seen:
            repeated += len(line)
        elif line:
            seen.add(line)
    n = len(lines)
    return {"lines": n, "longest_line": max(map(len, lines)),
            "mean_line_length": round(sum(map(len, lines)) / n, 1),
            "long_line_fraction": round(sum(len(line) > max_line_length for line in lines) / n, 6),
            "duplicate_fraction": round(repeated / total, 6),
            "control_line_fraction": round(sum(bool(re.search(CONTROL, line)) for line in lines) / n, 6),
            "markup_line_fraction": round(sum(bool(re.search(MARKUP, line)) for line in lines) / n, 6)}


def long_line(chars: int, seed: int = 0) -> str:
    """`chars` characters of words and no newline (its pieces of a megabyte are not alike)."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(1000)] + ["café", "—", "🙂"]
    parts, size = [], 0
    while size < chars:
        parts.append(rng.choice(words) + " ")
        size += len(parts[-1])
    return "".join(parts)[:chars]


def test_a_line_longer_than_a_piece_is_one_line_with_its_full_length(tmp_path, monkeypatch):
    """A 3,000,000-character line (three pieces of the reader) counts once, with its length, and its
    repeat (at the end of the file, without a final newline) counts as a duplicate of all of it."""
    big = long_line(3_000_000)
    text = prose_and_code(60) + big + "\n" + prose_and_code(30) + "  " + big
    report, error = run_stage(tmp_path, monkeypatch, text.encode(), max_duplicate_fraction=1.0)
    expected = reference_line_stats([text])
    assert {key: report["stats"][key] for key in expected} == expected
    assert report["stats"]["longest_line"] == 3_000_002 and failed_checks(report) == ["line_length"]
    first = text[:text.index(big)].count("\n") + 1
    assert f"first: line {first}, 3,000,000 characters: {big[:40] + '…'!r}" in error


MIXED_TEXT = (
    "plain short line\n"
    "a CRLF line\r\n" * 3
    + "\n\n"
    + "naïve café — 🙂 déjà vu, multi-byte characters cut across read blocks\n" * 4
    + "  " + long_line(20_000, 1) + " \t\n"   # over validate.max_line_length
    + long_line(20_000, 1) + "\n"              # the same, stripped: a duplicate
    + "colour \x1b[31mred\x1b[0m here\n"
    + '<div class="row">a tag</div>\n'
    + "<!doctypes " * 15 + "are no tag, though cut after their e\n"
    + "this line ends in a tag </p>\n"
    + long_line(30_000, 2) + ' <span class="x">tag</span> \x07 ' + long_line(40_000, 3) + "\n"  # past KEEP
    + "".join(f"line {i % 40} of the middle, repeating\n" for i in range(200))
    + "the end, without a final newline"
)
JSONL_DOCUMENTS = ["one\ntwo", "three\n", "", "four\r\n\r\n", long_line(70_000, 4), "five ends a line\n"]
LAST_TEXT = "a document of its own\n" * 3 + "ends without a newline"


def _scan_mixed(tmp_path):
    from folio.corpus import CorpusFile
    from pipeline.gates import corpus_suite

    (tmp_path / "a.txt").write_bytes(MIXED_TEXT.encode())
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in JSONL_DOCUMENTS))
    (tmp_path / "c.txt").write_text(LAST_TEXT)
    files = [CorpusFile(tmp_path / "a.txt", "txt"), CorpusFile(tmp_path / "b.jsonl", "jsonl"),
             CorpusFile(tmp_path / "c.txt", "txt")]
    p = validate({"data": {"name": "t", "url": "file:///x", "sha256": ""}}).validate_
    result = corpus_suite.scan(p, files, "text", sum(f.path.stat().st_size for f in files))
    return result.stats(), result.files, result.examples, result.duplicates.most_repeated()


@pytest.mark.parametrize("piece_chars, read_bytes, keep_line_chars", [(7, 5, None), (7, 5, 16), (1000, 333, 50)])
def test_line_statistics_do_not_depend_on_the_piece_size(tmp_path, monkeypatch, piece_chars, read_bytes,
                                                        keep_line_chars):
    """Read in pieces of 7 characters (blocks of 5 bytes: characters cut in two), every statistic,
    every file row and every example is what the default pieces give, and the line statistics are
    those of the whole texts; keep_line_chars small streams nearly every line (never kept whole)."""
    from folio import corpus
    from pipeline.gates import corpus_suite

    default = _scan_mixed(tmp_path)
    expected = reference_line_stats([MIXED_TEXT, *JSONL_DOCUMENTS, LAST_TEXT])
    assert {key: default[0][key] for key in expected} == expected
    monkeypatch.setattr(corpus, "PIECE_CHARS", piece_chars)
    monkeypatch.setattr(corpus, "READ_BYTES", read_bytes)
    if keep_line_chars:
        monkeypatch.setattr(corpus_suite, "KEEP_LINE_CHARS", keep_line_chars)
    small = _scan_mixed(tmp_path)
    assert small[0] == default[0]
    assert small[1:] == default[1:]


def test_a_line_of_any_length_is_measured_without_being_held(tmp_path, monkeypatch):
    """One line of 8,000,000 characters read in pieces of 16 Ki characters: the scan allocates
    little more than its table of code points, whatever the line's length."""
    import tracemalloc

    from folio import corpus
    from folio.corpus import CorpusFile
    from pipeline.gates import corpus_suite

    monkeypatch.setattr(corpus, "PIECE_CHARS", 1 << 14)
    monkeypatch.setattr(corpus, "READ_BYTES", 1 << 14)
    path = tmp_path / "one.txt"
    path.write_text("word " * 1_600_000)
    p = validate({"data": {"name": "t", "url": "file:///x", "sha256": ""}}).validate_
    tracemalloc.start()
    try:
        result = corpus_suite.scan(p, [CorpusFile(path, "txt")], "text", path.stat().st_size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.stats()["lines"] == 1 and result.stats()["longest_line"] == 8_000_000
    assert peak < corpus_suite.CODE_POINTS * 8 + 2 * 10**6, f"{peak:,} bytes"
