"""The validate_tokens stage on tokens that tokenize + prepare really produced: a good corpus passes;
ids outside the vocabulary, a split shorter than one window, splits cut for another val_fraction and
a tokenizer that loses text fail, each naming the expectation, the observed value and the key to change;
val's share of the bytes is checked to the character for a tail split and within the largest
document's share for a document split, and a failure says whether the splits are stale or not this
corpus's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline import artifacts
from pipeline.artifacts import prepared as prepared_files
from pipeline.stages import prepare, tokenize
from pipeline.params import validate
from pipeline.gates.token_suite import TokenValidationError
from pipeline.stages.validate_tokens import main
from tests.conftest import record_gate_passes

TEXT = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog, {i * 7 % 13} times.\n" for i in range(300))


def _params(**overrides):
    tree = {"data": {"name": "t", "url": "t.txt", "sha256": ""}, "model": {"block_size": 32}}
    for key, value in overrides.items():
        section, leaf = key.split("__")
        tree.setdefault(section, {})[leaf] = value
    return validate(tree)


@pytest.fixture
def prepared(tmp_path, monkeypatch):
    """A project whose corpus went through the real tokenize and prepare stages."""
    monkeypatch.chdir(tmp_path)
    artifacts.raw_dir("t").mkdir(parents=True)
    (artifacts.raw_dir("t") / "t.txt").write_text(TEXT, encoding="utf-8")

    def run(**overrides):
        params = _params(**overrides)
        record_gate_passes(params)
        tokenize.main(params)
        prepare.main(params)
        return params

    return run


def check(params) -> tuple[dict, str | None]:
    try:
        main(params)
        error = None
    except TokenValidationError as err:
        error = str(err)
    assert artifacts.validation_dir("tokens").joinpath("docs", "index.html").exists()
    return json.loads(artifacts.validation_report("tokens").read_text()), error


def failed(report: dict) -> list[str]:
    return [e["name"] for e in report["expectations"] if not e["passed"]]


def test_good_tokens_pass(prepared):
    report, error = check(prepared())
    assert error is None and report["success"]
    assert [e["name"] for e in report["expectations"]] == [
        "train_ids_in_range", "val_ids_in_range", "train_tokens", "val_tokens", "val_byte_fraction",
        "val_token_fraction", "val_ids_in_train", "round_trip"]
    assert report["stats"]["val_byte_fraction"] == pytest.approx(0.1, abs=1e-4)


def test_ids_outside_the_vocabulary_fail(prepared):
    params = prepared()
    meta = json.loads(artifacts.PREPARED_META.read_text())
    val = np.array(prepared_files.load_split("val").shards[0])
    val[7] = meta["vocab_size"]  # one past the last id
    val.astype(meta["dtype"]).tofile(artifacts.prepared_shard(meta["shards"]["val"][0]["file"]))
    report, error = check(params)
    assert "val_ids_in_range" in failed(report) and "train_ids_in_range" not in failed(report)
    assert f"of val token ids are outside [0, {meta['vocab_size']})" in error
    assert f"first: val token 7 has id {meta['vocab_size']}; vocab_size is {meta['vocab_size']}" in error


def test_a_split_shorter_than_one_window_fails(prepared):
    params = prepared(model__block_size=4_000)
    report, error = check(params)
    assert failed(report) == ["val_tokens"]
    val_tokens = report["stats"]["val_tokens"]
    assert f"val_tokens: the val split holds {val_tokens:,} tokens, fewer than model.block_size + 1 = 4,001" in error


def test_splits_cut_for_another_val_fraction_fail(prepared):
    prepared()  # prepared with data.val_fraction 0.1, validated against 0.2: stale splits
    report, error = check(_params(data__val_fraction=0.2))
    assert failed(report) == ["val_byte_fraction"]  # the tokens are still 10%, as the bytes are
    assert ("val_byte_fraction: the val split holds 10.00% of the bytes, not data.val_fraction=0.2: the "
            "splits were cut for data.val_fraction=0.1 and are stale; run `folio prepare` (or `dvc repro`)") in error


def test_a_tokenizer_that_loses_text_fails_the_round_trip_unless_allowed(prepared, monkeypatch):
    params = prepared()
    from folio.tokenizers import CharTokenizer

    real_decode = CharTokenizer.decode
    monkeypatch.setattr(CharTokenizer, "decode", lambda self, ids: real_decode(self, ids).replace("fox", "f"))
    report, error = check(params)
    assert "round_trip" in failed(report)
    assert "round_trip: 100.00% of the sampled corpus windows do not survive encode + decode" in error
    assert "came back as" in error and "brown f jumps" in error
    report, error = check(_params(validate_tokens__max_round_trip_failures=1.0))
    assert "round_trip" not in failed(report)


def test_word_level_round_trips_exactly_up_to_its_unknown_words(prepared):
    """decode(encode(x)) of a word vocabulary is x with unknown pieces as <unk>: exact on that."""
    report, error = check(prepared(tokenizer__kind="word", tokenizer__vocab_size=8))
    assert "round_trip" not in failed(report), error


def test_a_document_split_is_checked_within_its_largest_document_and_says_what_is_wrong(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    artifacts.raw_dir("t").mkdir(parents=True)
    documents = [TEXT[i * 37:i * 37 + 200 + 50 * (i % 9)] for i in range(300)]
    (artifacts.raw_dir("t") / "t.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in documents))
    params = _params(data__url="t.jsonl")
    record_gate_passes(params)
    tokenize.main(params)
    prepare.main(params)
    report, error = check(params)
    assert error is None and report["stats"]["split"] == "documents"
    largest = max(len(d) for d in documents)
    assert report["stats"]["largest_document_fraction"] == round(largest / len("".join(documents)), 6)
    meta = json.loads(artifacts.PREPARED_META.read_text())
    # shards that are not this corpus's split: val's share off by more than the largest document
    artifacts.PREPARED_META.write_text(json.dumps({**meta, "val_bytes": meta["val_bytes"] + 3 * largest}))
    report, error = check(params)
    assert failed(report) == ["val_byte_fraction"]
    assert "not data.val_fraction=0.1 within the largest document's share, " in error
    assert "the shards are not this corpus's documents split; run `folio prepare` again" in error
    # a meta.json of a folio that held documents out by count: told to prepare again
    artifacts.PREPARED_META.write_text(json.dumps({k: v for k, v in meta.items() if k != "largest_document_bytes"}))
    report, error = check(params)
    assert "data/prepared/meta.json predates splits by size; run `folio prepare` (or `dvc repro`)" in error
