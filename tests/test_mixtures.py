"""Weighted mixtures (data.sources): each source downloaded into its own folder with its digest in
the manifest, gated on its own (a failing source is named), split by data.val_fraction of its own
bytes and kept as one token range of each split (meta.json's "mixture"); the sampler draws each
source's share of an epoch's windows by weight (smaller sources repeat, larger ones are sampled),
the same batches for the same seed; the mixture is recorded in the manifest, the MLflow run and
the model card; a bad weight or a name given twice is one line."""

from __future__ import annotations

import collections
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from folio import data as folio_data
from folio.data import WindowSampler
from pipeline import artifacts
from pipeline.artifacts import corpus, prepared
from pipeline.errors import StageError
from pipeline.params import ParamsError, validate
from pipeline.stages import download, prepare, tokenize, train, validate as validate_stage, validate_tokens
from pipeline.tracking import model_card


def prose(tag: str, i: int, lines: int = 12) -> str:
    return "".join(f"{tag} {i}, line {j}: the quick brown fox number {i * 31 + j} jumps over it.\n"
                   for j in range(lines))


def build_sources(root: Path, b_lines: int = 12) -> dict[str, Path]:
    """Source a: a folder of two text files; source b: a JSONL of 40 documents (b_lines lines each)."""
    (root / "a").mkdir(parents=True)
    (root / "a/one.txt").write_text("".join(prose("Alpha", i) for i in range(10)), encoding="utf-8")
    (root / "a/two.txt").write_text("".join(prose("Aleph", i) for i in range(10)), encoding="utf-8")
    (root / "b.jsonl").write_text("".join(json.dumps({"text": prose("Beta", i, b_lines)}) + "\n"
                                          for i in range(40)), encoding="utf-8")
    return {"a": root / "a", "b": root / "b.jsonl"}


def params(sources: list[dict], **sections):
    tree = {"data": {"name": "mix", "url": "unused.txt", "sha256": "", "sources": sources},
            "model": {"block_size": 32, "n_layer": 1, "n_head": 2, "n_embd": 16},
            "train": {"max_iters": 3, "eval_interval": 3, "eval_iters": 1, "batch_size": 4, "compile": False},
            "validate": {"min_bytes": 1000}}
    for key, value in sections.items():
        section, leaf = key.split("__")
        tree.setdefault(section, {})[leaf] = value
    return validate(tree)


MIX = [{"name": "a", "url": "src/a", "weight": 3}, {"name": "b", "url": "src/b.jsonl", "weight": 1}]


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


@pytest.mark.parametrize("sources, expected", [
    ([{"name": "a", "url": "x.txt", "weight": 0}], "data.sources[0].weight: Input should be greater than 0"),
    ([{"name": "a", "url": "x.txt", "weight": -2}], "data.sources[0].weight: Input should be greater than 0"),
    ([{"name": "a", "url": "x.txt", "weight": 1}, {"name": "a", "url": "y.txt", "weight": 2}],
     "data.sources: two sources are named 'a'; give each source its own name"),
    ([{"url": "x.txt", "weight": 1}], "data.sources[0].name: Field required"),
])
def test_a_bad_weight_a_name_given_twice_or_a_missing_name_is_one_line(sources, expected):
    with pytest.raises(ParamsError) as err:
        params(sources)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_the_sampler_draws_each_source_by_weight_the_same_for_the_same_seed():
    tokens = np.arange(12_000) % 97
    sources = [("a", 0, 2_000, 3.0), ("b", 2_000, 12_000, 1.0)]  # a: small, repeats; b: large, sampled
    sampler = WindowSampler(tokens, 16, 4, seed=7, sources=sources)
    for epoch in (0, 1):
        first, n = sum(sampler.windows_in_epoch(e) for e in range(epoch)), sampler.windows_in_epoch(epoch)
        drawn = collections.Counter(sampler.source_of(d) for d in range(first, first + n))
        assert [drawn[0], drawn[1]] == sampler.shares(n) and abs(drawn[0] / n - 0.75) <= 1 / n
        starts = collections.Counter(int(sampler.window(d)[0]) for d in range(first, first + n))
        assert max(starts.values()) > 1  # a's windows (fewer than its share) repeat ...
    b_windows = {tuple(sampler.window(d)) for d in range(n) if sampler.source_of(d) == 1}
    assert len(b_windows) < (10_000 - 16) // 16  # ... b's (more than its share) are a sample
    again, other = (WindowSampler(tokens, 16, 4, seed=s, sources=sources) for s in (7, 8))
    batches = [torch_pair(sampler.batch(step)) for step in range(5)]
    assert batches == [torch_pair(again.batch(step)) for step in range(5)]
    assert batches != [torch_pair(other.batch(step)) for step in range(5)]
    # without sources nothing changes: the draws of one source are the draws of a plain split
    plain, one = WindowSampler(tokens, 16, 4, seed=7), WindowSampler(tokens, 16, 4, seed=7,
                                                                     sources=[("a", 0, 12_000, 1.0)])
    assert [torch_pair(plain.batch(s)) for s in range(3)] == [torch_pair(one.batch(s)) for s in range(3)]


