"""Stage download — params: data.name, data.url, data.format, data.sha256, data.sources — out:
data/raw/<name>/ (the corpus files) and data/raw/<name>.json (their manifest: path, format, bytes, sha256 and
documents of each file, the corpus digest, the source).

`data.url` names one file (an http(s) URL, a `file:///absolute/path` URL or a plain path, relative
to the project root), a local directory (every file of a known format inside, recursively, in sorted
order) or a glob (`corpus/**/*.jsonl.gz`; every match must be of a known format). One file is stored
as data/raw/<name>/<name><suffix>; several keep their paths below the directory (or the glob's fixed
part). A directory's files of no known format (a README, a LICENSE, an image) are not part of the
corpus but are named: one log line gives their count and the first few, and the manifest lists them
all under "skipped" (an empty list when there are none); hidden files and directories (names
starting with a dot: .git/, .DS_Store) are skipped without a word. With `data.sha256` set, a
corpus with any other digest fails the stage naming both; with it empty (a corpus of your own), the
digest is computed, logged and recorded, and the validate stage is the gate. With FOLIO_DATA_MIRROR
set (a directory or an http(s) base URL holding `<name>.txt`) the mirror is tried first for a
single-file corpus; the checksum is verified whichever source serves the file. A local data.url
that is not there (a missing file or folder, a glob matching nothing) fails at once in one line
naming it as written; a download that fails is one line naming each source tried.

The files are gathered beside data/raw/<name>/ and replace it only when all of them arrived.

With data.sources set (a mixture; params: data.sources) each source is fetched as above into
data/raw/<name>/<source>/, its digest checked against its own sha256 when set, and the manifest
lists every file (naming its source) and each source's name, url, weight, digest, bytes and
documents under "sources"; its digest covers all of them (data.url and data.sha256 are unused).
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path
from typing import NamedTuple

from folio.corpus import COMPRESSIONS, file_format
from folio.download import DownloadError, fetch, local_path
from pipeline import artifacts
from pipeline.artifacts import corpus
from pipeline.console import Progress, log
from pipeline.errors import StageError
from pipeline.params import Params

MIRROR_ENV = "FOLIO_DATA_MIRROR"
GLOB_CHARS = "*?["
KNOWN_FORMATS = ".txt, .jsonl or .parquet, maybe .gz or .zst"
NAMED_SKIPPED = 5  # files of no known format the log line names (the manifest lists all)


def sources(name: str, url: str) -> list[str]:
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return [url]
    return [f"{mirror.rstrip('/')}/{name}.txt", url]


def _hint(err: DownloadError, sha256: str, candidates: list[str]) -> str:
    if "sha256 mismatch" in str(err) and sha256:
        return ("check data.url; if the file changed on purpose, set data.sha256 to its new digest "
                "(or to \"\" to accept any file, with validate as the gate)")
    if all(local_path(c) is not None for c in candidates):
        return f"check data.url (and {MIRROR_ENV}, if set)"
    return f"check data.url (and {MIRROR_ENV}, if set), the network, or put the file at a local path"


def single_file_suffix(url: str, forced_format: str) -> str:
    """The stored file's suffix: the source's own when it names a known format (`.jsonl.gz`)."""
    base = Path(url.split("?", 1)[0].rstrip("/")).name
    kind = file_format(base, forced_format)
    if kind is None:
        return ".txt"
    compression = next((s for s, c in COMPRESSIONS.items() if c == kind[1]), "")
    return f".{kind[0]}{compression}"


class Listing(NamedTuple):
    base: Path
    files: list[Path]
    skipped: list[str] | None  # of a directory: its files of no known format, relative, sorted


def some(paths: list[str]) -> str:
    """The first NAMED_SKIPPED of `paths`, and how many more."""
    more = len(paths) - NAMED_SKIPPED
    return ", ".join(paths[:NAMED_SKIPPED]) + (f" and {more:,} more" if more > 0 else "")


def _relative(path: Path) -> str:
    """Where a relative data.url was looked for (the project root, where the stage runs)."""
    return "" if path.is_absolute() else f", looked for in {Path.cwd()}"


def local_files(url: str, forced_format: str) -> Listing | None:
    """The files when `url` names a local directory or glob; None for one file or an URL."""
    path = local_path(url)
    if path is None:
        return None
    if any(c in url for c in GLOB_CHARS):
        pattern = str(path)
        base = Path(pattern.split("*")[0].split("?")[0].split("[")[0])
        base = base if base.is_dir() else base.parent
        found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not found:
            raise StageError(f"data.url: {url}: the glob matches no file on this machine{_relative(path)}; "
                             "check the pattern (`**` matches any depth)")
        unknown = [p for p in found if file_format(p, forced_format) is None]
        if unknown:
            raise StageError(f"data.url={url}: {unknown[0]} is of no known format ({KNOWN_FORMATS}); "
                             "narrow the glob or set data.format")
        return Listing(base, found, None)
    if not path.exists() and not os.environ.get(MIRROR_ENV, "").strip():  # a mirror may serve it
        raise StageError(f"data.url: {url} does not exist (a file, folder or glob on this machine, or an "
                         f"http(s) URL){_relative(path)}; check the path")
    if path.is_dir():
        visible = sorted(p for p in path.rglob("*") if p.is_file()
                         and not any(part.startswith(".") for part in p.relative_to(path).parts))
        found = [p for p in visible if file_format(p, forced_format) is not None]
        skipped = [p.relative_to(path).as_posix() for p in visible if file_format(p, forced_format) is None]
        if not found:
            held = f"; it holds {len(skipped):,} of other formats ({some(skipped)})" if skipped else ""
            raise StageError(f"data.url={url}: the directory holds no .txt, .jsonl or .parquet file (maybe .gz "
                             f"or .zst){held}; check the path or set data.format")
        return Listing(path, found, skipped)
    return None


def gather_files(base: Path, found: list[Path], staging: Path, data) -> list[dict]:
    total = sum(p.stat().st_size for p in found)
    log(f"copying {len(found):,} files ({total / 1e6:,.1f} MB) from {base}")
    entries = []
    with Progress(f"download {data.name}", total=total, every=5.0) as bar:
        done = 0
        for path in found:
            relative = path.relative_to(base).as_posix()
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, staging / relative)
            entries.append(corpus.describe(staging / relative, relative, data.format))
            done += entries[-1]["bytes"]
            bar.update(done, total)
    return entries


def fetch_one(staging: Path, data) -> tuple[list[dict], str]:
    name = f"{data.name}{single_file_suffix(data.url, data.format)}"
    candidates = sources(data.name, data.url)
    log(f"downloading {data.name} from {' then '.join(candidates)}")
    with Progress(f"download {data.name}", total=None, every=5.0) as bar:
        try:
            got = fetch(candidates, staging / name, data.sha256,
                        progress=lambda done, total: bar.update(done, total), log=log)
        except DownloadError as err:
            raise StageError(f"{err}; {_hint(err, data.sha256, candidates)}") from None
    return [corpus.describe(staging / name, name, data.format)], got.source


def replace_dir(staging: Path, dest: Path) -> None:
    """Put the gathered files in place of the old ones (a DVC output: its cache keeps them)."""
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def already_there(data) -> bool:
    if not (data.sha256 and artifacts.raw_record(data.name).exists()):
        return False
    manifest = corpus.record(data)
    try:
        corpus.files(data, manifest)
    except StageError:
        return False
    return manifest["sha256"] == data.sha256 and manifest["source"] in (data.url, *sources(data.name, data.url))


def collect(data, staging: Path, record_path: Path) -> dict:
    """Gather the corpus `data` names (its name, url, format, sha256) into `staging`: its manifest."""
    listing = local_files(data.url, data.format)
    if listing:
        if listing.skipped:
            count = len(listing.skipped)
            log(f"skipped {count:,} file{'s' * (count != 1)} of no known format ({KNOWN_FORMATS}) in "
                f"{listing.base}: {some(listing.skipped)}; all are listed in {record_path}")
        entries, source = gather_files(listing.base, listing.files, staging, data), data.url
    else:
        entries, source = fetch_one(staging, data)
    manifest = corpus.make_manifest(entries, source, bool(data.sha256), listing.skipped if listing else None)
    if data.sha256 and manifest["sha256"] != data.sha256:
        mismatch = DownloadError(f"sha256 mismatch for {data.url}: expected {data.sha256}, got "
                                 f"{manifest['sha256']} (the manifest's digest over {len(entries):,} files)")
        raise StageError(f"{mismatch}; {_hint(mismatch, data.sha256, [data.url])}")
    return manifest


def collect_mixture(data, staging: Path, record_path: Path) -> dict:
    """Each of data.sources into staging/<source>/, checked on its own: the mixture's manifest."""
    entries, manifests = [], []
    for i, source in enumerate(data.sources):
        own = data.model_copy(update={"name": source.name, "url": source.url, "sha256": source.sha256})
        (staging / source.name).mkdir()
        try:
            manifest = collect(own, staging / source.name, record_path)
        except StageError as err:  # name the source's own keys, not data.url's
            message = str(err).replace("data.url", f"data.sources[{i}].url ({source.name})")
            raise StageError(message.replace("data.sha256", f"data.sources[{i}].sha256")) from None
        manifests.append(manifest)
        entries += [{**e, "path": f"{source.name}/{e['path']}", "source": source.name} for e in manifest["files"]]
    skipped = [f"{source.name}/{path}" for source, manifest in zip(data.sources, manifests)
               for path in manifest.get("skipped", [])]
    return {**corpus.make_manifest(entries, f"{len(manifests)} sources", all(s.sha256 for s in data.sources), skipped),
            "sources": corpus.source_records(data.sources, manifests)}


