"""Stage register — in: models/best.pt, models/run.json, data/tokenizer/, data/prepared/meta.json,
data/raw/<name>.json, reports/metrics.json, reports/samples.md, reports/train/ — params: data.*,
registry.model_name, sample.* — out: reports/model_card.md, reports/registered_model.json.

Logs the best checkpoint as an MLflow pyfunc model (models-from-code:
pipeline/tracking/pyfunc_model.py) under the training run, registers it as a new version of
`registry.model_name` (default folio-<data.name>) tagged with its val metrics, its suites' and
harness tasks' scores, the digest of each text scored (pipeline/measures.py), the digest of its
weights (`checkpoint.digest`) and its lineage (the corpus digest download recorded, pinned or not),
and attaches the model card and the loss curve to the model's artifacts. It never moves an alias:
`folio promote` does that, behind the metric gate.

The metrics must be those of these weights: reports/metrics.json names the weights it scored, and
register refuses, in one line, metrics of other weights (train ran again since evaluate). The same
weights are one version: registering them again (a rerun after a failure part way, or after only
the samples changed) completes and updates the version that holds them instead of adding another.
"""

from __future__ import annotations

import dataclasses
import os
import time

from folio.checkpoint import weights_digest
from pipeline import artifacts, measures
from pipeline.artifacts import corpus as corpus_files, models, prepared, reports
from pipeline.commands import summary
from pipeline.console import log
from pipeline.errors import StageError
from pipeline.params import Params
from pipeline.tracking import lineage, model_card, registry, store


def version_tags(params: Params, metrics: dict, corpus: dict, run) -> dict[str, str]:
    """What a version is compared and traced by: val metrics, each scored text's digest and each
    suite's and harness task's scores (measures.version_tags), data digest, commit, experiment."""
    tags = {f"val_{key}": str(value) for key, value in metrics["val"].items()
            if key not in ("tokens", measures.DIGEST)}
    tags |= measures.version_tags(metrics)
    tags["data.name"], tags["data.sha256"] = params.data.name, corpus["sha256"]
    tags["checkpoint_step"] = str(metrics["checkpoint"]["step"])
    tags[registry.DIGEST_TAG] = metrics["checkpoint"]["weights_digest"]
    tags["git.commit"] = (run.data.tags.get("mlflow.source.git.commit") or lineage.git_commit()
                          or "unknown")
    if exp_name := run.data.tags.get("dvc.exp_name") or os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = exp_name
    return tags


def card_facts(params: Params, run, metrics: dict, corpus: dict, tags: dict) -> model_card.CardFacts:
    """Everything the card says but the version number (known once registered)."""
    meta = prepared.read_meta()
    return model_card.CardFacts(
        name=params.registered_model_name(),
        version="?",
        run_id=run.info.run_id,
        run_name=run.info.run_name,
        data={"name": params.data.name, "url": params.data.url, "sha256": corpus["sha256"],
              "pinned": corpus.get("pinned", bool(params.data.sha256)),
              "size_bytes": meta["train_bytes"] + meta["val_bytes"],
              "val_fraction": params.data.val_fraction}
             | ({"sources": model_card.mixture_rows(corpus["sources"], meta)} if corpus.get("sources") else {}),
        tokenizer=metrics["tokenizer"],
        params={k: v for k, v in run.data.params.items() if k.startswith(("model.", "train."))},
        metrics=metrics["val"],
        suites=metrics.get("suites", {}),
        checkpoint=metrics["checkpoint"],
        evals=reports.read_evals(),
        samples=reports.read_samples(),
        lineage={"git commit": tags["git.commit"], "DVC experiment": tags.get("dvc.exp_name", "-"),
                 "registered": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())},
    )


def check_scored(metrics: dict, state: dict, digest: str) -> None:
    """Refuse metrics that were measured on other weights than models/best.pt's."""
    scored = metrics.get("checkpoint") or {}
    if scored.get("weights_digest") == digest:
        return
    what = (f"weights {scored['weights_digest']} (step {scored.get('step')})" if scored.get("weights_digest")
            else "no named weights (an older folio wrote it)")
    raise StageError(f"{artifacts.METRICS} holds the scores of {what}, but {artifacts.BEST_CKPT} holds "
                     f"weights {digest} (step {state['step']}): they are not its metrics; run `folio "
                     "evaluate` (or `dvc repro`) first")


def main(params: Params) -> None:
    name = params.registered_model_name()
    state = models.load_checkpoint()
    digest = weights_digest(state)
    metrics, corpus = reports.read_metrics(), corpus_files.record(params.data)
    check_scored(metrics, state, digest)
    store.setup()
    run = registry.client().get_run(models.training_run_id())
    tags = version_tags(params, metrics, corpus, run)
    facts = card_facts(params, run, metrics, corpus, tags)  # read every input before touching the registry
    existing = registry.version_of_weights(name, digest)
    if existing is None:
        logged = registry.log_model(run.info.run_id, artifacts.BEST_CKPT, artifacts.TOKENIZER_DIR, params.sample)
        version, model_id = str(registry.register(logged.model_uri, name, tags).version), logged.model_id
    else:
        version, model_id = str(existing.version), registry.model_id_of(existing)
        registry.set_version_tags(name, version, tags)
        log(f"version {version} of {name} holds these weights already (digest {digest}): completing "
            "and updating it instead of registering a duplicate")
    reports.write_model_card(model_card.render(dataclasses.replace(facts, version=version)))
    registry.attach_files(model_id, {"model_card.md": artifacts.MODEL_CARD,
                                     "loss.png": artifacts.LOSS_PLOT})
    val = metrics["val"]
    registry.describe(name, version, run.info.run_id,
                      f"val bits per byte {val['bits_per_byte']:.4f}, val loss {val['loss']:.4f}; "
                      f"trained by run {run.info.run_name}. The model card is model_card.md in "
                      "the model's artifacts.")
    uri = f"models:/{name}/{version}"
    registered = {"name": name, "version": int(version), "uri": uri, "model_id": model_id,
                  "run_id": run.info.run_id, "weights_digest": digest}
    reports.write_registered_model(registered)
    for line in summary.lines(metrics, registered, summary.training_seconds(run), params):
        log(line)  # the pipeline's last stage: `dvc repro` ends on what it made
