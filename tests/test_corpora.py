"""Corpora of any shape: a directory or a glob of .txt, .jsonl and .parquet files, each maybe .gz or
.zst, goes through download (a manifest of every file, naming the files of other formats it
skipped), validate, tokenize (a bounded seeded sample), prepare (parallel, sharded, the same shards
for any number of workers, end-of-text between documents, a seeded document split holding
val_fraction of the bytes) and train/evaluate on memory-mapped shards; every bad input stops the
earliest stage that can see it with one line naming the file, and nothing after it runs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from folio.tokenizers import load_tokenizer
from pipeline import artifacts
from pipeline.errors import StageError
from pipeline.params import validate
from pipeline.stages import download, evaluate, prepare, tokenize, train, validate as validate_stage, validate_tokens
from tests.conftest import record_gate_passes


def document(i: int) -> str:
    return "".join(f"Document {i}, line {j}: the quick brown fox number {i * 31 + j} jumps.\n" for j in range(12))


def write_corpus(root: Path, n: int = 240) -> list[str]:
    """n documents over five files of five formats; returns the documents in the order folio reads them."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    docs = [document(i) for i in range(n)]
    parts = np.array_split(np.arange(2, n), 3)
    (root / "books").mkdir(parents=True)
    (root / "books/a.txt").write_text(docs[0], encoding="utf-8")  # a text file is one document
    with gzip.open(root / "books/b.txt.gz", "wt", encoding="utf-8") as f:
        f.write(docs[1])
    (root / "c.jsonl").write_text("".join(json.dumps({"text": docs[i], "id": int(i)}) + "\n" for i in parts[0]))
    (root / "d.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(
        "".join(json.dumps({"text": docs[i]}) + "\n" for i in parts[1]).encode()))
    pq.write_table(pa.table({"text": [docs[i] for i in parts[2]]}), root / "e.parquet")
    (root / "notes.md").write_text("not a corpus format: skipped\n")
    return docs


def params(url: str, **sections):
    tree = {"data": {"name": "c", "url": url, "sha256": ""}, "model": {"block_size": 32, "n_layer": 1,
            "n_head": 2, "n_embd": 16}, "train": {"max_iters": 4, "eval_interval": 2, "eval_iters": 1,
            "batch_size": 4, "compile": False}, "validate": {"min_bytes": 1000}}
    for key, value in sections.items():
        section, leaf = key.split("__")
        tree.setdefault(section, {})[leaf] = value
    return validate(tree)


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


def test_a_directory_of_every_format_is_manifested_split_by_document_and_trained_on(project):
    docs = write_corpus(project / "corpus")
    p = params("corpus", tokenizer__kind="bpe", tokenizer__vocab_size=300)
    download.main(p)
    manifest = json.loads(artifacts.raw_record("c").read_text())
    assert [f["path"] for f in manifest["files"]] == ["books/a.txt", "books/b.txt.gz", "c.jsonl",
                                                      "d.jsonl.zst", "e.parquet"]
    assert [f["documents"] for f in manifest["files"]] == [1, 1, 80, 79, 79] and manifest["documents"] == 240
    assert (project / "data/raw/c/books/b.txt.gz").read_bytes() == (project / "corpus/books/b.txt.gz").read_bytes()
    for stage in (validate_stage, tokenize, prepare, validate_tokens, train, evaluate):
        stage.main(p)
    meta = json.loads(artifacts.PREPARED_META.read_text())
    assert meta["split"] == "documents" and meta["corpus_sha256"] == manifest["sha256"]
    assert [s["sha256"] for s in meta["sources"]] == [f["sha256"] for f in manifest["files"]]
    tokenizer = load_tokenizer(artifacts.TOKENIZER_DIR)
    eot = tokenizer.encoding.eot_token
    ids = {s: np.concatenate([np.fromfile(artifacts.prepared_shard(f["file"]), np.uint16)
                              for f in meta["shards"][s]]) for s in ("train", "val")}
    # val holds whole documents, 10% of the bytes less than one document, separated by end-of-text;
    # none at the ends
    val_docs = tokenizer.decode(ids["val"]).split("<|endoftext|>")
    assert set(val_docs) <= set(docs) and ids["val"][0] != eot != ids["val"][-1]
    total, smallest = sum(len(d.encode()) for d in docs), min(len(d.encode()) for d in docs)
    assert meta["val_bytes"] == sum(len(d.encode()) for d in val_docs)
    assert 0.1 * total - smallest < meta["val_bytes"] <= 0.1 * total and len(val_docs) in (23, 24, 25)
    train_docs = tokenizer.decode(ids["train"]).split("<|endoftext|>")
    assert sorted(train_docs + val_docs) == sorted(docs)
    metrics = json.loads(artifacts.METRICS.read_text())["val"]
    assert np.isfinite(metrics["bits_per_byte"]) and metrics["subset"] is False


