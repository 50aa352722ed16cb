"""Stage register — in: models/best.pt, models/run.json, data/tokenizer/, data/prepared/meta.json,
data/raw/<name>.json, reports/metrics.json, reports/samples.md, reports/train/ — params: data.*,
registry.model_name, sample.* — out: reports/model_card.md, reports/registered_model.json.

Logs the best checkpoint as an MLflow pyfunc model (models-from-code:
pipeline/tracking/pyfunc_model.py) under the training run, registers it as a new version of
`registry.model_name` (default folio-<data.name>) tagged with its val metrics and lineage (the
corpus digest download recorded, pinned or not), and attaches the model card and the loss curve
to the model's artifacts. It never moves an alias: `folio promote` does that, behind the metric
gate.
"""

from __future__ import annotations

import dataclasses
import os
import time

from pipeline import artifacts
from pipeline.tracking import lineage, store
from pipeline.artifacts import corpus as corpus_files, models, prepared, reports
from pipeline.console import log
from pipeline.params import Params
from pipeline.tracking import model_card, registry


def version_tags(params: Params, metrics: dict, corpus: dict, run) -> dict[str, str]:
    """What a version is compared and traced by: val metrics, data digest, commit, experiment."""
    tags = {f"val_{key}": str(value) for key, value in metrics["val"].items() if key != "tokens"}
    tags["data.name"], tags["data.sha256"] = params.data.name, corpus["sha256"]
    tags["checkpoint_step"] = str(metrics["checkpoint_step"])
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
              "val_fraction": params.data.val_fraction},
        tokenizer=metrics["tokenizer"],
        params={k: v for k, v in run.data.params.items() if k.startswith(("model.", "train."))},
        metrics=metrics["val"],
        checkpoint_step=metrics["checkpoint_step"],
        evals=reports.read_evals(),
        samples=reports.read_samples(),
        lineage={"git commit": tags["git.commit"], "DVC experiment": tags.get("dvc.exp_name", "-"),
                 "registered": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())},
    )


def main(params: Params) -> None:
    name = params.registered_model_name()
    metrics, corpus = reports.read_metrics(), corpus_files.record(params.data)
    artifacts.require(artifacts.BEST_CKPT, "train")
    store.setup()
    run = registry.client().get_run(models.training_run_id())
    tags = version_tags(params, metrics, corpus, run)
    facts = card_facts(params, run, metrics, corpus, tags)  # read every input before touching the registry
    info = registry.log_model(run.info.run_id, artifacts.BEST_CKPT, artifacts.TOKENIZER_DIR, params.sample)
    version = str(registry.register(info.model_uri, name, tags).version)
    reports.write_model_card(model_card.render(dataclasses.replace(facts, version=version)))
    registry.attach_files(info.model_id, {"model_card.md": artifacts.MODEL_CARD,
                                          "loss.png": artifacts.LOSS_PLOT})
    val = metrics["val"]
    registry.describe(name, version, run.info.run_id,
                      f"val bits per byte {val['bits_per_byte']:.4f}, val loss {val['loss']:.4f}; "
                      f"trained by run {run.info.run_name}. The model card is model_card.md in "
                      "the model's artifacts.")
    uri = f"models:/{name}/{version}"
    reports.write_registered_model({"name": name, "version": int(version), "uri": uri,
                                      "model_id": info.model_id, "run_id": run.info.run_id})
    log(f"registered {uri} (val bits per byte {val['bits_per_byte']:.4f}); "
        f"`folio promote {version}` gives it @{params.registry.alias} if it beats the holder")
