"""The token suite: are the prepared tokens fit to train on?
  train_ids_in_range, val_ids_in_range  every token id is in [0, vocab_size)
  train_tokens, val_tokens    each split holds at least model.block_size + 1 tokens (one window)
  val_char_fraction           the val split holds data.val_fraction of the corpus characters (to rounding)
  val_token_fraction          ... and of the tokens, within validate_tokens.val_fraction_tolerance
  val_ids_in_train            every val token id occurs in the train split: an id seen only in val
                              (a character the char vocabulary took from the val text) has an
                              embedding the model never trains
  round_trip                  decode(encode(text)) == text for windows sampled across the corpus

The frames: each split's ids (one row per token), one row of split statistics, and one row per
round-trip window. On failure the report and Data Docs are written first, then
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


def round_trip_frame(text: str, tokenizer):
    """One row per window of the corpus: where it starts, its text, and the text after encode + decode."""
    import pandas as pd

    last = max(len(text) - ROUND_TRIP_CHARS, 0)
    starts = sorted({round(i * last / (ROUND_TRIP_WINDOWS - 1)) for i in range(ROUND_TRIP_WINDOWS)})
    rows = []
    for start in starts:
        window = text[start:start + ROUND_TRIP_CHARS]
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


def _out_of_range_example(split: str, ids: np.ndarray, vocab_size: int) -> str:
    bad = np.flatnonzero((ids < 0) | (ids >= vocab_size))
    return f"first: {split} token {bad[0]:,} has id {ids[bad[0]]:,}; vocab_size is {vocab_size:,}"


def _unseen_example(tokenizer, train: np.ndarray, val: np.ndarray) -> str:
    unseen = np.setdiff1d(np.unique(val), np.unique(train))
    counts = {int(i): int((val == i).sum()) for i in unseen[:5]}
    named = ", ".join(f"{_decode(tokenizer, [i])!r} (id {i}) ×{n:,}" for i, n in counts.items())
    first = int(np.flatnonzero(np.isin(val, unseen))[0])
    context = _decode(tokenizer, val[max(first - 30, 0):first + 30])
    return (f"ids found in val only ({len(unseen):,}): {named}; the first at val token {first:,}, "
            f"in {clip(context, 70)}")


def split_stats(meta: dict) -> dict:
    chars, tokens = meta["train_chars"] + meta["val_chars"], meta["train_tokens"] + meta["val_tokens"]
    return {
        "train_tokens": meta["train_tokens"],
        "val_tokens": meta["val_tokens"],
        "val_char_fraction": round(meta["val_chars"] / chars, 6) if chars else 0.0,
        "val_token_fraction": round(meta["val_tokens"] / tokens, 6) if tokens else 0.0,
        "total_chars": chars,
        "vocab_size": meta["vocab_size"],
    }


def build_suite(params: Params, tokenizer, train: np.ndarray, val: np.ndarray, stats: dict,
                windows) -> list[Expectation]:
    """The token suite: one Expectation per check."""
    import great_expectations.expectations as gxe

    p, vocab, fraction = params.validate_tokens, tokenizer.vocab_size, params.data.val_fraction
    least = params.model.block_size + 1
    # split_text rounds the val part to a whole character: allow that, and float error
    rounding = 1.0 / max(stats["total_chars"], 1) + 1e-9
    low, high = fraction * (1 - p.val_fraction_tolerance), fraction * (1 + p.val_fraction_tolerance)

    def in_range(split: str, ids: np.ndarray) -> Expectation:
        return Expectation(f"{split}_ids_in_range", split, gxe.ExpectColumnValuesToBeBetween(
                               column="id", min_value=0, max_value=vocab - 1),
                           f"fraction of {split} token ids outside [0, vocab_size)", "= 0.00%",
                           f"{{s}} of {split} token ids are outside [0, {vocab:,}): the tokens do not match "
                           "the tokenizer", example=lambda: _out_of_range_example(split, ids, vocab), show=percent)

    def enough(split: str) -> Expectation:
        return Expectation(f"{split}_tokens", "stats", gxe.ExpectColumnValuesToBeBetween(
                               column=f"{split}_tokens", min_value=least),
                           f"tokens in the {split} split", f"≥ {least:,}",
                           f"the {split} split holds {{o:,}} tokens, fewer than model.block_size + 1 = {least:,}",
                           stats[f"{split}_tokens"])

    return [
        in_range("train", train),
        in_range("val", val),
        enough("train"),
        enough("val"),
        Expectation("val_char_fraction", "stats", gxe.ExpectColumnValuesToBeBetween(
                        column="val_char_fraction", min_value=fraction - rounding, max_value=fraction + rounding),
                    "the val split's share of the corpus characters", f"= {percent(fraction)}",
                    f"the val split holds {{o:.6f}} of the characters, not data.val_fraction={fraction:g}: "
                    "the prepared splits are stale or wrongly cut", stats["val_char_fraction"], show=percent),
        Expectation("val_token_fraction", "stats", gxe.ExpectColumnValuesToBeBetween(
                        column="val_token_fraction", min_value=low, max_value=high),
                    "the val split's share of the tokens", f"{percent(low)} to {percent(high)}",
                    f"the val split holds {{o:.4f}} of the tokens, more than "
                    f"validate_tokens.val_fraction_tolerance={p.val_fraction_tolerance:g} (relative) "
                    f"away from data.val_fraction={fraction:g}", stats["val_token_fraction"], show=percent),
        Expectation("val_ids_in_train", "val", gxe.ExpectColumnValuesToBeInSet(
                        column="id", value_set=np.unique(train).tolist(), mostly=1.0 - p.max_unseen_val_fraction),
                    "fraction of val tokens whose id never occurs in the train split",
                    f"≤ {percent(p.max_unseen_val_fraction)}",
                    "{s} of val tokens have an id that never occurs in the train split (the model never "
                    f"learns them), more than validate_tokens.max_unseen_val_fraction={p.max_unseen_val_fraction}",
                    example=lambda: _unseen_example(tokenizer, train, val), show=percent),
        Expectation("round_trip", "round_trip", gxe.ExpectColumnPairValuesToBeEqual(
                        column_A="text", column_B="decoded", mostly=1.0 - p.max_round_trip_failures),
                    f"fraction of {len(windows)} corpus windows that decode differently after encoding",
                    f"≤ {percent(p.max_round_trip_failures)}",
                    "{s} of the sampled corpus windows do not survive encode + decode, more than "
                    f"validate_tokens.max_round_trip_failures={p.max_round_trip_failures}",
                    example=lambda: _round_trip_example(windows), show=percent),
    ]


def check(params: Params, tokenizer, train: np.ndarray, val: np.ndarray, meta: dict, text: str,
          subject: str) -> list:
    """Run the suite over the splits (`meta`: data/prepared/meta.json, `text`: the corpus);
    writes reports/validation/tokens/ and raises TokenValidationError if any expectation fails."""
    import pandas as pd

    stats, windows = split_stats(meta), round_trip_frame(text, tokenizer)
    suite = build_suite(params, tokenizer, train, val, stats, windows)
    frames = {"train": pd.DataFrame({"id": train}), "val": pd.DataFrame({"id": val}),
              "stats": pd.DataFrame([stats]), "round_trip": windows}
    return expectations.validate(SUITE, frames, suite, subject=subject,
                                 extra={"tokenizer": tokenizer.kind, "stats": stats})
