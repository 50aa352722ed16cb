"""The token suite: are the prepared tokens fit to train on?
  train_ids_in_range, val_ids_in_range  every token id is in [0, vocab_size)
  train_tokens, val_tokens    each split's longest shard holds at least model.block_size + 1 tokens
  val_byte_fraction           the val split holds data.val_fraction of the corpus bytes: to the
                              character for a tail split, within the largest document's share for a
                              document split (folio.splits: documents are held out by size)
  val_token_fraction          its share of the tokens is its share of the bytes, within
                              validate_tokens.val_fraction_tolerance (relative)
  val_ids_in_train            every val token id occurs in the train split: an id seen only in val
                              (a character the char vocabulary took from the val text) has an
                              embedding the model never trains
  round_trip                  decode(encode(text)) == text for windows spread over the corpus

The shards are read through memory maps in bounded chunks: every statistic is exact (a count per
id), whatever the corpus size. The frames: one row of split statistics, one row per shard, and one
row per round-trip window. On failure the report and Data Docs are written first, then
TokenValidationError names every failed check, so `dvc repro` stops before training.
"""

from __future__ import annotations

import numpy as np

from pipeline.gates import expectations
from pipeline.gates.expectations import Expectation, clip, percent
from pipeline.params import Params

ROUND_TRIP_WINDOWS = 20  # windows of the corpus, evenly spaced from its start to its end
ROUND_TRIP_CHARS = 500


class TokenValidationError(expectations.ValidationFailed):
    """The prepared tokens failed expectations; the message names each with its observed value and threshold."""


SUITE = expectations.Suite("tokens", "token validation", TokenValidationError)


def _decode(tokenizer, ids) -> str:
    try:
        return tokenizer.decode([int(i) for i in ids])
    except (IndexError, KeyError, ValueError):  # an id outside the vocabulary
        return "(undecodable)"


def corpus_windows(texts, total_chars: int) -> list[tuple[int, str]]:
    """(start, text) of ROUND_TRIP_WINDOWS windows evenly spaced over a stream of texts of
    `total_chars` characters; a window stays within its piece."""
    last = max(total_chars - ROUND_TRIP_CHARS, 0)
    starts = sorted({round(i * last / (ROUND_TRIP_WINDOWS - 1)) for i in range(ROUND_TRIP_WINDOWS)})
    windows, position, i = [], 0, 0
    for text in texts:
        while i < len(starts) and starts[i] < position + len(text):
            offset = max(0, starts[i] - position)
            windows.append((starts[i], text[offset:offset + ROUND_TRIP_CHARS]))
            i += 1
        position += len(text)
        if i == len(starts):
            break
    return windows


def round_trip_frame(windows: list[tuple[int, str]], tokenizer):
    """One row per window of the corpus: where it starts, its text, and the text after encode + decode."""
    import pandas as pd

    rows = []
    for start, window in windows:
        # a lossy tokenizer (word level) must give back exactly its normalised text
        expected = window if tokenizer.lossless else tokenizer.normalize(window)
        try:
            decoded = tokenizer.decode(tokenizer.encode(window))
        except ValueError as err:  # e.g. a character the vocabulary lacks
            decoded = f"<encode failed: {err}>"
        rows.append({"start": start, "text": expected, "decoded": decoded})
    return pd.DataFrame(rows, columns=["start", "text", "decoded"])


def _round_trip_example(windows) -> str | None:
    for start, text, decoded in windows.itertuples(index=False):
        if text != decoded:
            at = next((i for i, (a, b) in enumerate(zip(text, decoded)) if a != b), min(len(text), len(decoded)))
            return (f"first in the window at character {start:,}: {clip(text[max(at - 10, 0):])} "
                    f"came back as {clip(decoded[max(at - 10, 0):])}")
    return None


COUNT_CHUNK = 1 << 24  # ids counted at a time


class SplitCounts:
    """How often each id occurs in a split, read shard by shard in chunks, and the first id
    outside the vocabulary."""

    def __init__(self, split, vocab_size: int):
        self.counts = np.zeros(vocab_size, dtype=np.int64)
        self.tokens = self.out_of_range = 0
        self.first_bad: tuple[int, int] | None = None  # (token index, id)
        self.longest = max(split.lengths, default=0)
        for ids in split.chunks(COUNT_CHUNK):
            bad = np.flatnonzero(ids >= vocab_size)
            if bad.size and self.first_bad is None:
                self.first_bad = (self.tokens + int(bad[0]), int(ids[bad[0]]))
            self.out_of_range += bad.size
            self.counts += np.bincount(ids[ids < vocab_size], minlength=vocab_size)
            self.tokens += len(ids)


