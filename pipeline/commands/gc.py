"""`folio gc`: what takes disk space in this project, and what of it can go — in: models/, the
tracking store (MLflow), .dvc/cache — out: a table on stdout; with `delete`, one line per removal.

It lists, with the bytes removing each would free:

- runs moved aside, models/previous/<name>/ (pipeline/resume.py moves them there). One can go only
  once it is finished and its best.pt is verified in MLflow byte for byte
  (training_run.checkpoint_backed_up); an unfinished run never: `folio train` with its config moves
  it back and resumes it, and its checkpoints are the only record of where it stopped;
- step checkpoints of the run in models/ (step-*.pt, written by folio.checkpoint.save_rotating)
  older than last.pt, the one resume reads. They can go only while last.pt loads and belongs to
  the run of run.json; last.pt (and the step file it is another name of), best.pt, run.json and
  any step file newer than last.pt always stay;
- registered model versions of the project's model that hold no alias, with their logged model's
  artifacts (the slim weights, tokenizer and model card that `folio register` logged). One can go
  only while no alias points at it, it is not this workspace's own (registered from the run in
  models/, or named by reports/registered_model.json) and its training run keeps
  checkpoint/best.pt, so the weights are not lost with it: the version leaves the registry first,
  then its artifacts, then its logged model is marked deleted;
- the DVC cache (.dvc/cache/), with DVC's own command to shrink it: folio never runs `dvc gc`,
  which decides what every commit and experiment keeps.

Nothing is removed unless asked (`delete`); then the workspace lock is held, so no stage runs
meanwhile, and each removal is one line. models/ is the train stage's output: after a removal
there `dvc status` says train changed; when it names nothing else, `dvc commit -f train` records
models/ as it is now.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from folio import checkpoint
from pipeline import artifacts, lock
from pipeline.artifacts.models import read_run_info
from pipeline.artifacts.reports import read_registered_model
from pipeline.console import log
from pipeline.errors import StageError
from pipeline.tracking import access, registry, store

KINDS = ("runs", "checkpoints", "versions")
DVC_CACHE = Path(".dvc") / "cache"
TABLE_WIDTH = 120  # the table never gets wider than this


@dataclass
class Entry:
    kind: str  # one of KINDS, or "dvc cache"
    what: str
    size: int  # bytes that removing it frees
    why: str  # why it can go, or why it stays
    remove: Callable[[], None] | None = field(default=None, repr=False)  # None: it stays


def megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def disk_size(path: Path) -> int:
    """The bytes of the files under `path` (or of the file), each counted once however many names
    it has there (last.pt is another name of a step file)."""
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    seen = {}
    for file in files:
        stat = file.stat()
        seen[(stat.st_dev, stat.st_ino)] = stat.st_size
    return sum(seen.values())


# ---- models/previous/ ----------------------------------------------------------------------

def moved_aside_runs(backed_up: Callable[[Path], str | None]) -> list[Entry]:
    """One entry per models/previous/<name>/, oldest first; `backed_up(folder)` is None once the
    folder's best.pt is verified in MLflow, else why not."""
    entries = []
    folders = sorted(artifacts.PREVIOUS_RUNS.glob("*/"), key=lambda p: p.stat().st_mtime)
    for folder in folders:
        info = read_run_info(folder / artifacts.RUN_INFO.name)
        shown, size = f"{folder}/", disk_size(folder)
        if info is None:
            entries.append(Entry("runs", shown, size, f"it holds no {artifacts.RUN_INFO.name}, so folio cannot tell "
                                                     "what it is; remove it by hand if you do not need it"))
            continue
        if not info.get("finished"):
            entries.append(Entry("runs", shown, size, "unfinished: `folio train` with its config resumes it; "
                                                     "its checkpoints are the only copy"))
            continue
        why_not = backed_up(folder)
        if why_not is not None:
            entries.append(Entry("runs", shown, size, f"its best.pt is not verified in MLflow: {why_not}; "
                                                     "copy it elsewhere, then remove the folder by hand"))
            continue
        entries.append(Entry("runs", shown, size, f"finished; its best.pt is verified in MLflow run {info['run_id']}",
                             remove=lambda folder=folder: shutil.rmtree(folder)))
    return entries


# ---- models/step-*.pt ------------------------------------------------------------------------

def step_of(path: Path) -> int:
    return int(path.stem.split("-")[1])


