"""The README's "Your own corpus", on a corpus of Python source built on this machine, passes on the
first try: params.yaml names the corpus (data.name, data.url, an empty data.sha256) and
`dvc exp run $(folio preset presets/code.yaml)` runs download, both gates, tokenize, prepare and
validate_tokens in a throwaway git copy of the project (training is the same on any tokens). The
corpus is a JSONL of standard library files and tables of 1,200 ideographs: over 1,000 distinct
characters, which the default char vocabulary refuses, in files of very different sizes (a few
bytes to 100 kB), held out by size."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests import pipeline_project as pp
from tests.built_corpora import python_corpus
from tests.conftest import PROJECT

pytestmark = pytest.mark.e2e


def test_the_readme_commands_take_a_code_corpus_through_the_gates_on_the_first_try(tmp_path):
    root = pp.make_project(tmp_path / "folio", "corpora/mycode/")
    python_corpus(root / "corpora/mycode/code.jsonl", max_bytes=1_700_000, every=16)
    shutil.copytree(PROJECT / "presets", root / "presets")
    pp.set_params(root, {"data": {"name": "mycode", "sha256": ""}})  # the README's yaml
    pp.git(root, "add", "-A")
    pp.git(root, "commit", "-q", "-m", "my corpus")

    preset = pp.run(root, "folio", "preset", "presets/code.yaml").split()
    output = pp.run(root, "dvc", "exp", "run", *preset, "validate_tokens")

    assert pp.ran(output) == {"download", "validate", "tokenize", "prepare", "validate_tokens"}
    laid = yaml.safe_load((root / "params.yaml").read_text())  # the preset's keys stay for `dvc repro`
    assert (laid["tokenizer"]["kind"], laid["validate"]["max_markup_line_fraction"]) == ("bpe", 0.05)
    corpus, tokens = (json.loads((root / f"reports/validation/{s}/{s}.json").read_text()) for s in ("corpus", "tokens"))
    assert corpus["success"] and tokens["success"]
    assert corpus["stats"]["distinct_characters"] > 1_000 and corpus["looks_like"] == "source code"
    (distinct,) = [e for e in corpus["expectations"] if e["name"] == "distinct_chars"]
    assert distinct["threshold"] == "≥ 10 (no maximum for bpe)"
    meta = json.loads((root / "data/prepared/meta.json").read_text())
    assert meta["tokenizer_kind"] == "bpe" and meta["vocab_size"] == 4096 and meta["split"] == "documents"
    assert tokens["stats"]["largest_document_fraction"] > 0.05  # one file is half the val share ...
    assert 0.099 < tokens["stats"]["val_byte_fraction"] <= 0.1  # ... and small files fill it up