def _out_of_range_example(name: str, counts: SplitCounts, vocab_size: int) -> str | None:
    if counts.first_bad is None:
        return None
    index, bad_id = counts.first_bad
    return f"first: {name} token {index:,} has id {bad_id:,}; vocab_size is {vocab_size:,}"


def _unseen_example(tokenizer, train: SplitCounts, val: SplitCounts, val_split) -> str:
    unseen = np.flatnonzero((val.counts > 0) & (train.counts == 0))
    named = ", ".join(f"{_decode(tokenizer, [i])!r} (id {i}) ×{int(val.counts[i]):,}" for i in unseen[:5])
    head = val_split.head(COUNT_CHUNK)  # the first million or so ids: where to quote from
    hits = np.flatnonzero(np.isin(head, unseen))
    where = ""
    if hits.size:
        first = int(hits[0])
        where = f"; the first at val token {first:,}, in {clip(_decode(tokenizer, head[max(first - 30, 0):first + 30]), 70)}"
    return f"ids found in val only ({len(unseen):,}): {named}{where}"


def split_stats(meta: dict, train: SplitCounts, val: SplitCounts) -> dict:
    chars, tokens = meta["train_chars"] + meta["val_chars"], train.tokens + val.tokens
    size = meta["train_bytes"] + meta["val_bytes"]
    largest = meta.get("largest_document_bytes")
    unseen = int(val.counts[train.counts == 0].sum())
    return {
        "train_tokens": train.tokens,
        "val_tokens": val.tokens,
        "train_longest_shard": train.longest,
        "val_longest_shard": val.longest,
        "train_out_of_range_fraction": round(train.out_of_range / train.tokens, 6) if train.tokens else 0.0,
        "val_out_of_range_fraction": round(val.out_of_range / val.tokens, 6) if val.tokens else 0.0,
        "val_unseen_fraction": round((unseen + val.out_of_range) / val.tokens, 6) if val.tokens else 0.0,
        "val_byte_fraction": round(meta["val_bytes"] / size, 6) if size else 0.0,
        "val_token_fraction": round(val.tokens / tokens, 6) if tokens else 0.0,
        "largest_document_fraction": round(largest / size, 6) if largest and size else None,
        "total_chars": chars,
        "total_bytes": size,
        "prepared_val_fraction": meta.get("val_fraction"),
        "vocab_size": meta["vocab_size"],
        "split": meta.get("split", "tail"),
    }


def byte_fraction_bounds(stats: dict, fraction: float) -> tuple[float, float, str]:
    """(low, high, threshold shown) of the val split's share of the bytes. A tail split cuts at a
    character (at most 4 bytes); a document split holds whole documents, so it can be off by up to
    the largest one's share (folio.splits.document_plan)."""
    if stats["split"] == "tail":
        slack = 4 / max(stats["total_bytes"], 1) + 1e-9
        return fraction - slack, fraction + slack, f"= {percent(fraction)} (to the character)"
    slack = (stats["largest_document_fraction"] or 0.0) + 1e-9
    return (fraction - slack, fraction + slack,
            f"{percent(fraction)} ± {percent(slack)} (the largest document's share)")


def byte_fraction_failure(stats: dict, fraction: float) -> str:
    """What is wrong when the val split's share of the bytes is off: stale splits, or shards that
    are not this corpus's split."""
    said = f"the val split holds {{s}} of the bytes, not data.val_fraction={fraction:g}"
    cut_for = stats["prepared_val_fraction"]
    if cut_for is not None and cut_for != fraction:
        return (f"{said}: the splits were cut for data.val_fraction={cut_for:g} and are stale; "
                "run `folio prepare` (or `dvc repro`)")
    if stats["split"] == "documents" and stats["largest_document_fraction"] is None:
        return f"{said}: data/prepared/meta.json predates splits by size; run `folio prepare` (or `dvc repro`)"
    within = ("to the character" if stats["split"] == "tail" else
              f"within the largest document's share, {percent(stats['largest_document_fraction'] or 0)}")
    return (f"{said} {within}: the shards are not this corpus's {stats['split']} split; "
            "run `folio prepare` again")