def _resume_step() -> tuple[int | None, str]:
    """(the step of last.pt, "") when resume can rely on it, else (None, why not)."""
    last = artifacts.LAST_CKPT
    if not last.exists():
        return None, f"{last} is missing, so resume falls back to the step files"
    fingerprint = (read_run_info() or {}).get("fingerprint")
    try:
        state = checkpoint.load(last)
    except checkpoint.CheckpointError:
        return None, f"{last} does not load, so resume falls back to the step files"
    if not fingerprint or state.get("meta", {}).get("fingerprint") != fingerprint:
        return None, f"{last} is not the checkpoint of the run {artifacts.RUN_INFO} names"
    return int(state["step"]), ""


def old_checkpoints() -> list[Entry]:
    """The step files of models/ other than the one last.pt is: those older than last.pt can go
    while resume can rely on last.pt."""
    steps = sorted(artifacts.MODELS.glob("step-*.pt"), key=step_of)
    if not steps:
        return []
    last_step, why_not = _resume_step()
    last = artifacts.LAST_CKPT
    entries = []
    for path in steps:
        if last.exists() and (os.path.samefile(path, last) or step_of(path) == last_step):
            continue  # last.pt itself, under its step name
        size = disk_size(path) if path.stat().st_nlink == 1 else 0  # another name keeps its bytes
        if last_step is None:
            entries.append(Entry("checkpoints", str(path), size, f"kept: {why_not}"))
        elif step_of(path) > last_step:
            entries.append(Entry("checkpoints", str(path), size, f"newer than {last} (step {last_step})"))
        else:
            entries.append(Entry("checkpoints", str(path), size,
                                 f"older than {last} (step {last_step}), which resume reads",
                                 remove=path.unlink))
    return entries


# ---- registered model versions ---------------------------------------------------------------

def _artifact_bytes(repository, path: str | None = None) -> int:
    return sum(_artifact_bytes(repository, f.path) if f.is_dir else (f.file_size or 0)
               for f in repository.list_artifacts(path))


def _logged_model_files(model_id: str):
    """(the artifact repository of a logged model, its bytes); (None, 0) if it is gone."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        location = registry.client().get_logged_model(model_id).artifact_location
    except Exception as err:
        if getattr(err, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return None, 0
        raise
    repository = get_artifact_repository(location)
    return repository, _artifact_bytes(repository)


def _run_keeps_checkpoint(run_id: str | None) -> bool:
    from pipeline.tracking.training_run import CHECKPOINT_ARTIFACTS

    if not run_id:
        return False
    try:
        found = registry.client().list_artifacts(run_id, CHECKPOINT_ARTIFACTS)
    except Exception as err:  # the run was deleted
        if getattr(err, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return any(Path(f.path).name == artifacts.BEST_CKPT.name for f in found)


def _remove_version(name: str, version: str, model_id: str, repository) -> None:
    """The version leaves the registry (unless an alias reached it meanwhile), then its logged
    model's files go, then the logged model is marked deleted."""
    aliases = [a for a, v in registry.registered_model(name).aliases.items() if str(v) == version]
    if aliases:
        raise StageError(f"version {version} of {name} took @{aliases[0]} while folio gc ran; "
                         "it stays: rerun `folio gc` to see the rest")
    client = registry.client()
    with access.refusals(f"delete version {version} of {name}", f"MANAGE on the registered model {name}"):
        client.delete_model_version(name, version)
        if repository is not None:
            repository.delete_artifacts()
            client.delete_logged_model(model_id)


def _workspace_versions(name: str, every: list) -> dict[str, str]:
    """version -> why it is this workspace's own: registered from the run in models/, or the
    version reports/registered_model.json names (the register stage's output)."""
    own = {}
    current_run = (read_run_info() or {}).get("run_id")
    for mv in every:
        if current_run and mv.run_id == current_run:
            own[str(mv.version)] = f"registered from the run in {artifacts.MODELS}/"
    if artifacts.REGISTERED_MODEL.exists():
        report = read_registered_model()
        if report.get("name") == name and report.get("version") is not None:
            own.setdefault(str(report["version"]), f"{artifacts.REGISTERED_MODEL} names it")
    return own


def unaliased_versions(name: str) -> list[Entry]:
    """One entry per version of the registered model `name` (none if it is not registered)."""
    try:
        model = registry.registered_model(name)
    except registry.RegistryError:
        return []
    held = {}
    for alias, version in model.aliases.items():
        held.setdefault(str(version), []).append(f"@{alias}")
    every = sorted(registry.versions(name), key=lambda v: int(v.version))
    own = _workspace_versions(name, every)
    entries = []
    for mv in every:
        version, model_id = str(mv.version), registry.model_id_of(mv)
        shared = [str(v.version) for v in every if v is not mv and registry.model_id_of(v) == model_id]
        repository, size = _logged_model_files(model_id)
        what = f"{name} version {version}"
        if version in held:
            entries.append(Entry("versions", what, size, f"holds {', '.join(sorted(held[version]))}"))
        elif version in own:
            entries.append(Entry("versions", what, size, f"this workspace's version: {own[version]}"))
        elif shared:
            entries.append(Entry("versions", what, size, f"its files are also version {shared[0]}'s"))
        elif not _run_keeps_checkpoint(mv.run_id):
            entries.append(Entry("versions", what, size, f"its run {mv.run_id} keeps no checkpoint/best.pt: "
                                                         "this version holds the only copy of its weights"))
        else:
            entries.append(Entry("versions", what, size, f"no alias; its run {mv.run_id} keeps checkpoint/best.pt",
                                 remove=lambda v=version, m=model_id, r=repository: _remove_version(name, v, m, r)))
    return entries


