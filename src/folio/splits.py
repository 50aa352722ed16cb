"""Train and val splits of a stream of documents, a pure function of the documents, the fraction
and a seed, so every stage that reads the corpus cuts it the same way.

Two ways to split:
  tail       the last `val_fraction` of the characters is val (a single text, e.g. Tiny Shakespeare)
  documents  a seeded `val_fraction` of the documents is val, whole (a folder, JSONL or Parquet rows)

A stream is (text, ends_document) pieces (folio.corpus.pieces); a split stream is (split, text)
pairs with `BOUNDARY` (None) in place of the text where a new document starts within a split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from folio.seeds import derive_seed

BOUNDARY = None
SPLITS = ("train", "val")


@dataclass(frozen=True)
class SplitPlan:
    kind: str  # tail | documents
    val_fraction: float
    total_chars: int = 0  # tail: characters of the whole stream
    val_documents: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # documents: mask

    @property
    def val_chars(self) -> int:
        return int(round(self.total_chars * self.val_fraction))


def choose(kind: str, documents: int, val_fraction: float) -> str:
    """`auto`: documents when there are enough of them for the val share to come near val_fraction
    (at least 10 val documents), else tail."""
    if kind != "auto":
        return kind
    return "documents" if documents * val_fraction >= 10 else "tail"


def tail_plan(total_chars: int, val_fraction: float) -> SplitPlan:
    return SplitPlan("tail", val_fraction, total_chars=total_chars)


def document_plan(documents: int, val_fraction: float, seed: int) -> SplitPlan:
    """Exactly round(documents * val_fraction) val documents (at least one), chosen by the seed."""
    k = min(max(1, round(documents * val_fraction)), documents - 1)
    rng = np.random.default_rng(derive_seed(seed, "val documents"))
    mask = np.zeros(documents, dtype=bool)
    mask[rng.choice(documents, size=k, replace=False)] = True
    return SplitPlan("documents", val_fraction, val_documents=mask)


def count_chars(pieces: Iterable[tuple[str, bool]]) -> int:
    return sum(len(text) for text, _ in pieces)


def split_stream(pieces: Iterable[tuple[str, bool]], plan: SplitPlan) -> Iterator[tuple[str, str | None]]:
    """(split, text | BOUNDARY) in stream order; empty documents are dropped."""
    cut = plan.total_chars - plan.val_chars
    started = {split: False for split in SPLITS}
    document, position, at_start = 0, 0, True
    for text, ends in pieces:
        if plan.kind == "documents":
            if document >= len(plan.val_documents):
                raise ValueError(f"the stream holds more than the {len(plan.val_documents):,} documents "
                                 "the split was planned for")
            parts = [("val" if plan.val_documents[document] else "train", text)]
        else:
            head = max(0, min(len(text), cut - position))
            parts = [("train", text[:head]), ("val", text[head:])]
        for split, part in parts:
            if not part:
                continue
            if at_start and started[split]:
                yield split, BOUNDARY
            started[split], at_start = True, False
            yield split, part
        position += len(text)
        if ends:
            document, at_start = document + 1, True