def build_suite(params: Params, tokenizer, counts: dict, stats: dict, windows, val_split) -> list[Expectation]:
    """The token suite: one Expectation per check."""
    import great_expectations.expectations as gxe

    p, vocab, fraction = params.validate_tokens, tokenizer.vocab_size, params.data.val_fraction
    least = params.model.block_size + 1
    byte_low, byte_high, byte_threshold = byte_fraction_bounds(stats, fraction)
    share, tolerance = stats["val_byte_fraction"], p.val_fraction_tolerance
    low, high = share * (1 - tolerance), share * (1 + tolerance)

    def stat(column: str, **bounds):
        return gxe.ExpectColumnValuesToBeBetween(column=column, **bounds)

    def in_range(split: str) -> Expectation:
        return Expectation(f"{split}_ids_in_range", "stats", stat(f"{split}_out_of_range_fraction", max_value=0),
                           f"fraction of {split} token ids outside [0, vocab_size)", "= 0.00%",
                           f"{{s}} of {split} token ids are outside [0, {vocab:,}): the tokens do not match "
                           "the tokenizer", stats[f"{split}_out_of_range_fraction"],
                           lambda: _out_of_range_example(split, counts[split], vocab), percent)

    def enough(split: str) -> Expectation:
        return Expectation(f"{split}_tokens", "stats", stat(f"{split}_longest_shard", min_value=least),
                           f"tokens in the {split} split (its longest shard)", f"≥ {least:,}",
                           f"the {split} split holds {{o:,}} tokens, fewer than model.block_size + 1 = {least:,}",
                           stats[f"{split}_longest_shard"])

    return [
        in_range("train"),
        in_range("val"),
        enough("train"),
        enough("val"),
        Expectation("val_byte_fraction", "stats", stat("val_byte_fraction", min_value=byte_low, max_value=byte_high),
                    f"the val split's share of the corpus bytes ({stats['split']} split)", byte_threshold,
                    byte_fraction_failure(stats, fraction), stats["val_byte_fraction"], show=percent),
        Expectation("val_token_fraction", "stats", stat("val_token_fraction", min_value=low, max_value=high),
                    "the val split's share of the tokens (against its share of the bytes)",
                    f"{percent(low)} to {percent(high)}",
                    f"the val split holds {{o:.4f}} of the tokens but {share:.4f} of the bytes, more than "
                    f"validate_tokens.val_fraction_tolerance={tolerance:g} (relative) apart: its text "
                    "tokenizes unlike the train split's (another language or kind of text?)",
                    stats["val_token_fraction"], show=percent),
        Expectation("val_ids_in_train", "stats", stat("val_unseen_fraction", max_value=p.max_unseen_val_fraction),
                    "fraction of val tokens whose id never occurs in the train split",
                    f"≤ {percent(p.max_unseen_val_fraction)}",
                    "{s} of val tokens have an id that never occurs in the train split (the model never "
                    f"learns them), more than validate_tokens.max_unseen_val_fraction={p.max_unseen_val_fraction}"
                    + ("" if tokenizer.kind == "char" else
                       f"; with tokenizer.kind={tokenizer.kind} a few are expected (a rare byte in val only, a merge "
                       "the train split always merges further): presets/code.yaml and presets/web.yaml allow 0.1%"),
                    stats["val_unseen_fraction"],
                    lambda: _unseen_example(tokenizer, counts["train"], counts["val"], val_split), percent),
        Expectation("round_trip", "round_trip", gxe.ExpectColumnPairValuesToBeEqual(
                        column_A="text", column_B="decoded", mostly=1.0 - p.max_round_trip_failures),
                    f"fraction of {len(windows)} corpus windows that decode differently after encoding",
                    f"≤ {percent(p.max_round_trip_failures)}",
                    "{s} of the sampled corpus windows do not survive encode + decode, more than "
                    f"validate_tokens.max_round_trip_failures={p.max_round_trip_failures}",
                    example=lambda: _round_trip_example(windows), show=percent),
    ]


def check(params: Params, tokenizer, splits: dict, meta: dict, texts, subject: str,
          digest: str | None = None) -> list:
    """Run the suite over the splits (TokenSplits; `meta`: data/prepared/meta.json, `texts`: the
    corpus as a stream of texts); writes reports/validation/tokens/ and raises TokenValidationError
    if any expectation fails."""
    import pandas as pd

    counts = {name: SplitCounts(split, tokenizer.vocab_size) for name, split in splits.items()}
    stats = split_stats(meta, counts["train"], counts["val"])
    windows = round_trip_frame(corpus_windows(texts, stats["total_chars"]), tokenizer)
    suite = build_suite(params, tokenizer, counts, stats, windows, splits["val"])
    shards = pd.DataFrame([{"split": name, **shard} for name in ("train", "val") for shard in meta["shards"][name]])
    frames = {"stats": pd.DataFrame([stats]), "shards": shards, "round_trip": windows}
    return expectations.validate(SUITE, frames, suite, subject=subject,
                                 extra={"tokenizer": tokenizer.kind, "prepared_digest": digest,
                                        "tokenizer_digest": tokenizer.digest, "stats": stats})
