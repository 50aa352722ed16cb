"""Train and val splits of a stream of documents, a pure function of the documents, the fraction
and a seed, so every stage that reads the corpus cuts it the same way. `val_fraction` is a share
of the text's UTF-8 bytes, whichever way it is cut:

  tail       the last `val_fraction` of the bytes is val, cut at a character (a single text,
             e.g. Tiny Shakespeare: ASCII, so the last val_fraction of its characters too)
  documents  whole documents, drawn in a seeded order, are val while they fit in `val_fraction`
             of the bytes (a folder, JSONL or Parquet rows): a few large documents cannot make
             val 17% instead of 10%, as holding out a share of the documents by count did

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


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class SplitPlan:
    kind: str  # tail | documents
    val_fraction: float
    total_bytes: int = 0  # tail: UTF-8 bytes of the whole stream
    val_documents: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # documents: mask
    largest_document_bytes: int = 0  # documents: the bound on how far val's share can be from val_fraction

    @property
    def val_bytes(self) -> int:
        """tail: the bytes val holds, to the character the cut falls in."""
        return int(round(self.total_bytes * self.val_fraction))


def choose(kind: str, documents: int, val_fraction: float) -> str:
    """`auto`: documents when there are enough of them for the val share to come near val_fraction
    (at least 10 val documents' worth), else tail."""
    if kind != "auto":
        return kind
    return "documents" if documents * val_fraction >= 10 else "tail"


def tail_plan(total_bytes: int, val_fraction: float) -> SplitPlan:
    return SplitPlan("tail", val_fraction, total_bytes=total_bytes)


def document_plan(sizes, val_fraction: float, seed: int) -> SplitPlan:
    """Val documents chosen by size: in a seeded order of the documents, each goes to val if it
    still fits in round(val_fraction × total bytes) (first fit). So val's share of the bytes is at
    most val_fraction, and short of it by less than the smallest train document's share; when no
    document fits, val is the smallest (the first of them in the seeded order), over by less than
    its share. Either way within the largest document's share of val_fraction. At least one
    document is val and one train; `sizes` are the documents' UTF-8 bytes, in stream order."""
    sizes = np.asarray(sizes, dtype=np.int64)
    n = len(sizes)
    if n < 2:
        raise ValueError(f"a document split needs at least 2 documents, not {n}")
    order = np.random.default_rng(derive_seed(seed, "val documents")).permutation(n)
    target = int(round(int(sizes.sum()) * val_fraction))
    mask = np.zeros(n, dtype=bool)
    taken = 0
    for i in order:  # a loop over documents: 1M of them take about a second
        size = int(sizes[i])
        if taken + size <= target:
            mask[i] = True
            taken += size
            if taken == target:
                break
    if not mask.any() or mask.all():
        mask[:] = False
        mask[order[np.argmin(sizes[order])]] = True  # argmin takes the first smallest in seeded order
    return SplitPlan("documents", val_fraction, val_documents=mask,
                     largest_document_bytes=int(sizes.max()))


def count_bytes(pieces: Iterable[tuple[str, bool]]) -> int:
    return sum(utf8_bytes(text) for text, _ in pieces)


def document_sizes(pieces: Iterable[tuple[str, bool]]) -> np.ndarray:
    """UTF-8 bytes of each document of the stream, in order."""
    sizes, size = [], 0
    for text, ends in pieces:
        size += utf8_bytes(text)
        if ends:
            sizes.append(size)
            size = 0
    return np.array(sizes, dtype=np.int64)


def _cut(text: str, head_bytes: int) -> int:
    """How many characters of `text` lie within its first `head_bytes` UTF-8 bytes (a character
    the cut falls in goes with what follows)."""
    if head_bytes <= 0:
        return 0
    data = text.encode("utf-8", "surrogatepass")
    if head_bytes >= len(data):
        return len(text)
    return len(data[:head_bytes].decode("utf-8", "ignore"))


def split_stream(pieces: Iterable[tuple[str, bool]], plan: SplitPlan) -> Iterator[tuple[str, str | None]]:
    """(split, text | BOUNDARY) in stream order; empty documents are dropped."""
    cut = plan.total_bytes - plan.val_bytes
    started = {split: False for split in SPLITS}
    document, position, at_start = 0, 0, True  # position: bytes of the stream before `text`
    for text, ends in pieces:
        if plan.kind == "documents":
            if document >= len(plan.val_documents):
                raise ValueError(f"the stream holds more than the {len(plan.val_documents):,} documents "
                                 "the split was planned for")
            parts = [("val" if plan.val_documents[document] else "train", text)]
        elif position >= cut:
            parts = [("val", text)]
        else:
            size = utf8_bytes(text)
            head = len(text) if position + size <= cut else _cut(text, cut - position)
            parts = [("train", text[:head]), ("val", text[head:])]
            position += size
        for split, part in parts:
            if not part:
                continue
            if at_start and started[split]:
                yield split, BOUNDARY
            started[split], at_start = True, False
            yield split, part
        if ends:
            document, at_start = document + 1, True
