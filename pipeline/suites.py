"""Fixed yardsticks (evaluate.suites): named held-out texts under data/suites/ that every model is
scored on besides its own val split, so versions trained on other corpora, splits or tokenizers
compare on the same text.

A suite's url names one file, a directory (every file of a known format inside, recursively; hidden
files and files of other formats, a README, are left out) or a glob, below data/suites/, read as
data.url is: .txt (one document), .jsonl (a document per record, its `text_field`), .parquet, each
maybe .gz or .zst, through the corpus reader (folio.corpus). `load` gives its documents and two
digests: `sha256`, of its files, computed as the corpus manifest's is (one file's sha256, else the
sha256 of the sorted `path sha256` lines, paths below the directory or the glob's fixed part), which
`sha256` in params pins; and `text_digest` (folio.evaluate.text_digest), of the text itself, which
names what the scores are of. `score` is folio.evaluate.score_text plus the files' digest: the
evaluate stage and `folio promote`'s rescoring both call it, so a suite is measured one way.

`contamination` finds how much of each suite the model may have trained on: the share of its lines
that occur verbatim as a line of the train split, in one streaming pass over the train split
holding only the suites' lines in memory. Lines are compared stripped, and only lines of at least
MIN_LINE_CHARS characters count (see there).

Bad input is one line naming the suite and what to do (SuiteError): a path that is not there, a
suite with no text, files whose digest is not the pinned one, an unreadable file.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from folio import corpus as corpus_files
from folio.corpus import CorpusError, CorpusFile
from folio.evaluate import score_text, text_digest
from folio.splits import BOUNDARY
from pipeline.artifacts import corpus
from pipeline.errors import StageError
from pipeline.params import SuiteParams

# Shorter lines are left out of the contamination count: blank lines, speaker names ("ROMEO:"),
# "Enter GLOUCESTER", braces, "return None" recur in any text of a kind, so finding them in train
# says nothing about the suite having leaked into it; a line of 20 characters (four or five words)
# found verbatim in train rarely is chance.
MIN_LINE_CHARS = 20
GLOB_CHARS = "*?["


class SuiteError(StageError, ValueError):
    """A suite that cannot be scored as params name it: one line naming it and what to do."""


@dataclass(frozen=True)
class SuiteText:
    name: str
    documents: list[str]  # non-empty, in file order
    sha256: str  # of its files (pinnable: evaluate.suites[].sha256)
    text_digest: str  # of its text (folio.evaluate.text_digest): what its scores are of


def files(suite: SuiteParams) -> tuple[Path, list[Path]]:
    """(base, the suite's files in sorted order): its file, its directory's files of a known
    format, or its glob's matches; base is what the manifest paths are relative to."""
    path = Path(suite.url)  # relative to the project root, under data/suites/ (SuiteParams checks)
    if any(c in suite.url for c in GLOB_CHARS):
        fixed = Path(str(path).split("*")[0].split("?")[0].split("[")[0])
        base = fixed if fixed.is_dir() else fixed.parent
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not found:
            raise SuiteError(f"suite {suite.name!r}: {suite.url} matches no file (looked for in {Path.cwd()}); "
                             "put its files there or fix its url (`**` matches any depth)")
        unknown = [p for p in found if corpus_files.file_format(p, suite.format) is None]
        if unknown:
            raise SuiteError(f"suite {suite.name!r}: {unknown[0]} is of no known format (.txt, .jsonl or "
                             ".parquet, maybe .gz or .zst); narrow its glob or set its format")
        return base, found
    if not path.exists():
        raise SuiteError(f"suite {suite.name!r}: {suite.url} does not exist (looked for in {Path.cwd()}); "
                         "put its files there or fix its url in evaluate.suites")
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts)
                       and corpus_files.file_format(p, suite.format) is not None)
        if not found:
            raise SuiteError(f"suite {suite.name!r}: the directory {suite.url} holds no .txt, .jsonl or "
                             ".parquet file (maybe .gz or .zst); put its text there or set its format")
        return path, found
    return path.parent, [path]


