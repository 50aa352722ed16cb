"""Stage validate — in: data/raw/<name>/, data/raw/<name>.json — params: validate.*, data.text_field —
out: reports/validation/corpus/ (corpus.json, GX Data Docs in docs/).

corpus.json records the digest of the corpus it judged (`corpus_sha256`): tokenize and prepare
read the verdict before any work and refuse a corpus that failed it or was never judged.

Runs the corpus suite (pipeline/gates/corpus_suite.py) over every file, streamed: a failed
expectation stops `dvc repro` here, before the tokenizer is built, naming each failure with its
observed value, the key to change and the file and line where it first fails.
"""

from __future__ import annotations

from folio.corpus import CorpusError
from pipeline import artifacts
from pipeline.artifacts import corpus
from pipeline.console import Progress
from pipeline.errors import StageError
from pipeline.gates import corpus_suite
from pipeline.params import Params


def main(params: Params) -> None:
    manifest = corpus.record(params.data)
    files = corpus.files(params.data, manifest)
    with Progress("validate (bytes of text)", total=manifest["bytes"], every=10.0) as bar:
        try:
            corpus_suite.check(params.validate_, files, params.data.text_field, manifest["bytes"],
                               subject=str(artifacts.raw_dir(params.data.name)), progress=bar.update,
                               digest=manifest["sha256"])
        except CorpusError as err:
            raise StageError(str(err)) from None
