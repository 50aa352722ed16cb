"""Which run models/ holds: the train stage resumes it, or moves it aside — never deletes it.

A run is known by its identity (run.json keeps it) and the fingerprint hashed from it: the params
that shape its weights (model.*, and train.* but the keys that only say how checkpoints are
kept), the tokenizer's and the corpus's digests, data.val_fraction and the digest of the training
code (pipeline.code_deps). `claim()` makes
models/ the home of one run, before any training:

- models/ holds that run: it is resumed from its newest readable checkpoint (a finished run has
  nothing left to train);
- models/previous/<name>/ holds it (a param changed and changed back): the run in models/ is moved
  aside and that one moved back, then resumed;
- otherwise the run in models/, if any, is moved to models/previous/<its run name>/ and the new
  run starts in an empty models/.

Each move is logged. At most `keep` moved-aside runs stay: past that the oldest *finished* ones are
deleted, each deletion logged (their best.pt is an artifact of their MLflow run); an unfinished
run is never deleted: a warning says how many there are and how to remove them by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from folio import checkpoint
from pipeline import artifacts, code_deps
from pipeline.artifacts import models as model_files
from pipeline.params import Params

# train.* keys that change how checkpoints are kept or losses read, not what is trained
NOT_IN_FINGERPRINT = ("checkpoint_every", "keep_checkpoints", "keep_previous", "nproc", "log_interval")
TRAIN_MODULE = code_deps.stage_module("train")


def identity(params: Params, tokenizer_digest: str, corpus_sha256: str, prepared_meta: dict | None = None) -> dict:
    """What makes two training runs the same run, as flat keys (run.json keeps it, so a move
    aside can say what changed). `prepared_meta` (data/prepared/meta.json) tells one split of the
    corpus from another (data.split, data.seed, prepare.shard_tokens)."""
    flat = params.flat()
    keys = [k for k in flat if k.startswith("model.") or
            (k.startswith("train.") and k.removeprefix("train.") not in NOT_IN_FINGERPRINT)]
    return {**{k: flat[k] for k in keys}, "data.val_fraction": params.data.val_fraction,
            "tokenizer digest": tokenizer_digest, "corpus sha256": corpus_sha256,
            "training code": code_deps.digest(TRAIN_MODULE)} | (
        {"prepared data": hashlib.sha256(json.dumps(prepared_meta, sort_keys=True).encode()).hexdigest()[:16]}
        if prepared_meta else {})


def fingerprint(run_identity: dict) -> str:
    """Resume only within one fingerprint."""
    return hashlib.sha256(json.dumps(run_identity, sort_keys=True).encode()).hexdigest()[:16]


def changes(old: dict | None, new: dict) -> str:
    """What differs between two identities, e.g. "train.batch_size 16 -> 4"."""
    if not old:
        return "it holds no record of its config"
    diff = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(diff[:4]) + (f" and {len(diff) - 4} more" if len(diff) > 4 else "")


@dataclass
class Claim:
    info: dict  # run.json: run_id (None until MLflow starts the run), run_name, fingerprint, finished
    resume: dict | None  # the checkpoint to resume from; None: train from step 0


def claim(run_identity: dict, new_run_name: str, keep: int, log) -> Claim:
    """Make models/ the home of the run `run_identity` (see the module docstring)."""
    run_fingerprint = fingerprint(run_identity)
    info = model_files.read_run_info()
    if (info or {}).get("fingerprint") != run_fingerprint:
        if _run_files(artifacts.MODELS):
            move_aside(log, changes((info or {}).get("identity"), run_identity))
        if (previous := _find_previous(run_fingerprint)) is not None:
            _move_back(previous, log)
        _prune(keep, log)
        info = model_files.read_run_info()
    if info is None or info.get("fingerprint") != run_fingerprint:
        info = {"fingerprint": run_fingerprint, "run_name": new_run_name, "run_id": None,
                "finished": False, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "identity": run_identity}
        model_files.write_run_info(info)
    return Claim(info, newest_checkpoint(run_fingerprint, log))


def newest_checkpoint(run_fingerprint: str, log) -> dict | None:
    """The newest readable checkpoint of the run in models/: last.pt, else the step files, newest
    first (an unreadable one is named and skipped)."""
    candidates = [artifacts.LAST_CKPT, *sorted(artifacts.MODELS.glob("step-*.pt"), reverse=True)]
    for path in candidates:
        if not path.exists():
            continue
        try:
            state = checkpoint.load(path)
        except checkpoint.CheckpointError as err:
            log(f"warning: {err}; trying an older checkpoint")
            continue
        if state.get("meta", {}).get("fingerprint") == run_fingerprint:
            return state
    return None


def mark_finished(run_id: str) -> None:
    model_files.write_run_info({**(model_files.read_run_info() or {}), "run_id": run_id, "finished": True})


# ---- moving runs aside and back ---------------------------------------------------------------

def _run_files(folder: Path) -> list[Path]:
    """Everything in a run's folder (models/ or models/previous/<name>/) but previous/ itself."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.iterdir() if p != artifacts.PREVIOUS_RUNS)


