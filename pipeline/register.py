"""Stage register — in: models/best.pt, data/tokenizer/, data/prepared/meta.json,
reports/metrics.json, reports/samples.md, reports/train/ — params: data.*, registry.model_name,
sample.* — out: reports/model_card.md, reports/registered_model.json.

Logs the best checkpoint as an MLflow pyfunc model (models-from-code: pipeline/pyfunc_model.py)
under the training run, registers it as a new version of `registry.model_name` (default
folio-<data.name>) tagged with its val metrics and lineage, and attaches the model card and the
loss curve to the model's artifacts. It never moves an alias: `folio promote` does that, behind
the metric gate.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time

from folio.fileio import write_json, write_text
from pipeline import model_card, paths, registry, tracking
from pipeline.console import log
from pipeline.evaluate import training_run_id
from pipeline.params import Params


def version_tags(params: Params, metrics: dict, run) -> dict[str, str]:
    """What a version is compared and traced by: val metrics, data digest, commit, experiment."""
    tags = {f"val_{key}": str(value) for key, value in metrics["val"].items() if key != "tokens"}
    tags["data.name"], tags["data.sha256"] = params.data.name, params.data.sha256
    tags["checkpoint_step"] = str(metrics["checkpoint_step"])
    tags["git.commit"] = (run.data.tags.get("mlflow.source.git.commit") or tracking.git_commit()
                          or "unknown")
    if exp_name := run.data.tags.get("dvc.exp_name") or os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = exp_name
    return tags


def read_evals() -> list[list]:
    """[step, train_loss, val_loss] per evaluation, from the train stage's evals.csv."""
    with open(paths.TRAIN_EVALS, newline="") as f:
        return [[int(row["step"]), float(row["train_loss"]), float(row["val_loss"])]
                for row in csv.DictReader(f)]


def card_facts(params: Params, run, metrics: dict, tags: dict) -> model_card.CardFacts:
    """Everything the card says but the version number (known once registered)."""
    meta = json.loads(paths.PREPARED_META.read_text())
    return model_card.CardFacts(
        name=params.registered_model_name(),
        version="?",
        run_id=run.info.run_id,
        run_name=run.info.run_name,
        data={"name": params.data.name, "url": params.data.url, "sha256": params.data.sha256,
              "size_bytes": meta["train_bytes"] + meta["val_bytes"],
              "val_fraction": params.data.val_fraction},
        tokenizer=metrics["tokenizer"],
        params={k: v for k, v in run.data.params.items() if k.startswith(("model.", "train."))},
        metrics=metrics["val"],
        checkpoint_step=metrics["checkpoint_step"],
        evals=read_evals(),
        samples=paths.SAMPLES.read_text(encoding="utf-8"),
        lineage={"git commit": tags["git.commit"], "DVC experiment": tags.get("dvc.exp_name", "-"),
                 "registered": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())},
    )


def main(params: Params) -> None:
    tracking.setup()
    name = params.registered_model_name()
    run = registry.client().get_run(training_run_id())
    metrics = json.loads(paths.METRICS.read_text())
    tags = version_tags(params, metrics, run)
    facts = card_facts(params, run, metrics, tags)  # read every input before touching the registry
    info = registry.log_model(run.info.run_id, paths.BEST_CKPT, paths.TOKENIZER_DIR, params.sample)
    version = str(registry.register(info.model_uri, name, tags).version)
    write_text(paths.MODEL_CARD, model_card.render(dataclasses.replace(facts, version=version)))
    registry.attach_files(info.model_id, {"model_card.md": paths.MODEL_CARD,
                                          "loss.png": paths.LOSS_PLOT})
    val = metrics["val"]
    registry.describe(name, version, run.info.run_id,
                      f"val bits per byte {val['bits_per_byte']:.4f}, val loss {val['loss']:.4f}; "
                      f"trained by run {run.info.run_name}. The model card is model_card.md in "
                      "the model's artifacts.")
    uri = f"models:/{name}/{version}"
    write_json(paths.REGISTERED_MODEL, {"name": name, "version": int(version), "uri": uri,
                                        "model_id": info.model_id, "run_id": run.info.run_id})
    log(f"registered {uri} (val bits per byte {val['bits_per_byte']:.4f}); "
        f"`folio promote {version}` gives it @{params.registry.alias} if it beats the holder")
