"""The tokenize and prepare stages for each tokenizer kind: BPE and word learn from the train
split only, ids are stored as uint16 or uint32 by vocabulary size, meta.json records bytes per
token, evaluate reports bits per byte next to the per-token loss, and register tags an unpinned
corpus with its real digest."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipeline import artifacts
from pipeline.artifacts import prepared, tokenizer as tokenizer_files
from pipeline.stages import evaluate, prepare, tokenize, train
from pipeline.params import validate

from tests.conftest import STAGE_TEXT as TEXT, record_gate_passes, tokenized_and_prepared


def _params(**tokenizer):
    return validate({
        "data": {"name": "t", "url": "file:///unused", "sha256": "0" * 64, "val_fraction": 0.1},
        "tokenizer": tokenizer,
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
        "train": {"max_iters": 4, "batch_size": 4, "eval_interval": 2, "eval_iters": 1,
                  "warmup_iters": 1, "device": "cpu"},
        "evaluate": {"batch_size": 8},
    })


@pytest.mark.parametrize("tokenizer", [{"kind": "char"}, {"kind": "bpe", "vocab_size": 300},
                                       {"kind": "word", "vocab_size": 50}])
def test_tokenize_prepare_train_evaluate(stage_project, tokenizer):
    params = _params(**tokenizer)
    tokenized_and_prepared(params)
    train.main(params)
    evaluate.main(params)
    meta = json.loads(artifacts.PREPARED_META.read_text())
    assert meta["dtype"] == "uint16" and meta["tokenizer_kind"] == tokenizer["kind"]
    assert meta["train_chars"] + meta["val_chars"] == len(TEXT)
    assert meta["bytes_per_token"] == pytest.approx(
        len(TEXT.encode()) / (meta["train_tokens"] + meta["val_tokens"]))
    metrics = json.loads(artifacts.METRICS.read_text())["val"]
    assert math.isfinite(metrics["bits_per_byte"]) and metrics["bits_per_byte"] > 0
    # bits per byte = bits per token spread over the bytes each token stands for
    assert metrics["bits_per_byte"] == pytest.approx(
        metrics["bits_per_token"] * metrics["tokens"] / (meta["val_bytes"] - len(
            tokenizer_files.load().decode(prepared.load_split("val").head(1).tolist()).encode())))


def test_bpe_learns_from_the_train_split_only(stage_project):
    params = _params(kind="bpe", vocab_size=300)
    (artifacts.raw_dir("t") / "t.txt").write_text(TEXT[:-2000] + "zyzzyva " * 250, encoding="utf-8")
    record_gate_passes(params)
    tokenize.main(params)
    tok = tokenizer_files.load()
    assert len(tok.encode("zyzzyva")) > 2  # a word seen only in val was not merged


def test_vocabularies_over_65536_are_stored_as_uint32(stage_project):
    words = " ".join(f"w{i}" for i in range(70_000)) + "\n"
    (artifacts.raw_dir("t") / "t.txt").write_text(words * 2, encoding="utf-8")
    params = _params(kind="word", vocab_size=80_000)
    record_gate_passes(params)
    tokenize.main(params)
    prepare.main(params)
    assert json.loads(artifacts.PREPARED_META.read_text())["dtype"] == "uint32"
    ids = prepared.load_split("train")
    assert ids.shards[0].max() >= 65_536
    assert np.fromfile(artifacts.prepared_shard("train-00000.bin"), dtype=np.uint32).size == len(ids)


def test_an_unpinned_corpus_is_registered_with_its_real_digest(stage_project):
    """data.sha256 empty: the version's data.sha256 tag and its model card name the digest of the
    file download recorded (here: of the file itself), never an empty string."""
    import hashlib

    from pipeline.tracking import store
    from pipeline.stages import register, sample
    from pipeline.tracking import registry

    params = _params(kind="char")
    params = params.model_copy(update={"data": params.data.model_copy(update={"sha256": ""}),
                                       "sample": params.sample.model_copy(update={"max_new_tokens": 5})})
    tokenized_and_prepared(params)
    for stage in (train, evaluate, sample, register):
        stage.main(params)
    digest = hashlib.sha256(TEXT.encode()).hexdigest()
    registered = json.loads(artifacts.REGISTERED_MODEL.read_text())
    store.setup()
    tags = registry.get_version(registered["name"], registered["version"]).tags
    assert tags["data.sha256"] == digest
    card = artifacts.MODEL_CARD.read_text()
    assert f"sha256 `{digest}` (as downloaded; data.sha256 is unpinned)" in card
