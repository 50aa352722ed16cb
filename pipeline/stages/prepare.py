"""Stage prepare — in: data/raw/<name>/, data/raw/<name>.json, data/tokenizer/ — params: data.split,
data.seed, data.val_fraction, data.text_field, prepare.* — out: data/prepared/ (<split>-NNNNN.bin
shards of uint16 ids, uint32 for vocabularies over 65,536, and meta.json: tokens per shard, the
digests of the corpus, of each source file and of the tokenizer, counts).

Before any work it refuses a corpus that has not passed the corpus gate and a tokenizer built from
another corpus or split (data/tokenizer/source.json); a corpus that encodes to an empty split is
one line, not empty shards.

The corpus streams through in batches of about BATCH_CHARS characters; prepare.workers processes
encode them (the tokenizer's end-of-text token, or the text separator, between documents) and the
ids are written in stream order, so the shards are the same for any number of workers. At most two
batches per worker are in flight: memory stays bounded whatever the corpus size.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import time

import numpy as np

from folio.data import ShardWriter, token_dtype
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


def encode_batch(task: tuple[str, list]) -> tuple[str, np.ndarray, int, int]:
    """(split, ids, text chars, text bytes) of one batch: texts, with BOUNDARY where a document starts."""
    split, segments = task
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
    return split, ids, chars, size


def batches(params: Params, manifest: dict, plan):
    """(split, segments) of about BATCH_CHARS characters, in stream order."""
    pending = {split: ([], 0) for split in SPLITS}
    for split, text in corpus.split_pieces(params.data, manifest, plan):
        segments, size = pending[split]
        segments.append(text)
        size += 0 if text is BOUNDARY else len(text)
        if size >= BATCH_CHARS:
            yield split, segments
            segments, size = [], 0
        pending[split] = (segments, size)
    for split, (segments, _) in pending.items():
        if segments:
            yield split, segments


def encoded(params: Params, manifest: dict, plan, workers: int):
    """encode_batch over every batch, results in order; `workers` processes, or inline."""
    if workers == 1:
        _load_worker_tokenizer(str(artifacts.TOKENIZER_DIR))
        yield from map(encode_batch, batches(params, manifest, plan))
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers, _load_worker_tokenizer,
                                                  (str(artifacts.TOKENIZER_DIR),)) as pool:
        in_flight = collections.deque()
        for task in batches(params, manifest, plan):
            in_flight.append(pool.apply_async(encode_batch, (task,)))
            if len(in_flight) >= 2 * workers:
                yield in_flight.popleft().get()
        while in_flight:
            yield in_flight.popleft().get()


def main(params: Params) -> None:
    manifest = corpus.record(params.data)
    corpus.require_validated(params.data, manifest)
    tokenizer = tokenizer_files.load()
    tokenizer_files.check_source(params.data, manifest["sha256"])
    dtype = token_dtype(tokenizer.vocab_size)
    plan = corpus.split_plan(params.data, manifest)
    workers = 1 if manifest["bytes"] < INLINE_BYTES else (params.prepare.workers or os.cpu_count() or 1)
    writers = {s: ShardWriter(artifacts.PREPARED_DIR, s, dtype, params.prepare.shard_tokens) for s in SPLITS}
    counts = {f"{s}_{k}": 0 for s in SPLITS for k in ("tokens", "chars", "bytes")}
    started = time.perf_counter()
    for stale in artifacts.PREPARED_DIR.glob("*.bin"):  # shards of an earlier run (a DVC output)
        stale.unlink()
    try:
        with Progress("prepare", total=manifest["bytes"], every=10.0) as bar:
            for split, ids, chars, size in encoded(params, manifest, plan, workers):
                writers[split].write(ids)
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
            "sources": [{"path": f["path"], "sha256": f["sha256"]} for f in manifest["files"]],
            "bytes_per_token": total_bytes / max(1, counts["train_tokens"] + counts["val_tokens"])}
    prepared.write_meta(meta)
    log(f"train {meta['train_tokens']:,} tokens, val {meta['val_tokens']:,} tokens in "
        f"{sum(map(len, shards.values()))} shards ({meta['bytes_per_token']:.2f} bytes/token, {dtype.name}, "
        f"{plan.kind} split; encoded in {seconds:.2f}s, {total_bytes / 1e6 / max(seconds, 1e-9):.1f} MB/s "
        f"with {workers} process(es)) -> {artifacts.PREPARED_DIR}")
