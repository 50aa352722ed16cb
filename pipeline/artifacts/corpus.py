"""data/raw/<name>/, the corpus files, and data/raw/<name>.json, their manifest.

The manifest lists each file (path below data/raw/<name>/, format, bytes, sha256, documents) and
the corpus digest: the file's sha256 for a single file, else the sha256 of the sorted
`path sha256` lines. Stages read the corpus as documents through `pieces()`, in manifest order,
and cut it into splits through `split_plan()`, so every stage sees the same documents and splits.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator

from folio import corpus as corpus_files, splits
from folio.corpus import CorpusError, CorpusFile
from folio.download import sha256_of
from folio.fileio import write_json
from pipeline.artifacts import raw_dir, raw_record, require, validation
from pipeline.errors import StageError


def describe(path: Path, relative: str, forced_format: str) -> dict:
    """One manifest entry: what the file is and its digest (documents counted, not parsed)."""
    kind = corpus_files.file_format(path, forced_format) or ("txt", None)
    file = CorpusFile(path, *kind)
    try:
        documents = corpus_files.count_documents(file)
    except CorpusError as err:
        raise StageError(str(err)) from None
    return {"path": relative, "format": kind[0], "compression": kind[1], "bytes": path.stat().st_size,
            "sha256": sha256_of(path), "documents": documents}


def digest(entries: list[dict]) -> str:
    if len(entries) == 1:
        return entries[0]["sha256"]
    lines = sorted(f"{e['path']} {e['sha256']}\n" for e in entries)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def make_manifest(entries: list[dict], source: str, pinned: bool, skipped: list[str] | None = None) -> dict:
    """`skipped`: of a directory corpus, its files of no known format (None: not a directory)."""
    manifest = {"sha256": digest(entries), "bytes": sum(e["bytes"] for e in entries),
                "documents": sum(e["documents"] for e in entries), "files": entries,
                "source": source, "pinned": pinned}
    return manifest if skipped is None else {**manifest, "skipped": skipped}


def write_record(name: str, record: dict) -> None:
    write_json(raw_record(name), record)


def record(data) -> dict:
    """The manifest of the corpus `data` (DataParams): {"sha256", "bytes", "documents", "files",
    "source", "pinned"}. Rebuilt from the files themselves when they were put in place by hand."""
    path, directory = raw_record(data.name), raw_dir(data.name)
    if path.exists():
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if "files" not in manifest:  # written by a folio before corpora of several files
            raise StageError(f"{path} is not a manifest of this folio's format; run `folio download` "
                             "(or `dvc repro`) again")
        return manifest
    require(directory, "download")
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise StageError(f"{directory} holds no corpus file; run `folio download` (or `dvc repro`) first")
    entries = [describe(p, p.relative_to(directory).as_posix(), data.format) for p in files]
    return make_manifest(entries, data.url, bool(data.sha256))


def require_validated(data, manifest: dict) -> None:
    """Refuse, in one line naming `folio validate`, a corpus that has not passed the corpus gate."""
    validation.require_passed("corpus", manifest["sha256"],
                              f"the corpus {raw_dir(data.name)} (sha256 {manifest['sha256'][:16]})")


def files(data, manifest: dict | None = None) -> list[CorpusFile]:
    """The corpus files in manifest order; a file missing or of another size than the manifest
    says fails here, naming it."""
    manifest = manifest or record(data)
    out = []
    for entry in manifest["files"]:
        path = raw_dir(data.name) / entry["path"]
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            raise StageError(f"{path} is missing or changed since download (the manifest "
                             f"{raw_record(data.name)} says {entry['bytes']:,} bytes); run `folio download`")
        out.append(CorpusFile(path, entry["format"], entry["compression"]))
    return out


def pieces(data, manifest: dict | None = None) -> Iterator[tuple[str, bool]]:
    """Every document of the corpus as (text, ends_document) pieces; an unreadable file stops the
    stage with one line naming it."""
    for file in files(data, manifest):
        try:
            yield from corpus_files.pieces(file, data.text_field)
        except CorpusError as err:
            raise StageError(str(err)) from None


def split_plan(data, manifest: dict | None = None) -> splits.SplitPlan:
    """How the corpus divides into train and val (data.split, data.val_fraction, data.seed)."""
    manifest = manifest or record(data)
    kind = splits.choose(data.split, manifest["documents"], data.val_fraction)
    if kind == "documents":
        if manifest["documents"] < 2:
            raise StageError(f"data.split=documents needs at least 2 documents; the corpus has "
                             f"{manifest['documents']}: use data.split=tail")
        return splits.document_plan(manifest["documents"], data.val_fraction, data.seed)
    return splits.tail_plan(splits.count_chars(pieces(data, manifest)), data.val_fraction)


def split_pieces(data, manifest: dict | None = None, plan: splits.SplitPlan | None = None):
    """(split, text | splits.BOUNDARY) over the whole corpus."""
    manifest = manifest or record(data)
    plan = plan or split_plan(data, manifest)
    try:
        yield from splits.split_stream(pieces(data, manifest), plan)
    except ValueError as err:  # more documents than the manifest counted
        raise StageError(f"{raw_dir(data.name)}: {err}; run `folio download` again") from None