def torch_pair(batch) -> tuple:
    return tuple(t.tolist() for t in batch)


def test_a_source_shorter_than_a_window_is_named():
    with pytest.raises(folio_data.SplitTooShort, match="source 'b'"):
        WindowSampler(np.arange(1_000) % 50, 32, 4, seed=0, sources=[("a", 0, 990, 1.0), ("b", 990, 1_000, 1.0)])


def test_a_mixture_is_downloaded_gated_split_trained_and_recorded(project, monkeypatch):
    paths = build_sources(project / "src")
    p = params(MIX)
    download.main(p)
    manifest = json.loads(artifacts.raw_record("mix").read_text())
    assert ([(s["name"], s["url"], s["weight"]) for s in manifest["sources"]]
            == [("a", "src/a", 3), ("b", "src/b.jsonl", 1)])
    b_digest = hashlib.sha256(paths["b"].read_bytes()).hexdigest()
    assert manifest["sources"][1]["sha256"] == b_digest and manifest["sources"][0]["documents"] == 2
    assert {f["path"]: f["source"] for f in manifest["files"]} == {"a/one.txt": "a", "a/two.txt": "a", "b/b.jsonl": "b"}
    assert (project / "data/raw/mix/b/b.jsonl").read_bytes() == paths["b"].read_bytes()

    validate_stage.main(p)
    report = json.loads(artifacts.validation_report("corpus").read_text())
    assert report["success"] and report["corpus_sha256"] == manifest["sha256"] and set(report["sources"]) == {"a", "b"}
    assert {e["source"] for e in report["expectations"]} == {"a", "b"} and all(e["passed"] for e in report["expectations"])
    for stage in (tokenize, prepare, validate_tokens):
        stage.main(p)
    meta = prepared.read_meta()
    mixture = {m["name"]: m for m in meta["mixture"]}
    assert mixture["a"]["train"][0] == 0 and mixture["a"]["train"][1] == mixture["b"]["train"][0]
    assert mixture["b"]["train"][1] == meta["train_tokens"] and mixture["b"]["val"][1] == meta["val_tokens"]
    # each source holds data.val_fraction of its own bytes (char tokens: a token a byte, here ASCII)
    for name in ("a", "b"):
        own = next(s for s in manifest["sources"] if s["name"] == name)
        val = mixture[name]["val"][1] - mixture[name]["val"][0]
        assert abs(val / own["bytes"] - 0.1) < 0.04, (name, val, own["bytes"])

    seen = []

    class Recording(WindowSampler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(kwargs.get("sources"))

    monkeypatch.setattr("folio.train.WindowSampler", Recording)
    train.main(p)
    ranges = [("a", *mixture["a"]["train"], 3.0), ("b", *mixture["b"]["train"], 1.0)]
    assert seen[0] == ranges and seen[1:] == [None, None]  # the training sampler only; eval is plain

    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("folio").experiment_id])[0]
    for name, weight in (("a", "3.0"), ("b", "1.0")):
        own = next(s for s in manifest["sources"] if s["name"] == name)
        assert run.data.params[f"data.source.{name}.weight"] == weight
        assert run.data.params[f"data.source.{name}.sha256"] == own["sha256"]
        assert run.data.params[f"data.source.{name}.url"] == own["url"]
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"mix/a", "mix/b"} and inputs["mix/b"].dataset.digest == b_digest[:16]
    assert run.data.tags["data.sha256"] == manifest["sha256"]

    rows = model_card.mixture_rows(manifest["sources"], meta)
    card = model_card._data_section(model_card.CardFacts(
        "m", "1", "r", "n", {"name": "mix", "url": "unused.txt", "sha256": manifest["sha256"], "size_bytes": 1,
                             "val_fraction": 0.1, "sources": rows},
        {"kind": "char", "vocab_size": 40, "bytes_per_token": 1.0}, {}, {}, {}, [], "", {}))
    assert f"| a | src/a | `{manifest['sources'][0]['sha256'][:16]}` | 3 | 75.0% |" in card
    assert f"| b | src/b.jsonl | `{b_digest[:16]}` | 1 | 25.0% |" in card

    # the weights drawn by: over an epoch of the prepared train split, 3:1
    sampler = WindowSampler(prepared.load_split("train", meta), 32, 4, seed=1, sources=ranges)
    n = sampler.windows_in_epoch(0)
    drawn = collections.Counter(sampler.source_of(d) for d in range(n))
    assert abs(drawn[0] / n - 0.75) <= 1 / n

    # other weights than the ones downloaded and prepared: one line, naming what to run
    with pytest.raises(StageError, match=r"not for data.sources as set now; run `folio download`"):
        train.main(params([{**MIX[0], "weight": 1}, MIX[1]]))


