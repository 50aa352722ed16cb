"""The data gates hold when stages run one by one (`folio <stage>`), not only under `dvc repro`:
each stage checks, before any work, that what it reads passed its gate and belongs together, and
refuses in one line naming the stage to run —
- tokenize: a corpus the corpus gate never judged, or failed;
- prepare: a tokenizer built from another corpus or another split of it;
- train and evaluate: tokens the token gate never judged, or encoded by another tokenizer than the
  one in data/tokenizer/ (it used to end in `IndexError: index out of range in self`, in every
  DDP rank);
- an empty compressed corpus: one line at every stage after download, never a traceback or
  empty shards."""

from __future__ import annotations

import gzip
import shutil

import pytest

from pipeline import artifacts
from tests import pipeline_project as pp
from tests.conftest import PROJECT
from tests.test_errors import assert_one_line_error, folio


@pytest.fixture
def project(prepared_project, tmp_path):
    """A copy of the project whose data stages ran under `dvc repro` (every gate passed)."""
    return pp.clone(prepared_project, tmp_path / "folio")


def test_tokenize_refuses_a_corpus_the_gate_never_judged(project):
    (project / artifacts.validation_report("corpus")).unlink()
    code, output = folio(project, "tokenize")
    assert_one_line_error(code, output, "tokenize", "has not been through the corpus gate",
                          "run `folio validate`")


def test_tokenize_refuses_a_corpus_that_failed_the_gate(project):
    tokenizer = (project / artifacts.TOKENIZER_FILE).read_bytes()
    code, output = folio(project, "validate", "--set", "validate.min_bytes=100000000")
    assert code == 1 and "min_bytes" in output
    code, output = folio(project, "tokenize")
    assert_one_line_error(code, output, "tokenize", "failed the corpus gate (min_bytes;",
                          "run `folio validate` again")
    assert (project / artifacts.TOKENIZER_FILE).read_bytes() == tokenizer  # nothing was rebuilt


def test_prepare_refuses_a_tokenizer_built_from_another_split(project):
    code, output = folio(project, "tokenize", "--set", "data.val_fraction=0.2")
    assert code == 0, output
    meta = (project / artifacts.PREPARED_META).read_bytes()
    code, output = folio(project, "prepare")
    assert_one_line_error(code, output, "prepare", "data/tokenizer/ was not built from this corpus and split",
                          "data.val_fraction 0.2 -> 0.1", "run `folio tokenize`")
    assert (project / artifacts.PREPARED_META).read_bytes() == meta


@pytest.mark.parametrize("nproc", [1, 2])
def test_train_refuses_tokens_encoded_by_another_tokenizer(project, nproc):
    code, output = folio(project, "tokenize", "--set", "tokenizer.kind=bpe", "--set", "tokenizer.vocab_size=300")
    assert code == 0, output
    code, output = folio(project, "train", "--set", f"train.nproc={nproc}")
    assert_one_line_error(code, output, "train", "data/prepared/ was encoded by tokenizer char",
                          "data/tokenizer/ holds bpe", "run `folio prepare` and `folio validate_tokens`")
    assert not (project / artifacts.MODELS).exists()  # refused before any work


def test_train_and_evaluate_refuse_tokens_the_gate_never_judged(project):
    code, output = folio(project, "train")
    assert code == 0, output
    (project / artifacts.validation_report("tokens")).unlink()
    for stage in ("train", "evaluate"):
        code, output = folio(project, stage)
        assert_one_line_error(code, output, stage, "has not been through the tokens gate",
                              "run `folio validate_tokens`")


def test_an_empty_compressed_corpus_is_one_line_at_every_stage(tmp_path):
    """download accepts the file (it cannot know what is inside without reading it all); validate
    fails it; tokenize and prepare refuse it in one line — no traceback, no empty shards."""
    project = tmp_path / "folio"
    project.mkdir()
    shutil.copyfile(PROJECT / "params.yaml", project / "params.yaml")
    with gzip.open(tmp_path / "empty.txt.gz", "wb"):
        pass
    pp.set_params(project, {**pp.TINY, "data": {"name": "empty", "url": str(tmp_path / "empty.txt.gz"),
                                                "sha256": ""}})
    code, output = folio(project, "download")
    assert code == 0, output
    code, output = folio(project, "validate")  # the gate's own report: a line per failed check
    assert code == 1 and "Traceback" not in output and "the corpus is 0 bytes, fewer than validate.min_bytes" in output
    for stage in ("tokenize", "prepare"):
        code, output = folio(project, stage)
        assert_one_line_error(code, output, stage, "failed the corpus gate", "run `folio validate` again")
    assert not (project / artifacts.PREPARED_DIR).exists()