# ---- the DVC cache ---------------------------------------------------------------------------

def dvc_cache() -> list[Entry]:
    if not DVC_CACHE.is_dir():
        return []
    return [Entry("dvc cache", f"{DVC_CACHE}/", disk_size(DVC_CACHE),
                  "DVC's own: `dvc gc --workspace` drops what the workspace does not use "
                  "(--all-commits keeps every commit's); folio never runs it")]


# ---- the command -----------------------------------------------------------------------------

def _tracking() -> str | None:
    """None once mlflow points at a tracking store that answers; else why it cannot be asked. A
    local store that does not exist yet is not created here."""
    uri = store.tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return f"no tracking store at {uri}"
    try:
        store.check_server(uri)
    except store.TrackingUnavailable:
        return f"the tracking server at {uri} does not answer"
    store.mlflow().set_tracking_uri(uri)
    return None


def survey(model_name: str, kinds: tuple[str, ...] = KINDS) -> tuple[list[Entry], list[str]]:
    """(every entry of `kinds`, plus the DVC cache when all kinds are asked for; notes on what
    could not be looked at)."""
    from pipeline.tracking.training_run import checkpoint_backed_up

    away = _tracking()
    entries, notes = [], []
    if "runs" in kinds:
        entries += moved_aside_runs((lambda folder: away) if away else checkpoint_backed_up)
    if "checkpoints" in kinds:
        entries += old_checkpoints()
    if "versions" in kinds:
        if away:
            notes.append(f"model versions of {model_name} not listed: {away}")
        else:
            entries += unaliased_versions(model_name)
    if set(kinds) == set(KINDS):
        entries += dvc_cache()
    return entries, notes


def table(entries: list[Entry], title: str):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    out = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column, options in (("kind", {"no_wrap": True}), ("what", {"overflow": "fold", "ratio": 1}),
                            ("size", {"justify": "right", "no_wrap": True}), ("gc", {"no_wrap": True}),
                            ("why", {"overflow": "fold", "ratio": 1})):
        out.add_column(column, **options)
    for e in entries:
        verdict = "can go" if e.remove else ("dvc gc" if e.kind == "dvc cache" else "stays")
        out.add_row(*(Text(cell) for cell in (e.kind, e.what, megabytes(e.size), verdict, e.why)))
    return out


def show(model_name: str, delete: bool, kinds: tuple[str, ...] = KINDS) -> list[Entry]:
    """Print the table; with `delete`, remove every entry that can go, one line each. Returns
    the entries (those removed included)."""
    if not delete:
        return _report(model_name, kinds, delete=False)
    with lock.hold(artifacts.LOCK_FILE, "folio gc --delete", log):
        return _report(model_name, kinds, delete=True)


def _report(model_name: str, kinds: tuple[str, ...], delete: bool) -> list[Entry]:
    from rich.console import Console

    entries, notes = survey(model_name, kinds)
    width = min(TABLE_WIDTH, shutil.get_terminal_size().columns) if sys.stdout.isatty() else TABLE_WIDTH
    console = Console(width=width, highlight=False)
    if entries:
        console.print(table(entries, f"what takes space in {Path.cwd()}"))
    else:
        print(f"nothing to list in {Path.cwd()}: no moved-aside run, old step checkpoint or model version")
    for note in notes:
        print(f"note: {note}")
    removable = [e for e in entries if e.remove]
    total = megabytes(sum(e.size for e in removable))
    if not delete:
        if removable:
            print(f"dry run, nothing removed: `folio gc --delete` removes the {len(removable)} row(s) "
                  f"marked `can go` ({total})")
        else:
            print("dry run, nothing removed: no row can go")
        return entries
    for entry in removable:
        entry.remove()
        print(f"removed {entry.what} ({megabytes(entry.size)}): {entry.why}")
    print(f"freed {total}" + (" (models/ changed: when `dvc status` names nothing else, "
                              "`dvc commit -f train` records it)"
                              if any(e.kind in ("runs", "checkpoints") for e in removable) else ""))
    return entries
