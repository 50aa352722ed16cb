"""Stage prepare — in: data/raw/<name>/, data/raw/<name>.json, data/tokenizer/ — params: data.split,
data.seed, data.val_fraction, data.text_field, data.sources, prepare.* — out: data/prepared/ (<split>-NNNNN.bin
shards of uint16 ids, uint32 for vocabularies over 65,536, and meta.json: tokens per shard, the
digests of the corpus, of each source file and of the tokenizer, counts, the split, and the digest of
the val text, folio.evaluate.TextDigest, which names what val's scores are of).

val holds data.val_fraction of the corpus's bytes (folio.splits): the tail of a single text, or
whole documents drawn with data.seed while they fit; meta.json records the largest document's
bytes, the bound within which a document split can hold its share (the token gate checks it).

Before any work it refuses a corpus that has not passed the corpus gate and a tokenizer built from
another corpus or split (data/tokenizer/source.json); a corpus that encodes to an empty split is
one line, not empty shards.

The corpus streams through in batches of about BATCH_CHARS characters; prepare.workers processes
encode them (the tokenizer's end-of-text token, or the text separator, between documents) and the
ids are written in stream order, so the shards are the same for any number of workers. At most two
batches per worker are in flight: memory stays bounded whatever the corpus size.

A mixture (params: data.sources) is split source by source, each holding data.val_fraction of its
own bytes, and encoded one source after the other, so each source's tokens are one range of each
split: meta.json's "mixture" lists each source's name, weight, digest and its [start, end) token
range in train and in val (the train stage hands them, with the weights, to the sampler).
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import time

import numpy as np

from folio.data import ShardWriter, token_dtype
from folio.evaluate import TextDigest
from folio.splits import BOUNDARY, SPLITS
from folio.tokenizers import document_separator, load_tokenizer
from pipeline import artifacts
from pipeline.artifacts import corpus, prepared, tokenizer as tokenizer_files
from pipeline.console import Progress, log
from pipeline.errors import StageError
from pipeline.params import Params

BATCH_CHARS = 4 << 20
INLINE_BYTES = 16 << 20  # smaller corpora are encoded in this process: starting workers costs more

_tokenizer = _separator = None


def _load_worker_tokenizer(directory: str) -> None:
    global _tokenizer, _separator
    _tokenizer, _separator = load_tokenizer(directory), None


def _document_separator() -> np.ndarray:
    global _separator
    if _separator is None:  # only a corpus of several documents needs one (char: "\n" must be known)
        _separator = np.array(document_separator(_tokenizer), dtype=np.int64)
    return _separator


def encode_batch(task: tuple[str, list, int]) -> tuple[str, np.ndarray, int, int, int]:
    """(split, ids, text chars, text bytes, source) of one batch of a source: texts, with BOUNDARY
    where a document starts."""
    split, segments, source = task
    parts, chars, size = [], 0, 0
    encode_array = getattr(_tokenizer, "encode_array", None)
    for segment in segments:
        if segment is BOUNDARY:
            parts.append(_document_separator())
            continue
        parts.append(encode_array(segment) if encode_array else np.array(_tokenizer.encode(segment), dtype=np.int64))
        chars += len(segment)
        size += len(segment.encode("utf-8"))
    ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return split, ids, chars, size, source


def batches(params: Params, manifest: dict, plans, val_digest: TextDigest):
    """(split, segments, source) of about BATCH_CHARS characters of one source, in stream order;
    the val text goes through `val_digest` on its way."""
    pending = {split: ([], 0) for split in SPLITS}
    current = 0
    for source, split, text in corpus.sourced_split_pieces(params.data, manifest, plans):
        if split == "val" and text is BOUNDARY:
            val_digest.next_document()
        elif split == "val":
            val_digest.add(text)
        if source != current:  # a batch holds one source's text
            for name, (segments, _) in pending.items():
                if segments:
                    yield name, segments, current
            pending, current = {name: ([], 0) for name in SPLITS}, source
        segments, size = pending[split]
        segments.append(text)
        size += 0 if text is BOUNDARY else len(text)
        if size >= BATCH_CHARS:
            yield split, segments, source
            segments, size = [], 0
        pending[split] = (segments, size)
    for split, (segments, _) in pending.items():
        if segments:
            yield split, segments, current


def encoded(params: Params, manifest: dict, plans, workers: int, val_digest: TextDigest):
    """encode_batch over every batch, results in order; `workers` processes, or inline."""
    if workers == 1:
        _load_worker_tokenizer(str(artifacts.TOKENIZER_DIR))
        yield from map(encode_batch, batches(params, manifest, plans, val_digest))
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers, _load_worker_tokenizer,
                                                  (str(artifacts.TOKENIZER_DIR),)) as pool:
        in_flight = collections.deque()
        for task in batches(params, manifest, plans, val_digest):
            in_flight.append(pool.apply_async(encode_batch, (task,)))
            if len(in_flight) >= 2 * workers:
                yield in_flight.popleft().get()
        while in_flight:
            yield in_flight.popleft().get()


def mixture_meta(manifest: dict, plans: list, per_source: list[dict]) -> dict:
    """meta.json's keys for a mixture: each source's token range in each split; the split is
    `documents` if any source's is, within the sum of their largest documents."""
    starts = {s: 0 for s in SPLITS}
    mixture = []
    for source, counts in zip(manifest["sources"], per_source):
        ranges = {s: [starts[s], starts[s] + counts[s]] for s in SPLITS}
        starts = {s: ranges[s][1] for s in SPLITS}
        mixture.append({"name": source["name"], "weight": source["weight"], "sha256": source["sha256"], **ranges})
    documents = [p for p in plans if p.kind == "documents"]
    split = {"split": "documents", "largest_document_bytes": sum(p.largest_document_bytes for p in documents)}
    return {"mixture": mixture, **(split if documents else {"split": "tail"})}


