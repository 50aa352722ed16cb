"""Stage validate_tokens — in: data/prepared/ (shards, meta.json), data/tokenizer/, data/raw/<name>/,
data/raw/<name>.json — params: model.block_size, data.val_fraction, data.text_field,
validate_tokens.* — out: reports/validation/tokens/ (tokens.json, GX Data Docs in docs/).

Runs the token suite (pipeline/gates/token_suite.py). tokens.json records the digest of the
meta.json it judged (`prepared_digest`): train and evaluate read the verdict before any work and
refuse tokens that failed it or were never judged.
"""

from __future__ import annotations

from pipeline import artifacts
from pipeline.artifacts import corpus, prepared, tokenizer as tokenizer_files
from pipeline.gates import token_suite
from pipeline.params import Params


def main(params: Params) -> None:
    meta = prepared.read_meta()
    tokenizer = tokenizer_files.load()
    splits = {name: prepared.load_split(name, meta) for name in ("train", "val")}
    texts = (text for text, _ in corpus.pieces(params.data))
    token_suite.check(params, tokenizer, splits, meta, texts, subject=str(artifacts.PREPARED_DIR),
                      digest=prepared.digest(meta))
