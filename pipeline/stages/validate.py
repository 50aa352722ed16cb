"""Stage validate — in: data/raw/<name>.txt — params: validate.* —
out: reports/validation/corpus/ (corpus.json, GX Data Docs in docs/).

Runs the corpus suite (pipeline/gates/corpus_suite.py): a failed expectation stops `dvc repro` here,
before the tokenizer is built, naming each failure with its observed value and the key to change.
"""

from __future__ import annotations

from pipeline import artifacts
from pipeline.artifacts import corpus
from pipeline.gates import corpus_suite
from pipeline.params import Params


def main(params: Params) -> None:
    raw = corpus.read_bytes(params.data.name)
    corpus_suite.check(params.validate_, raw, subject=str(artifacts.raw_corpus(params.data.name)))