def test_a_failing_source_is_named_by_the_gate(project):
    build_sources(project / "src", b_lines=1)  # b: 40 one-line documents, under validate.min_lines
    p = params(MIX)
    download.main(p)
    with pytest.raises(StageError) as err:
        validate_stage.main(p)
    assert str(err.value).startswith("source b (data/raw/mix/b) failed") and "min_lines" in str(err.value)
    assert json.loads(artifacts.validation_report("corpus").read_text())["corpus"] == "source b (data/raw/mix/b)"
    with pytest.raises(StageError, match="failed the corpus gate"):
        tokenize.main(p)


def test_a_source_of_another_digest_than_its_sha256_is_named(project):
    build_sources(project / "src")
    with pytest.raises(StageError) as err:
        download.main(params([MIX[0], {**MIX[1], "sha256": "0" * 64}]))
    message = str(err.value)
    assert "sha256 mismatch for src/b.jsonl" in message and "data.sources[1].sha256" in message
    assert "\n" not in message and not artifacts.raw_record("mix").exists()


def test_a_mixture_manifest_is_refused_for_a_single_source(project):
    build_sources(project / "src")
    download.main(params(MIX))
    single = validate({"data": {"name": "mix", "url": "src/b.jsonl", "sha256": ""}})
    with pytest.raises(StageError, match=r"data/raw/mix.json was downloaded for a \(src/a, weight 3\), b"):
        corpus.record(single.data)


def test_the_readme_and_docs_mixture_examples_are_valid_params():
    import re

    import yaml

    from tests.conftest import PROJECT

    for page, after in (("README.md", "**A mixture of corpora.**"), ("docs/data.md", "## Mixtures of sources")):
        text = (PROJECT / page).read_text(encoding="utf-8")
        block = re.search(r"```yaml\n(.*?)```", text[text.index(after):], re.S).group(1)
        data = validate(yaml.safe_load(block)).data
        assert [(s.name, s.weight) for s in data.sources] == [("books", 3), ("code", 1)], page