def test_a_directory_names_the_files_it_skips_in_one_log_line_and_the_manifest(project, capsys):
    write_corpus(project / "corpus")  # with notes.md
    (project / "corpus/LICENSE").write_text("MIT\n")
    (project / "corpus/img").mkdir()
    for i in range(5):
        (project / f"corpus/img/{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (project / "corpus/.git").mkdir()  # hidden: skipped without a word
    (project / "corpus/.git/config.txt").write_text("[core]\n")
    (project / "corpus/.DS_Store").write_bytes(b"\0\0")
    download.main(params("corpus"))
    manifest = json.loads(artifacts.raw_record("c").read_text())
    assert manifest["skipped"] == ["LICENSE", *(f"img/{i}.png" for i in range(5)), "notes.md"]
    assert len(manifest["files"]) == 5
    said = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert said == ["skipped 7 files of no known format (.txt, .jsonl or .parquet, maybe .gz or .zst) in corpus: "
                    "LICENSE, img/0.png, img/1.png, img/2.png, img/3.png and 2 more; all are listed in data/raw/c.json"]
    for path in ["LICENSE", "notes.md", *(f"img/{i}.png" for i in range(5))]:
        (project / "corpus" / path).unlink()
    download.main(params("corpus"))  # nothing to skip: an empty list, and no word
    assert json.loads(artifacts.raw_record("c").read_text())["skipped"] == []
    assert "skipped" not in capsys.readouterr().err


def test_a_glob_picks_its_matches_and_a_seed_picks_other_val_documents(project):
    write_corpus(project / "corpus")
    p = params("corpus/**/*.jsonl*")
    download.main(p)
    assert [f["path"] for f in json.loads(artifacts.raw_record("c").read_text())["files"]] == ["c.jsonl", "d.jsonl.zst"]
    from pipeline.artifacts import corpus

    plans = [corpus.split_plan(params("corpus/**/*.jsonl*", data__seed=s).data).val_documents for s in (1, 1, 2)]
    assert (plans[0] == plans[1]).all() and not (plans[0] == plans[2]).all()
    sizes = np.array([len(document(i).encode()) for i in range(2, 161)])  # c.jsonl and d.jsonl.zst
    for plan in plans:  # whole documents holding 10% of the bytes, less than one document
        assert 0.1 * sizes.sum() - sizes.min() < sizes[plan].sum() <= 0.1 * sizes.sum()


def _shards(meta: dict) -> dict:
    return {f["file"]: artifacts.prepared_shard(f["file"]).read_bytes() for s in ("train", "val") for f in meta["shards"][s]}


def test_prepare_writes_the_same_shards_with_one_or_two_workers(project, monkeypatch):
    write_corpus(project / "corpus", n=400)
    p = params("corpus", prepare__shard_tokens=20_000)
    download.main(p)
    record_gate_passes(p)
    tokenize.main(p)
    prepare.main(p)  # a small corpus: encoded in this process
    inline = _shards(json.loads(artifacts.PREPARED_META.read_text()))
    assert len(inline) > 2  # train spans several shards
    monkeypatch.setattr(prepare, "INLINE_BYTES", 0)
    monkeypatch.setattr(prepare, "BATCH_CHARS", 10_000)
    prepare.main(params("corpus", prepare__shard_tokens=20_000, prepare__workers=2))
    assert _shards(json.loads(artifacts.PREPARED_META.read_text())) == inline
    validate_tokens.main(p)
    train.main(p)  # windows from memory-mapped shards


def test_the_tokenizer_learns_from_a_bounded_seeded_sample(project):
    write_corpus(project / "corpus", n=400)
    download.main(params("corpus"))
    from pipeline.stages.tokenize import train_sample
    from pipeline.artifacts import corpus

    small = params("corpus", tokenizer__kind="bpe", tokenizer__max_train_chars=20_000)
    manifest = corpus.record(small.data)
    sample = "".join(train_sample(small, manifest))
    assert 0 < len(sample) <= 20_000 and sample == "".join(train_sample(small, manifest))
    assert sample != "".join(train_sample(params("corpus", tokenizer__max_train_chars=20_000, data__seed=5), manifest))


def test_a_single_text_file_keeps_the_tail_split(project):
    (project / "one.txt").write_text("".join(document(i) for i in range(30)))
    p = params("one.txt")
    download.main(p)
    record_gate_passes(p)
    tokenize.main(p)
    prepare.main(p)
    meta = json.loads(artifacts.PREPARED_META.read_text())
    text = (project / "one.txt").read_text()
    assert meta["split"] == "tail" and meta["val_chars"] == meta["val_bytes"] == round(len(text) * 0.1)  # ASCII
    assert (project / "data/raw/c/c.txt").read_text() == text


def _fails(stage, p, *fragments) -> None:
    with pytest.raises(StageError) as caught:
        stage.main(p)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message


def test_an_empty_directory_and_a_glob_matching_nothing_stop_download(project):
    (project / "empty").mkdir()
    _fails(download, params("empty"), "data.url=empty", "holds no .txt, .jsonl or .parquet file")
    _fails(download, params("empty/*.jsonl"), "the glob matches no file")
    (project / "empty/README.md").write_text("a corpus, one day\n")
    _fails(download, params("empty"), "holds no .txt, .jsonl or .parquet file (maybe .gz or .zst); it holds 1 "
           "of other formats (README.md); check the path or set data.format")
    assert not artifacts.raw_dir("c").exists()


def test_a_truncated_gzip_of_records_stops_download_naming_it(project):
    (project / "corpus").mkdir()
    data = gzip.compress(b"".join(json.dumps({"text": document(i)}).encode() + b"\n" for i in range(50)))
    (project / "corpus/good.jsonl").write_text(json.dumps({"text": document(1)}) + "\n")
    (project / "corpus/bad.jsonl.gz").write_bytes(data[: len(data) // 2])
    _fails(download, params("corpus"), "bad.jsonl.gz", "cannot decompress", "truncated or corrupt")
    assert not artifacts.raw_dir("c").exists() and not artifacts.raw_record("c").exists()


@pytest.mark.parametrize("case", ["broken_jsonl", "parquet_without_field", "truncated_txt_gz", "not_text_field"])
def test_a_bad_shard_among_good_ones_stops_validate_naming_it(project, case):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_corpus(project / "corpus")
    if case == "broken_jsonl":
        (project / "corpus/f.jsonl").write_text(json.dumps({"text": "fine"}) + "\n{\"text\": \"cut off\n")
        expected = ("f.jsonl line 2", "not a JSON record")
    elif case == "parquet_without_field":
        pq.write_table(pa.table({"body": ["a text"]}), project / "corpus/f.parquet")
        expected = ("f.parquet", "no column 'text' (found: body)", "data.text_field")
    elif case == "truncated_txt_gz":
        data = gzip.compress(document(3).encode() * 50)
        (project / "corpus/f.txt.gz").write_bytes(data[: len(data) // 2])
        expected = ("f.txt.gz", "cannot decompress")
    else:
        (project / "corpus/f.jsonl").write_text(json.dumps({"text": 3}) + "\n")
        expected = ("f.jsonl line 1", "field 'text' holds int, not text")
    p = params("corpus")
    download.main(p)
    _fails(validate_stage, p, *expected)
    assert not artifacts.validation_report("corpus").exists()  # nothing downstream can start


def test_a_file_changed_after_download_is_named(project):
    write_corpus(project / "corpus")
    p = params("corpus")
    download.main(p)
    (project / "data/raw/c/c.jsonl").write_text("{}\n")
    _fails(validate_stage, p, "data/raw/c/c.jsonl is missing or changed since download", "folio download")


def test_a_pinned_corpus_of_several_files_checks_the_manifest_digest(project):
    write_corpus(project / "corpus")
    download.main(params("corpus"))
    digest = json.loads(artifacts.raw_record("c").read_text())["sha256"]
    download.main(params("corpus", data__sha256=digest))  # verified: nothing to do
    (project / "corpus/c.jsonl").write_text(json.dumps({"text": "changed"}) + "\n")
    artifacts.raw_record("c").unlink()  # as if data/raw/ were fresh: the source is fetched again
    _fails(download, params("corpus", data__sha256=digest), "sha256 mismatch", digest)
    assert (project / "data/raw/c/c.jsonl").read_text() != (project / "corpus/c.jsonl").read_text()  # kept


def test_duplicates_are_estimated_over_a_hash_sample_past_the_exact_budget(project, monkeypatch):
    from pipeline.gates import corpus_suite

    lines = [f"line {i % 700} of a corpus with repeats\n" for i in range(3000)]
    (project / "dup.txt").write_text("".join(lines))
    p = params("dup.txt", validate__max_duplicate_fraction=1.0)
    download.main(p)
    validate_stage.main(p)
    exact = json.loads(artifacts.validation_report("corpus").read_text())["stats"]
    monkeypatch.setattr(corpus_suite, "DUPLICATES_EXACT_BYTES", 20_000)  # the corpus is ~110 kB: k = 6
    reports = []
    for _ in range(2):
        validate_stage.main(p)
        reports.append(artifacts.validation_report("corpus").read_text())
    sampled = json.loads(reports[0])["stats"]
    assert reports[0] == reports[1]  # the sample is the same every run
    assert exact["duplicates_sampled"] == "exact" and sampled["duplicates_sampled"] == "1/6 of distinct lines (by hash)"
    assert sampled["duplicate_fraction"] == pytest.approx(exact["duplicate_fraction"], abs=0.05)


def _through_train(p) -> None:
    """download, tokenize, prepare and train, the gates' verdicts recorded as passes."""
    download.main(p)
    record_gate_passes(p)
    tokenize.main(p)
    prepare.main(p)
    record_gate_passes(p)
    train.main(p)


def test_evaluate_scores_a_fixed_subset_when_the_val_split_is_larger_than_max_tokens(project):
    write_corpus(project / "corpus")
    p = params("corpus", evaluate__max_tokens=256)
    _through_train(p)
    results = []
    for _ in range(2):
        evaluate.main(p)
        results.append(json.loads(artifacts.METRICS.read_text())["val"])
    assert results[0] == results[1] and results[0]["subset"] is True
    assert results[0]["tokens"] == 256 and np.isfinite(results[0]["bits_per_byte"])
    evaluate.main(params("corpus", evaluate__max_tokens=None))
    whole = json.loads(artifacts.METRICS.read_text())["val"]
    assert whole["subset"] is False and whole["tokens"] > 256


def test_bits_per_byte_over_a_val_split_of_several_shards_counts_only_the_predicted_text(project):
    """No window spans two shards, so the first token of every shard is never predicted: its text
    is not in the byte count (it used to be, for all but the first shard). BPE: its end-of-text
    token between documents stands for no text, so counting each predicted target's bytes must
    give the same total."""
    from folio.evaluate import bits_per_byte, split_loss, text_bytes
    from pipeline.artifacts import models, prepared, tokenizer as tokenizer_files

    write_corpus(project / "corpus")
    p = params("corpus", prepare__shard_tokens=1024, evaluate__max_tokens=None, tokenizer__kind="bpe",
               tokenizer__vocab_size=300)
    _through_train(p)
    evaluate.main(p)
    val = prepared.load_split("val")
    assert len(val.lengths) > 2
    tokenizer = tokenizer_files.load()
    _, model = models.load_model(tokenizer)
    counted = split_loss(model, val, 32, target_bytes=text_bytes(tokenizer))
    metrics = json.loads(artifacts.METRICS.read_text())["val"]
    assert metrics["tokens"] == counted["n_tokens"] == len(val) - len(val.lengths)
    assert metrics["bits_per_byte"] == pytest.approx(
        bits_per_byte(counted["loss"], counted["n_tokens"], counted["n_bytes"]), rel=1e-9)


def test_another_split_of_the_corpus_is_another_run(project):
    """data.seed picks other val documents: the run in models/ is not resumed on them but moved aside."""
    write_corpus(project / "corpus")
    p = params("corpus")
    _through_train(p)
    reseeded = params("corpus", data__seed=2)
    tokenize.main(reseeded)  # the tokenizer records the split it was built from: prepare checks
    prepare.main(reseeded)
    record_gate_passes(reseeded)
    train.main(reseeded)
    moved = list(artifacts.PREVIOUS_RUNS.iterdir())
    assert len(moved) == 1 and (moved[0] / "best.pt").exists()
    assert "prepared data" in json.loads((moved[0] / "run.json").read_text())["identity"]


def test_a_workspace_from_before_sharded_corpora_is_told_to_rerun(project):
    artifacts.raw_dir("c").mkdir(parents=True)
    (artifacts.raw_dir("c") / "c.txt").write_text(document(0) * 20)
    artifacts.raw_record("c").write_text(json.dumps({"sha256": "0" * 64, "bytes": 1, "source": "x", "pinned": False}))
    _fails(validate_stage, params("x"), "data/raw/c.json is not a manifest of this folio's format", "folio download")
    artifacts.PREPARED_META.parent.mkdir(parents=True)
    artifacts.PREPARED_META.write_text(json.dumps({"dtype": "uint16", "train_tokens": 5}))
    from pipeline.artifacts import prepared

    with pytest.raises(StageError, match="names no shards .*; run `folio prepare`"):
        prepared.load_split("train")
