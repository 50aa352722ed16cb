"""Stage tokenize — in: data/raw/<name>/, data/raw/<name>.json, reports/validation/corpus/corpus.json —
params: tokenizer.*, data.split, data.seed, data.val_fraction, data.text_field — out: data/tokenizer/
(tokenizer.json, plus bpe.tiktoken for BPE, and source.json: the corpus digest and data.* keys it
was built from).

It refuses, before any work, a corpus that has not passed the corpus gate (by its digest), and a
corpus with no text.

BPE and word vocabularies learn from the train split only, from at most tokenizer.max_train_chars
of it: whole pieces (documents, or ~1 MB of a long text) drawn with data.seed, so the sample is
the same every run and spread over the whole split. The character vocabulary takes every character
of the corpus, so the val split always encodes.
"""

from __future__ import annotations

import time
from typing import Iterator

from folio.seeds import derive_seed
from folio.splits import BOUNDARY
from folio.tokenizers import TEXT_SEPARATOR, train_tokenizer
from pipeline import artifacts
from pipeline.artifacts import corpus, tokenizer as tokenizer_files
from pipeline.console import log
from pipeline.errors import StageError
from pipeline.params import Params


def train_sample(params: Params, manifest: dict) -> Iterator[str]:
    """Pieces of the train split, each kept with probability budget / (train bytes), up to the budget."""
    data, budget = params.data, params.tokenizer.max_train_chars
    keep = min(1.0, budget / max(1.0, manifest["bytes"] * (1 - data.val_fraction)))
    taken = 0
    for i, (split, text) in enumerate(corpus.split_pieces(data, manifest)):
        if split != "train":
            continue
        text = TEXT_SEPARATOR if text is BOUNDARY else text
        if keep < 1.0 and derive_seed(data.seed, "tokenizer sample", i) / 2**63 >= keep:
            continue
        text = text[:budget - taken]
        taken += len(text)
        yield text
        if taken >= budget:
            return


def corpus_characters(params: Params, manifest: dict) -> str:
    """Every distinct character of the corpus (and of the separator, if it has several
    documents), in one streamed pass."""
    chars = set(TEXT_SEPARATOR) if manifest["documents"] > 1 else set()
    for text, _ in corpus.pieces(params.data, manifest):
        chars |= set(text)
    return "".join(sorted(chars))


def main(params: Params) -> None:
    kind = params.tokenizer.kind
    manifest = corpus.record(params.data)
    corpus.require_validated(params.data, manifest)
    started = time.perf_counter()
    if kind == "char":
        source = corpus_characters(params, manifest)
    elif kind in ("bpe", "word"):
        source = "".join(train_sample(params, manifest))
    else:
        source = ""  # a pretrained tiktoken encoding learns nothing
    if not source and kind in ("char", "bpe", "word"):
        raise StageError(f"the corpus {artifacts.raw_dir(params.data.name)} holds no text to learn a {kind} "
                         "vocabulary from (an empty file, or documents without text); check data.url "
                         "and data.text_field, then run `folio download`")
    tokenizer = train_tokenizer(kind, source, params.tokenizer.vocab_size)
    tokenizer_files.save(tokenizer, params.data, manifest["sha256"])
    learned = f" from {len(source):,} characters" if kind in ("bpe", "word") else ""
    log(f"{kind} tokenizer: {tokenizer.vocab_size:,} tokens{learned} in {time.perf_counter() - started:.2f}s "
        f"-> {artifacts.TOKENIZER_DIR}")
