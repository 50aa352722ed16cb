"""data/raw/<name>/, the corpus files, and data/raw/<name>.json, their manifest.

The manifest lists each file (path below data/raw/<name>/, format, bytes, sha256, documents) and
the corpus digest: the file's sha256 for a single file, else the sha256 of the sorted
`path sha256` lines. Stages read the corpus as documents through `pieces()`, in manifest order,
and cut it into splits through `split_plan()`, so every stage sees the same documents and splits.

A mixture (data.sources) keeps each source's files in data/raw/<name>/<source>/; the manifest lists
them all (each entry naming its `source`) and, under "sources", each source's name, url, weight,
digest (of its own files, as if it were a corpus of its own), bytes and documents. `parts()` gives
each source's own manifest: the gate judges, and the splits cut, each source on its own.
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


def source_records(sources, manifests: list[dict]) -> list[dict]:
    """The manifest's "sources": each source (SourceParams) with its own manifest's facts."""
    return [{"name": s.name, "url": s.url, "weight": s.weight, "sha256": m["sha256"], "pinned": bool(s.sha256),
             "bytes": m["bytes"], "documents": m["documents"], "files": len(m["files"]), "source": m["source"]}
            for s, m in zip(sources, manifests)]


def check_sources(data, manifest: dict, path) -> None:
    """A manifest of other sources than data.sources (or of none) is stale, named."""
    wanted = [(s.name, s.url, s.weight) for s in data.sources]
    have = [(s["name"], s["url"], s["weight"]) for s in manifest.get("sources", [])]
    if wanted != have:
        said = ", ".join(f"{n} ({u}, weight {w:g})" for n, u, w in have) or f"one source, {manifest.get('source')}"
        raise StageError(f"{path} was downloaded for {said}, not for data.sources as set now; run "
                         "`folio download` (or `dvc repro`) again")


def parts(manifest: dict) -> list[tuple[dict | None, dict]]:
    """(source, its own manifest) of each source of a mixture, in order; [(None, manifest)] for
    a corpus of one source."""
    if not manifest.get("sources"):
        return [(None, manifest)]
    return [(source, {**manifest, "sha256": source["sha256"], "bytes": source["bytes"],
                      "documents": source["documents"],
                      "files": [e for e in manifest["files"] if e.get("source") == source["name"]]})
            for source in manifest["sources"]]


def record(data) -> dict:
    """The manifest of the corpus `data` (DataParams): {"sha256", "bytes", "documents", "files",
    "source", "pinned"}, and "sources" for a mixture. Rebuilt from the files themselves when they
    were put in place by hand (one source only)."""
    path, directory = raw_record(data.name), raw_dir(data.name)
    if path.exists():
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if "files" not in manifest:  # written by a folio before corpora of several files
            raise StageError(f"{path} is not a manifest of this folio's format; run `folio download` "
                             "(or `dvc repro`) again")
        check_sources(data, manifest, path)
        return manifest
    if data.sources:
        require(path, "download")
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
    """How the corpus divides into train and val (data.split, data.val_fraction, data.seed): one
    streamed pass counts the bytes of the text, or of each document."""
    manifest = manifest or record(data)
    kind = splits.choose(data.split, manifest["documents"], data.val_fraction)
    if kind == "documents":
        if manifest["documents"] < 2:
            raise StageError(f"data.split=documents needs at least 2 documents; the corpus has "
                             f"{manifest['documents']}: use data.split=tail")
        return splits.document_plan(splits.document_sizes(pieces(data, manifest)), data.val_fraction, data.seed)
    return splits.tail_plan(splits.count_bytes(pieces(data, manifest)), data.val_fraction)


def split_plans(data, manifest: dict | None = None) -> list[splits.SplitPlan]:
    """The split of each source (one for a corpus of one source): each holds data.val_fraction of
    its own bytes."""
    manifest = manifest or record(data)
    return [split_plan(data, own) for _, own in parts(manifest)]


def sourced_split_pieces(data, manifest: dict | None = None, plans: list[splits.SplitPlan] | None = None):
    """(source index, split, text | splits.BOUNDARY) over the whole corpus, source by source; a
    source that follows another in a split starts with a BOUNDARY."""
    manifest = manifest or record(data)
    plans = plans or split_plans(data, manifest)
    started = set()
    for index, ((_, own), plan) in enumerate(zip(parts(manifest), plans)):
        first = set()
        try:
            for split, text in splits.split_stream(pieces(data, own), plan):
                if split not in first:
                    first.add(split)
                    if split in started and text is not splits.BOUNDARY:
                        yield index, split, splits.BOUNDARY
                    started.add(split)
                yield index, split, text
        except ValueError as err:  # more documents than the manifest counted
            raise StageError(f"{raw_dir(data.name)}: {err}; run `folio download` again") from None


def split_pieces(data, manifest: dict | None = None, plan: splits.SplitPlan | None = None):
    """(split, text | splits.BOUNDARY) over the whole corpus (with `plan`: a corpus of one source)."""
    for _, split, text in sourced_split_pieces(data, manifest, [plan] if plan else None):
        yield split, text


def split_documents(data, split: str, manifest: dict | None = None) -> Iterator[str]:
    """The documents of one split, whole, in stream order (as prepare encodes them, and
    folio.evaluate.TextDigest names them: a BOUNDARY starts the next one)."""
    current: list[str] = []
    for name, text in split_pieces(data, manifest):
        if name != split:
            continue
        if text is splits.BOUNDARY:
            if current:
                yield "".join(current)
            current = []
        else:
            current.append(text)
    if current:
        yield "".join(current)