def _describe(folder: Path) -> str:
    info = model_files.read_run_info(folder / artifacts.RUN_INFO.name) or {}
    steps = [int(p.stem.split("-")[1]) for p in folder.glob("step-*.pt")]
    state = "finished" if info.get("finished") else "unfinished"
    return f"{state}, step {max(steps)}" if steps else state


def move_aside(log, why: str) -> Path:
    """Move the run in models/ to models/previous/<run name>/ (run.json last, so a move cut short
    is completed by the next one)."""
    info = model_files.read_run_info() or {}
    name = info.get("run_name") or time.strftime(
        "unnamed-%Y%m%d-%H%M%S", time.localtime(max(p.stat().st_mtime for p in _run_files(artifacts.MODELS))))
    target = artifacts.PREVIOUS_RUNS / name
    other = model_files.read_run_info(target / artifacts.RUN_INFO.name)
    if other is not None and other.get("fingerprint") != info.get("fingerprint"):
        target = artifacts.PREVIOUS_RUNS / f"{name}-{time.strftime('%H%M%S')}"  # a name taken by another run
    target.mkdir(parents=True, exist_ok=True)
    files = _run_files(artifacts.MODELS)
    for path in sorted(files, key=lambda p: p == artifacts.RUN_INFO):
        os.replace(path, target / path.name)
    log(f"moved the previous run in {artifacts.MODELS}/ ({_describe(target)}) aside to {target}/, "
        f"as this run differs: {why}")
    return target


def _find_previous(run_fingerprint: str) -> Path | None:
    for folder in sorted(artifacts.PREVIOUS_RUNS.glob("*/")):
        if (model_files.read_run_info(folder / artifacts.RUN_INFO.name) or {}).get("fingerprint") == run_fingerprint:
            return folder
    return None


def _move_back(folder: Path, log) -> None:
    for path in _run_files(folder):
        os.replace(path, artifacts.MODELS / path.name)
    folder.rmdir()
    log(f"moved {folder}/ back to {artifacts.MODELS}/: it holds a run of this very config "
        f"({_describe(artifacts.MODELS)}), which continues")


def _prune(keep: int, log) -> None:
    """Keep at most `keep` moved-aside runs: delete the oldest finished ones past that."""
    folders = sorted(artifacts.PREVIOUS_RUNS.glob("*/"), key=lambda p: p.stat().st_mtime)
    excess = len(folders) - keep
    for folder in folders:
        if excess <= 0:
            return
        info = model_files.read_run_info(folder / artifacts.RUN_INFO.name) or {}
        if info.get("finished"):
            shutil.rmtree(folder)
            excess -= 1
            log(f"deleted {folder}/, the oldest finished run past train.keep_previous={keep} "
                f"(its best.pt is an artifact of MLflow run {info.get('run_id')})")
    if excess > 0:
        log(f"warning: {artifacts.PREVIOUS_RUNS}/ holds {excess} more unfinished run(s) than "
            f"train.keep_previous={keep}; folio never deletes an unfinished run: remove those you do "
            f"not need with `rm -r {artifacts.PREVIOUS_RUNS}/<name>`")