def main(params: Params) -> None:
    data = params.data
    dest = artifacts.raw_dir(data.name)
    if not data.sources and already_there(data):
        log(f"{dest} already present and verified")
        return
    staging = dest.with_name(f".{dest.name}.incoming")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if data.sources:
            manifest = collect_mixture(data, staging, artifacts.raw_record(data.name))
        else:
            manifest = collect(data, staging, artifacts.raw_record(data.name))
        replace_dir(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    corpus.write_record(data.name, manifest)
    entries, source = manifest["files"], manifest["source"]
    for s in manifest.get("sources", []):
        log(f"source {s['name']}: {s['bytes']:,} bytes, {s['documents']:,} documents from {s['source']}, "
            f"weight {s['weight']:g}, sha256 {s['sha256']}{' (verified)' if s['pinned'] else ''}")
    what = f"{len(entries):,} files, " if len(entries) > 1 else ""
    summary = f"{what}{manifest['bytes']:,} bytes, {manifest['documents']:,} documents from {source}"
    if data.sources:
        log(f"wrote {dest} ({summary}); the mixture's sha256 is {manifest['sha256']}")
    elif data.sha256:
        log(f"wrote {dest} ({summary}, sha256 verified)")
    else:
        log(f"wrote {dest} ({summary}); data.sha256 is empty, so nothing was verified: its sha256 is "
            f"{manifest['sha256']} (set data.sha256 to pin it; validate is the gate)")
