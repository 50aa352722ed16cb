"""`folio promote`: move an alias behind the like-for-like gate (pipeline/tracking/registry.py).

When the holder was never scored on the challenger's measure over the challenger's text, it is
scored here and then: loaded by alias from the registry, on train.device, and scored by
folio.evaluate.score_text, the code the evaluate stage scores a suite with (for val, the same
measure as evaluate's whole-split score: tests/test_suites.py checks they agree). The text must be
the very text the challenger was scored on, found by its digest:

  val       the val split this workspace's corpus and data.* params give (data/raw/, as prepare
            cuts it); a val score over a subset (evaluate.max_tokens) cannot be rescored
  suite     the suite of that name in evaluate.suites (pipeline/suites.py)
  harness   the task, run by lm-eval with evaluate.harness's include_path and limit

Text that is not there, or is there with another digest, is refused in one line naming both
digests. After a move from a holder, the side-by-side report (`folio compare`) is written to
reports/compare/ and attached to the challenger's version.
"""

from __future__ import annotations

from pathlib import Path

from folio.device import pick_device
from folio.evaluate import TextDigest, score_text
from pipeline.artifacts import corpus
from pipeline.console import log
from pipeline.errors import StageError
from pipeline.measures import Measure
from pipeline.params import Params
from pipeline.tracking import registry
from pipeline.tracking.registry import RegistryError

REPORT_DIR = Path("reports/compare")


def _unavailable(measure: Measure, digest: str, have: str | None, why: str) -> RegistryError:
    return RegistryError(f"cannot score the holder on {measure.name}: the challenger's text has digest "
                         f"{digest}, but {why}{f' (digest {have})' if have else ''}; {_what_to_do(measure)}, "
                         "or promote with --force")


def _what_to_do(measure: Measure) -> str:
    if measure.kind == "val":
        return ("run promote in a checkout of the challenger's commit with its data (`dvc pull` or "
                "`dvc repro download`)")
    if measure.kind == "suite":
        return f"put suite {measure.source} back as the challenger was scored on it (evaluate.suites)"
    return f"make task {measure.source} as the challenger was scored on it (evaluate.harness)"


def val_documents(params: Params, measure: Measure, digest: str, challenger) -> list[str]:
    """This workspace's val split, if its text is the challenger's."""
    if challenger.tags.get("val_subset") == "True":
        raise RegistryError(
            f"cannot score the holder on val {measure.metric}: version {challenger.version} was scored on a "
            f"subset of its val split (evaluate.max_tokens; digest {digest}), which another model cannot be "
            "scored on; evaluate it on the whole split (evaluate.max_tokens empty) or on a suite "
            "(registry.metric=suite:<name>.<metric>), or promote with --force")
    documents, text = [], TextDigest()
    try:
        for document in corpus.split_documents(params.data, "val"):
            documents.append(document)
            text.next_document()
            text.add(document)
    except StageError as err:  # no corpus here: data/raw missing or changed
        raise _unavailable(measure, digest, None, f"this workspace's corpus cannot be read ({err})") from None
    if text.hexdigest() != digest:
        raise _unavailable(measure, digest, text.hexdigest(),
                           f"this workspace's val split (data/raw/{params.data.name}, data.* params) is other text")
    return documents


def suite_text(params: Params, measure: Measure, digest: str):
    """The suite of evaluate.suites the measure names, if its text is the challenger's."""
    from pipeline import suites

    suite = next((s for s in params.evaluate.suites if s.name == measure.source), None)
    if suite is None:
        raise _unavailable(measure, digest, None, f"evaluate.suites has no suite named {measure.source!r}")
    text = suites.load(suite)
    if text.text_digest != digest:
        raise _unavailable(measure, digest, text.text_digest, f"suite {suite.name} ({suite.url}) is other text")
    return text


def rescorer(params: Params, name: str, alias: str):
    """The registry's Rescore: the holder of `alias`, scored on the challenger's text."""

    def rescore(version: int, measure: Measure, digest: str, challenger) -> float:
        device = pick_device(params.train.device).device
        if measure.kind == "harness":
            return harness_score(params, name, alias, measure, digest, device)
        text = (val_documents(params, measure, digest, challenger) if measure.kind == "val"
                else suite_text(params, measure, digest))  # before loading a model: a refusal is quick
        log(f"scoring version {version} (@{alias}) on {measure.name} over text {digest} on {device}")
        model, tokenizer = registry.load_generator(f"models:/{name}@{alias}", device)
        model = model.float()  # as evaluate scores: float32 weights, the device's autocast
        if measure.kind == "suite":
            from pipeline import suites

            return suites.score(model, tokenizer, text, params.evaluate.batch_size)[measure.metric]
        try:
            return score_text(model, tokenizer, text, params.evaluate.batch_size)[measure.metric]
        except ValueError as err:  # text its tokenizer cannot encode (a char model's unseen character)
            raise RegistryError(f"version {version} (@{alias}) cannot be scored on the challenger's val "
                                f"text: {err}; promote on a measure both can be scored on, or use --force") from None

    return rescore


def harness_score(params: Params, name: str, alias: str, measure: Measure, digest: str, device) -> float:
    """The holder's score on a harness task, run as the evaluate stage runs it."""
    from pipeline import harness

    settings = params.evaluate.harness
    include = Path(settings.include_path) if settings.include_path else None
    model, tokenizer = registry.load_generator(f"models:/{name}@{alias}", device)
    log(f"scoring @{alias} on lm-eval task {measure.source}")
    results = harness.evaluate(harness.FolioLM(model=model.float(), tokenizer=tokenizer), [measure.source],
                               include, settings.limit)
    have = results["task_hashes"].get(measure.source)
    if have != digest:
        raise _unavailable(measure, digest, have, f"task {measure.source} here is other text")
    values = harness.scores(results).get(measure.source, {})
    if measure.metric not in values:
        raise RegistryError(f"lm-eval task {measure.source} gives no {measure.metric} "
                            f"(it gives {', '.join(sorted(values)) or 'nothing'}); check registry.metric")
    return values[measure.metric]


def promote(params: Params, name: str, alias: str, *, version: int | None, best: bool, rollback: bool,
            force: bool, rescore: bool, report: bool) -> list[str]:
    """Move the alias; the lines to print: the move, and the report written, if any."""
    measure = params.registry.measure()
    move = registry.move_alias(name, alias, measure, version=version, best=best, rollback=rollback,
                               force=force, rescore=rescorer(params, name, alias) if rescore else None)
    lines = [move.summary(name)]
    if report and move.reason != "unchanged" and move.previous is not None:
        from pipeline.commands import compare

        html, markdown = compare.write_report(str(move.version), str(move.previous), params, REPORT_DIR,
                                              model_name=name)
        compare.attach(name, move.version, [html, markdown])
        lines.append(f"side by side with version {move.previous}: {html} (attached to version {move.version})")
    return lines
