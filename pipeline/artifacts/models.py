"""models/: the checkpoints (last.pt, best.pt, step-*.pt) and run.json, the run that owns them
(its MLflow run id and name, its fingerprint, whether it finished)."""

from __future__ import annotations

import json
from pathlib import Path

from folio import checkpoint
from folio.fileio import write_json
from pipeline.artifacts import BEST_CKPT, RUN_INFO, MissingArtifact, require


def load_checkpoint(path: Path = BEST_CKPT) -> dict:
    return checkpoint.load(require(path, "train"))


def load_model(tokenizer, path: Path = BEST_CKPT, device="cpu"):
    """(checkpoint, model) of a trained checkpoint, read onto `device` and the model in eval mode
    there (folio.checkpoint.load_model); refused if it was trained with another tokenizer."""
    return checkpoint.load_model(require(path, "train"), device, tokenizer.digest)


def read_run_info(path: Path = RUN_INFO) -> dict | None:
    """{"run_id", "run_name", "fingerprint", "finished", ...} of the run in `path`'s folder, or None."""
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def write_run_info(info: dict, path: Path = RUN_INFO) -> None:
    write_json(path, info)


def training_run_id() -> str:
    """The MLflow run that trained models/best.pt (evaluate, sample and register log to it)."""
    run_id = (read_run_info(require(RUN_INFO, "train")) or {}).get("run_id")
    if not run_id:
        raise MissingArtifact(
            f"{RUN_INFO} names no MLflow run (training did not start one); run `folio train` first")
    return run_id