def check_sources_split(mixture: list[dict]) -> None:
    """A source that gives a split no token is one line, naming it."""
    for source in mixture:
        for split in SPLITS:
            if source[split][1] == source[split][0]:
                raise StageError(f"source {source['name']} encodes to no {split} token; give it more text "
                                 "(or check data.text_field), or leave it out of data.sources")


def main(params: Params) -> None:
    manifest = corpus.record(params.data)
    corpus.require_validated(params.data, manifest)
    tokenizer = tokenizer_files.load()
    tokenizer_files.check_source(params.data, manifest["sha256"])
    dtype = token_dtype(tokenizer.vocab_size)
    plans = corpus.split_plans(params.data, manifest)
    plan = plans[0]
    workers = 1 if manifest["bytes"] < INLINE_BYTES else (params.prepare.workers or os.cpu_count() or 1)
    writers = {s: ShardWriter(artifacts.PREPARED_DIR, s, dtype, params.prepare.shard_tokens) for s in SPLITS}
    counts = {f"{s}_{k}": 0 for s in SPLITS for k in ("tokens", "chars", "bytes")}
    per_source = [{s: 0 for s in SPLITS} for _ in plans]  # tokens of each source in each split
    val_digest = TextDigest()
    started = time.perf_counter()
    for stale in artifacts.PREPARED_DIR.glob("*.bin"):  # shards of an earlier run (a DVC output)
        stale.unlink()
    try:
        with Progress("prepare", total=manifest["bytes"], every=10.0) as bar:
            for split, ids, chars, size, source in encoded(params, manifest, plans, workers, val_digest):
                writers[split].write(ids)
                per_source[source][split] += len(ids)
                counts[f"{split}_tokens"] += len(ids)
                counts[f"{split}_chars"] += chars
                counts[f"{split}_bytes"] += size
                done = counts["train_bytes"] + counts["val_bytes"]
                bar.update(done, info=f"{done / 1e6 / (time.perf_counter() - started):.1f} MB/s")
        if not counts["train_tokens"] or not counts["val_tokens"]:
            raise StageError(f"the corpus {artifacts.raw_dir(params.data.name)} encodes to "
                             f"{counts['train_tokens']:,} train and {counts['val_tokens']:,} val tokens; "
                             "a split with none cannot train or score a model: use a corpus with more text "
                             "(or check data.text_field)")
        shards = {s: writers[s].close() for s in SPLITS}
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    seconds = time.perf_counter() - started
    total_bytes = counts["train_bytes"] + counts["val_bytes"]
    meta = {"tokenizer_kind": tokenizer.kind, "tokenizer_digest": tokenizer.digest,
            "vocab_size": tokenizer.vocab_size, "dtype": dtype.name, "val_fraction": params.data.val_fraction,
            "split": plan.kind, "corpus_sha256": manifest["sha256"], "shards": shards, **counts,
            "val_text_digest": val_digest.hexdigest(),  # what val's scores are of (folio.evaluate.TextDigest)
            "sources": [{"path": f["path"], "sha256": f["sha256"]} for f in manifest["files"]],
            "bytes_per_token": total_bytes / max(1, counts["train_tokens"] + counts["val_tokens"])}
    if plan.kind == "documents":  # a tail split's meta.json is as it was: a run's fingerprint holds its digest
        meta["largest_document_bytes"] = plan.largest_document_bytes
    if manifest.get("sources"):
        meta |= mixture_meta(manifest, plans, per_source)
        check_sources_split(meta["mixture"])
    prepared.write_meta(meta)
    log(f"train {meta['train_tokens']:,} tokens, val {meta['val_tokens']:,} tokens in "
        f"{sum(map(len, shards.values()))} shards ({meta['bytes_per_token']:.2f} bytes/token, {dtype.name}, "
        f"{meta['split']} split, val {meta['val_bytes'] / max(total_bytes, 1):.2%} of the bytes; encoded in "
        f"{seconds:.2f}s, {total_bytes / 1e6 / max(seconds, 1e-9):.1f} MB/s with {workers} process(es)) "
        f"-> {artifacts.PREPARED_DIR}")
