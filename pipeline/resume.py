"""Which run models/ holds: the train stage resumes it, or moves it aside — never deletes it.

A run is known by its identity (run.json keeps it) and the fingerprint hashed from it: what
shapes the trajectory of its weights — the params (model.*, and train.* but the keys that only say
how checkpoints are kept or losses read), the world size (batches are per process, so it sets the
global batch; a hand-launched torchrun counts too), the device type and dtype they resolve to
here, the tokenizer's, the corpus's and the prepared
data's digests and data.val_fraction. The training code's digest (pipeline.code_deps) is kept
beside it, not in it. `claim()` makes models/ the home of one run, before any training:

- models/ holds that run: it is resumed from its newest readable checkpoint (a finished run has
  nothing left to train);
- models/previous/<name>/ holds it (a param changed and changed back): the run in models/ is moved
  aside and that one moved back, then resumed;
- otherwise the run in models/, if any, is moved to models/previous/<its run name>/ and the new
  run starts in an empty models/.

A run whose training code changed since it was written (a fix for the crash that stopped it, say)
is named in one line and, by default (`train.on_code_change: restart`), moved aside like a run of
another config; with `train.on_code_change: resume` it continues from its checkpoint, and run.json
(and the MLflow run) record each change: the code digests before and after, and the step.

Each move is logged. At most `keep` moved-aside runs stay: past that the oldest *finished* ones are
deleted — each only once `backed_up(folder)` has verified that its best.pt is in MLflow (the
artifact there, byte for byte); a run it cannot verify is kept, with one line saying why. An
unfinished run is never deleted: a warning says how many there are and how to remove them by hand.
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

# train.* keys that change how checkpoints are kept, losses read or the code change handled, not
# what is trained (train.nproc is in the identity as the world size, which a torchrun may set)
NOT_IN_FINGERPRINT = ("checkpoint_every", "keep_checkpoints", "keep_previous", "nproc", "log_interval",
                      "on_code_change", "collective_timeout_s")
TRAIN_MODULE = code_deps.stage_module("train")


def identity(params: Params, tokenizer_digest: str, corpus_sha256: str, prepared_digest: str | None = None,
             world_size: int = 1, compute: str | None = None) -> dict:
    """What makes two training runs the same run, as flat keys (run.json keeps it, so a move
    aside can say what changed). `prepared_digest` (of data/prepared/meta.json) tells one split of
    the corpus from another (data.split, data.seed, prepare.shard_tokens); `world_size`, the
    processes that train together, sets the global batch; `compute`, the device type and dtype
    that train.device and train.dtype resolve to here ("cuda float16"): `auto` picks by machine,
    and a run does not continue in another precision (its gradient scaler and its trajectory
    differ) or on another kind of device."""
    flat = params.flat()
    keys = [k for k in flat if k.startswith("model.") or
            (k.startswith("train.") and k.removeprefix("train.") not in NOT_IN_FINGERPRINT)]
    return {**{k: flat[k] for k in keys}, "data.val_fraction": params.data.val_fraction,
            "tokenizer digest": tokenizer_digest, "corpus sha256": corpus_sha256,
            "world size": world_size} | ({"prepared data": prepared_digest} if prepared_digest else {}) \
        | ({"compute": compute} if compute else {})


def code_digest() -> str:
    """The digest of the code the train stage runs (its import closure)."""
    return code_deps.digest(TRAIN_MODULE)[:16]


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
    info: dict  # run.json: run_id (None until MLflow starts the run), run_name, fingerprint, code, finished
    resume: dict | None  # the checkpoint to resume from; None: train from step 0


def claim(run_identity: dict, code: str, new_run_name: str, keep: int, on_code_change: str, log,
          backed_up=lambda folder: "nothing verifies it") -> Claim:
    """Make models/ the home of the run `run_identity` trained by code `code` (see the module
    docstring). `backed_up(folder)`: None once the run in `folder` is safe in MLflow, else why not."""
    run_fingerprint = fingerprint(run_identity)
    info = model_files.read_run_info()
    if (info or {}).get("fingerprint") != run_fingerprint:
        if _run_files(artifacts.MODELS):
            move_aside(log, changes((info or {}).get("identity"), run_identity))
        if (previous := _find_previous(run_fingerprint)) is not None:
            _move_back(previous, log)
        _prune(keep, log, backed_up)
        info = model_files.read_run_info()
    if info is not None and info.get("fingerprint") == run_fingerprint and info.get("code") != code:
        info = _code_changed(info, code, on_code_change, run_fingerprint, log)
    if info is None or info.get("fingerprint") != run_fingerprint:
        info = {"fingerprint": run_fingerprint, "code": code, "run_name": new_run_name, "run_id": None,
                "finished": False, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "identity": run_identity}
        model_files.write_run_info(info)
    return Claim(info, newest_checkpoint(run_fingerprint, log))


def _code_changed(info: dict, code: str, on_code_change: str, run_fingerprint: str, log) -> dict | None:
    """The run in models/ was written by other training code: resume it, recording the change, or
    move it aside (None: a new run starts)."""
    latest = newest_checkpoint(run_fingerprint, lambda message: None)
    if latest is None:  # nothing trained yet: nothing to keep apart
        info = {**info, "code": code}
        model_files.write_run_info(info)
        return info
    step = latest["step"]
    change = f"the training code changed since this run's step-{step} checkpoint (code {info.get('code')} -> {code})"
    if on_code_change != "resume":
        move_aside(log, f"{change}; set train.on_code_change=resume to continue it instead")
        return None
    log(f"{change}: resuming it, as train.on_code_change=resume says (recorded in {artifacts.RUN_INFO})")
    record = {"from": info.get("code"), "to": code, "step": step, "at": time.strftime("%Y-%m-%d %H:%M:%S")}
    info = {**info, "code": code, "code_changes": [*info.get("code_changes", []), record]}
    model_files.write_run_info(info)
    return info


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


def _prune(keep: int, log, backed_up) -> None:
    """Keep at most `keep` moved-aside runs: delete the oldest finished ones past that, each only
    once `backed_up(folder)` has verified that its best.pt is in MLflow."""
    folders = sorted(artifacts.PREVIOUS_RUNS.glob("*/"), key=lambda p: p.stat().st_mtime)
    excess = len(folders) - keep
    unfinished = 0
    for folder in folders:
        if excess <= 0:
            return
        info = model_files.read_run_info(folder / artifacts.RUN_INFO.name) or {}
        if not info.get("finished"):
            unfinished += 1
            continue
        why_not = backed_up(folder)
        if why_not is not None:
            log(f"warning: kept {folder}/ past train.keep_previous={keep}: its best.pt is not verified "
                f"in MLflow ({why_not}); remove it by hand once it is copied elsewhere "
                f"(`rm -r {folder}`)")
            continue
        shutil.rmtree(folder)
        excess -= 1
        log(f"deleted {folder}/, the oldest finished run past train.keep_previous={keep} "
            f"(its best.pt is verified in MLflow run {info.get('run_id')})")
    if unfinished and excess > 0:
        log(f"warning: {artifacts.PREVIOUS_RUNS}/ holds {min(unfinished, excess)} more unfinished run(s) "
            f"than train.keep_previous={keep}; folio never deletes an unfinished run: remove those you "
            f"do not need with `rm -r {artifacts.PREVIOUS_RUNS}/<name>`")
