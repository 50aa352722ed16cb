"""Stage validate_tokens — in: data/prepared/ (train.bin, val.bin, meta.json), data/tokenizer/,
data/raw/<name>.txt — params: model.block_size, data.val_fraction, validate_tokens.* —
out: reports/validation/tokens/ (tokens.json, GX Data Docs in docs/).

Runs the token suite (pipeline/gates/token_suite.py); train depends on tokens.json, so training never
runs on tokens that failed.
"""

from __future__ import annotations

from pipeline import artifacts
from pipeline.artifacts import corpus, prepared, tokenizer as tokenizer_files
from pipeline.gates import token_suite
from pipeline.params import Params


def main(params: Params) -> None:
    meta = prepared.read_meta()
    tokenizer = tokenizer_files.load()
    train, val = prepared.load_split("train").numpy(), prepared.load_split("val").numpy()
    text = corpus.read_text(params.data.name)
    token_suite.check(params, tokenizer, train, val, meta, text, subject=str(artifacts.PREPARED_DIR))