def load(suite: SuiteParams) -> SuiteText:
    """The suite's documents and digests; its files' digest checked against `suite.sha256` when set."""
    base, paths = files(suite)
    try:
        entries = [corpus.describe(p, p.relative_to(base).as_posix(), suite.format) for p in paths]
    except StageError as err:  # an unreadable file, named
        raise SuiteError(f"suite {suite.name!r}: {err}") from None
    sha256 = corpus.digest(entries)
    if suite.sha256 and sha256 != suite.sha256:
        raise SuiteError(f"suite {suite.name!r}: its files ({suite.url}) have sha256 {sha256}, but "
                         f"evaluate.suites pins {suite.sha256}; restore the files, or if they changed on "
                         f"purpose set its sha256 to {sha256} (scores on the old text no longer compare)")
    documents, current = [], []
    for path, entry in zip(paths, entries):
        file = CorpusFile(path, entry["format"], entry["compression"])
        try:
            for text, ends in corpus_files.pieces(file, suite.text_field):
                current.append(text)
                if ends:
                    documents.append("".join(current))
                    current = []
        except CorpusError as err:
            raise SuiteError(f"suite {suite.name!r}: {err}") from None
    documents = [d for d in documents if d]
    if not any(d.strip() for d in documents):
        raise SuiteError(f"suite {suite.name!r}: {suite.url} holds no text; put the suite's text there "
                         "or remove it from evaluate.suites")
    return SuiteText(suite.name, documents, sha256, text_digest(documents))


def score(model, tokenizer, text: SuiteText, batch_size: int) -> dict:
    """The model's score on the suite (folio.evaluate.score_text: loss, bits_per_token,
    bits_per_byte, perplexity, tokens, bytes, text_digest) and the digest of its files."""
    try:
        result = score_text(model, tokenizer, text.documents, batch_size)
    except ValueError as err:  # too short, or text the tokenizer cannot encode (a char model's unseen character)
        raise SuiteError(f"suite {text.name!r} cannot be scored by this model: {err}") from None
    return {**result, "sha256": text.sha256}


def lines_of(documents: Iterable[str]) -> list[str]:
    """The lines contamination counts: stripped, at least MIN_LINE_CHARS characters, each occurrence."""
    return [s for d in documents for line in d.splitlines() if len(s := line.strip()) >= MIN_LINE_CHARS]


def contamination(texts: list[SuiteText], pieces: Iterable[tuple[str, object]]) -> dict[str, dict]:
    """{suite: {lines, in_train, share}}: how many of each suite's counted lines (lines_of) there
    are, how many occur verbatim (stripped) as a line of the train split, and their share.
    `pieces`: (split, text | BOUNDARY), pipeline.artifacts.corpus.split_pieces — one pass, keeping
    only the suites' lines (and a line cut between two pieces) in memory."""
    counted = {t.name: lines_of(t.documents) for t in texts}
    wanted = {line for lines in counted.values() for line in lines}
    found: set[str] = set()
    carry = ""  # the train line cut at the end of the previous piece
    for split, text in pieces:
        if split != "train" or text is BOUNDARY:
            found |= wanted.intersection((carry.strip(),))
            carry = ""
            continue
        lines = (carry + text).split("\n")
        carry = lines.pop()
        found |= wanted.intersection(line.strip() for line in lines)
    found |= wanted.intersection((carry.strip(),))
    out = {}
    for name, lines in counted.items():
        in_train = sum(line in found for line in lines)
        out[name] = {"lines": len(lines), "in_train": in_train, "share": in_train / len(lines) if lines else 0.0}
    return out


def train_contamination(texts: list[SuiteText], data) -> dict[str, dict]:
    """contamination() against the train split of the corpus `data` (DataParams) names."""
    return contamination(texts, corpus.split_pieces(data)) if texts else {}
