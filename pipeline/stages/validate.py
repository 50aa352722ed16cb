"""Stage validate — in: data/raw/<name>/, data/raw/<name>.json — params: validate.*, data.text_field,
tokenizer.kind, data.sources — out: reports/validation/corpus/ (corpus.json, GX Data Docs in docs/).

corpus.json records the digest of the corpus it judged (`corpus_sha256`): tokenize and prepare
read the verdict before any work and refuse a corpus that failed it or was never judged.

Runs the corpus suite (pipeline/gates/corpus_suite.py) over every file, streamed: a failed
expectation stops `dvc repro` here, before the tokenizer is built, naming each failure with its
observed value, the key to change and the file and line where it first fails. The suite knows
the tokenizer: the character set bounds a char vocabulary only (validate.max_distinct_chars), and a
failure a preset would fix for source code or web text names the preset.

A mixture (data.sources) is gated source by source, each against the same thresholds: the first
source that fails stops the stage, named (corpus.json then holds its verdict); when all pass,
corpus.json holds the verdict on the mixture's digest, with each source's stats under "sources".
"""

from __future__ import annotations

from folio.corpus import CorpusError
from folio.fileio import write_json
from pipeline import artifacts
from pipeline.artifacts import corpus, validation
from pipeline.console import Progress
from pipeline.errors import StageError
from pipeline.gates import corpus_suite
from pipeline.params import Params


def main(params: Params) -> None:
    manifest = corpus.record(params.data)
    verdicts = {}
    for source, own in corpus.parts(manifest):
        files = corpus.files(params.data, own)
        subject = str(artifacts.raw_dir(params.data.name))
        if source is not None:
            subject = f"source {source['name']} ({subject}/{source['name']})"
        label = f"validate {source['name']} (bytes of text)" if source else "validate (bytes of text)"
        with Progress(label, total=own["bytes"], every=10.0) as bar:
            try:
                corpus_suite.check(params.validate_, files, params.data.text_field, own["bytes"],
                                   subject=subject, progress=bar.update,
                                   digest=manifest["sha256"], tokenizer_kind=params.tokenizer.kind)
            except CorpusError as err:
                raise StageError(f"{subject}: {err}" if source else str(err)) from None
        if source is not None:
            verdicts[source["name"]] = validation.read_verdict("corpus")
    if verdicts:  # every source passed: the verdict on the mixture, each source's checks and stats in it
        last = verdicts[manifest["sources"][-1]["name"]]
        write_json(artifacts.validation_report("corpus"), {
            "success": True, "corpus": str(artifacts.raw_dir(params.data.name)), "corpus_sha256": manifest["sha256"],
            "tokenizer_kind": last["tokenizer_kind"], "docs": last["docs"],
            "expectations": [{**e, "source": name} for name, v in verdicts.items() for e in v["expectations"]],
            "sources": {name: {"success": v["success"], "looks_like": v["looks_like"], "stats": v["stats"]}
                        for name, v in verdicts.items()}})
