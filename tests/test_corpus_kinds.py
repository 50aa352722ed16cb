"""Corpora of other kinds than a book, built on this machine (tests/built_corpora.py), through the
data stages in-process: Python source, whose character set the default char vocabulary refuses
(the failure names tokenizer.kind=bpe and presets/code.yaml) and presets/code.yaml passes; JSONL
documents of very different sizes, whose val split holds data.val_fraction of the bytes whatever
the sizes (documents are held out by size, not by count), the same for the same data.seed; Parquet
of short rows with presets/web.yaml; prose in a paragraph per line, whose failure names
presets/web.yaml. And folio.splits' document split on its own: its bounds, seeded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from folio import splits
from pipeline import artifacts, params as params_module
from pipeline.gates.corpus_suite import CorpusValidationError
from pipeline.stages import download, prepare, tokenize, validate as validate_stage, validate_tokens
from tests.built_corpora import python_corpus, short_rows, uneven_documents, write_jsonl, write_parquet
from tests.conftest import PROJECT

DATA_STAGES = (download, validate_stage, tokenize, prepare, validate_tokens)


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(url: str, preset: str | None = None, *overrides: str):
    """params.yaml (or a preset laid over it) naming the corpus as the README says."""
    path = PROJECT / "presets" / preset if preset else PROJECT / "params.yaml"
    return params_module.load(path, [f"data.url={url}", "data.name=c", "data.sha256=", *overrides])


def report(suite: str) -> dict:
    return json.loads(artifacts.validation_report(suite).read_text())


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_a_document_split_holds_val_fraction_of_the_bytes_less_than_its_smallest_train_document(seed):
    rng = np.random.default_rng(seed)
    sizes = np.concatenate([rng.lognormal(7, 2, 400).astype(np.int64) + 1, [10**6, 3 * 10**5]])
    plan = splits.document_plan(sizes, 0.1, seed)
    target, val = round(sizes.sum() * 0.1), sizes[plan.val_documents].sum()
    assert target - sizes[~plan.val_documents].min() < val <= target
    assert plan.largest_document_bytes == 10**6
    assert (splits.document_plan(sizes, 0.1, seed).val_documents == plan.val_documents).all()
    assert not (splits.document_plan(sizes, 0.1, seed + 10).val_documents == plan.val_documents).all()


def test_when_no_document_fits_val_is_the_smallest_one():
    plan = splits.document_plan([500, 300, 200, 200], 0.1, seed=0)  # 10% is 120 bytes
    assert plan.val_documents.sum() == 1 and plan.val_documents[2:].any()
    with pytest.raises(ValueError, match="at least 2 documents"):
        splits.document_plan([100], 0.1, seed=0)


def test_jsonl_documents_of_very_different_sizes_hold_val_fraction_of_the_bytes(project):
    documents = uneven_documents()
    write_jsonl(project / "uneven.jsonl", documents)
    sizes = np.array([len(text.encode()) for _, text in documents])
    assert sizes.max() > 0.1 * sizes.sum()  # one large document alone outweighs the val share
    p = load("uneven.jsonl")
    for stage in DATA_STAGES:
        stage.main(p)
    meta = json.loads(artifacts.PREPARED_META.read_text())
    total = meta["train_bytes"] + meta["val_bytes"]
    assert meta["split"] == "documents" and total == sizes.sum() and meta["largest_document_bytes"] == sizes.max()
    assert 0.1 * total - sizes.min() < meta["val_bytes"] <= 0.1 * total
    tokens = report("tokens")
    assert tokens["success"] and tokens["stats"]["val_byte_fraction"] == pytest.approx(0.1, abs=sizes.min() / total)
    (check,) = [e for e in tokens["expectations"] if e["name"] == "val_byte_fraction"]
    assert check["threshold"] == f"10.00% ± {sizes.max() / total:.2%} (the largest document's share)"
    val_shard = artifacts.prepared_shard(meta["shards"]["val"][0]["file"])
    first = (artifacts.PREPARED_META.read_bytes(), val_shard.read_bytes())
    prepare.main(p)  # the same seed cuts the same split
    assert (artifacts.PREPARED_META.read_bytes(), val_shard.read_bytes()) == first
    reseeded = load("uneven.jsonl", None, "data.seed=7")  # another seed, other val documents
    tokenize.main(reseeded)
    prepare.main(reseeded)
    assert val_shard.read_bytes() != first[1]


def test_python_source_fails_the_char_vocabulary_naming_bpe_and_the_code_preset_then_passes_with_it(project):
    python_corpus(project / "code.jsonl", max_bytes=1_700_000, every=16)  # 100 files and more: a document split
    p = load("code.jsonl")
    download.main(p)
    with pytest.raises(CorpusValidationError) as caught:
        validate_stage.main(p)
    (line,) = [line for line in str(caught.value).splitlines() if "distinct_chars" in line]
    assert "distinct characters, outside validate.min_distinct_chars=10 to validate.max_distinct_chars=1,000 " \
           "(tokenizer.kind=char): too many for a vocabulary of characters; use tokenizer.kind=bpe" in line
    assert line.endswith("of its lines): see presets/code.yaml") and "this looks like source code (9" in line
    coded = load("code.jsonl", "code.yaml")
    for stage in DATA_STAGES[1:]:
        stage.main(coded)
    corpus = report("corpus")
    assert corpus["success"] and corpus["tokenizer_kind"] == "bpe" and corpus["looks_like"] == "source code"
    (check,) = [e for e in corpus["expectations"] if e["name"] == "distinct_chars"]
    assert check["observed"] > 1_000 and check["threshold"] == "≥ 10 (no maximum for bpe)"
    assert "validate.max_distinct_chars, a char vocabulary's limit, is not applied" in check["description"]
    assert report("tokens")["success"]


def test_parquet_of_short_rows_passes_both_gates_with_the_web_preset(project):
    rows = short_rows()
    write_parquet(project / "rows.parquet", rows)
    p = load("rows.parquet", "web.yaml", "tokenizer.vocab_size=512")
    for stage in DATA_STAGES:
        stage.main(p)
    meta = json.loads(artifacts.PREPARED_META.read_text())
    assert report("corpus")["stats"]["documents"] == len(rows) and meta["split"] == "documents"
    assert report("tokens")["success"] and meta["tokenizer_kind"] == "bpe"
    assert abs(meta["val_bytes"] / (meta["train_bytes"] + meta["val_bytes"]) - 0.1) < 1e-3


def test_prose_in_a_paragraph_per_line_names_the_web_preset_which_passes_it(project):
    documents = [(f"page-{i}", " ".join(f"Sentence {j} of page {i} goes on about the river." for j in range(
        150 if i % 20 == 0 else 20)) + "\n") for i in range(200)]  # every 20th paragraph is 7,000+ characters
    write_jsonl(project / "pages.jsonl", documents)
    p = load("pages.jsonl")
    download.main(p)
    with pytest.raises(CorpusValidationError) as caught:
        validate_stage.main(p)
    (line,) = str(caught.value).splitlines()[1:]
    assert line.startswith("  - line_length: ") and line.endswith("; if this is text from the web, see presets/web.yaml")
    validate_stage.main(load("pages.jsonl", "web.yaml"))
    assert report("corpus")["success"] and report("corpus")["looks_like"] == "prose"
