"""`folio gc` in a temporary project with a real sqlite MLflow store and registered versions: a dry
run (the default) lists what takes space with sizes in a table at most 120 columns wide and
deletes nothing; `--delete` removes a moved-aside run whose best.pt MLflow holds byte for byte and
keeps, saying why, one whose copy is missing or differs and an unfinished one; it removes step
checkpoints older than last.pt but never last.pt, best.pt or a step newer than last.pt, and none
while last.pt cannot be relied on; it removes a version without an alias with its artifacts and
keeps one holding an alias, one whose run keeps no checkpoint and the workspace's own (from the run
in models/, or named by reports/registered_model.json); `--only` limits it to a kind; the
DVC cache is measured and never touched; without a tracking store no run can go."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from typer.testing import CliRunner

from folio import checkpoint
from folio.model import GPT, GPTConfig
from folio.tokenizers import CharTokenizer, save_tokenizer
from pipeline import artifacts
from pipeline.cli import app
from pipeline.commands import gc
from pipeline.params import SampleParams
from pipeline.tracking import registry, store
from tests.conftest import PROJECT
from tests.servers import free_port, tracking_at

MODEL = "folio-tinyshakespeare"  # params.yaml: registry.model_name empty, data.name tinyshakespeare
SAMPLE = SampleParams(prompts=["ab"], max_new_tokens=4, temperature=0.8, top_k=5, seed=1)
runner = CliRunner()


def _step_file(path: Path, step: int, fingerprint: str = "current") -> None:
    checkpoint.save(path, {"step": step, "meta": {"fingerprint": fingerprint}, "model": {"w": torch.zeros(75_000)}})


def _current_run(root: Path, steps=(10, 20), last: int | None = 20) -> None:
    """models/ as training leaves it: step files, last.pt another name of the newest, best.pt."""
    models = root / artifacts.MODELS
    models.mkdir(parents=True, exist_ok=True)
    for step in steps:
        _step_file(models / f"step-{step:07d}.pt", step)
    if last is not None:
        os.link(models / f"step-{last:07d}.pt", models / "last.pt")
    (models / "best.pt").write_bytes(b"current best" * 1000)
    (models / "run.json").write_text(json.dumps({"fingerprint": "current", "run_name": "now", "finished": True,
                                                 "run_id": None}))


def _mlflow_run(name: str, best: bytes | None, tmp: Path) -> str:
    ml = store.mlflow()
    with ml.start_run(run_name=name) as run:
        if best is not None:
            upload = tmp / "upload" / name / "best.pt"
            upload.parent.mkdir(parents=True)
            upload.write_bytes(best)
            ml.log_artifact(str(upload), "checkpoint")
    return run.info.run_id


def _moved_aside(root: Path, name: str, finished: bool, in_mlflow: bytes | None) -> Path:
    """models/previous/<name>/: a 300 kB step file with last.pt as its second name, a 200 kB best.pt
    and run.json naming an MLflow run that holds `in_mlflow` as checkpoint/best.pt."""
    folder = root / artifacts.PREVIOUS_RUNS / name
    folder.mkdir(parents=True)
    (folder / "step-0000100.pt").write_bytes(b"s" * 300_000)
    os.link(folder / "step-0000100.pt", folder / "last.pt")
    best = name.encode() * (200_000 // len(name))
    (folder / "best.pt").write_bytes(best)
    run_id = _mlflow_run(name, best if in_mlflow == b"same" else in_mlflow, root)
    (folder / "run.json").write_text(json.dumps({"run_name": name, "fingerprint": name, "finished": finished,
                                                 "run_id": run_id}))
    return folder


def _version(root: Path, keeps_checkpoint: bool, seed: int) -> str:
    """A registered version of MODEL whose logged model holds a tiny GPT, as `folio register`
    leaves it; its training run (named trained-<seed>) keeps checkpoint/best.pt or not."""
    tokenizer = CharTokenizer.train("abcdef \n")
    save_tokenizer(tokenizer, root / "tok")
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, n_layer=1, n_head=1, n_embd=8, block_size=8))
    weights = root / "weights" / f"{seed}.pt"
    weights.parent.mkdir(exist_ok=True)
    checkpoint.save(weights, {"model": model.state_dict(), "model_config": model.config.to_dict(), "step": 1,
                              "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size,
                                            "digest": tokenizer.digest}})
    run_id = _mlflow_run(f"trained-{seed}", weights.read_bytes() if keeps_checkpoint else None, root)
    logged = registry.log_model(run_id, weights, root / "tok", SAMPLE)
    return str(registry.register(logged.model_uri, MODEL, {}).version)


def _artifact_dir(version: str) -> Path:
    mv = registry.get_version(MODEL, version)
    return Path(urlparse(registry.client().get_logged_model(registry.model_id_of(mv)).artifact_location).path)


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "mlflow.db" and ".folio" not in p.parts}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project (the cwd) with its own MLflow store, holding: the current run in models/ (step 10,
    step 20 = last.pt), three moved-aside runs (backed up; never logged; unfinished), one whose
    MLflow copy differs, versions 1 (no alias), 2 (@champion), 3 (no alias, its run keeps no
    checkpoint), 4 (registered from the run in models/) and 5 (reports/registered_model.json
    names it), and a DVC cache."""
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(PROJECT / "params.yaml", tmp_path / "params.yaml")
    with tracking_at(f"sqlite:///{tmp_path / 'mlflow.db'}"):
        store.setup()
        _current_run(tmp_path)
        _moved_aside(tmp_path, "backed-up", True, b"same")
        _moved_aside(tmp_path, "never-logged", True, None)
        _moved_aside(tmp_path, "copy-differs", True, b"other weights")
        _moved_aside(tmp_path, "unfinished", False, b"same")
        made = [_version(tmp_path, keeps, seed) for keeps, seed in ((True, 1), (True, 2), (False, 3), (True, 4), (True, 5))]
        assert made == ["1", "2", "3", "4", "5"]
        registry.client().set_registered_model_alias(MODEL, "champion", "2")
        info = json.loads((tmp_path / artifacts.RUN_INFO).read_text())  # the run in models/ registered v4
        info["run_id"] = registry.get_version(MODEL, 4).run_id
        (tmp_path / artifacts.RUN_INFO).write_text(json.dumps(info))
        (tmp_path / "reports").mkdir()
        (tmp_path / artifacts.REGISTERED_MODEL).write_text(json.dumps({"name": MODEL, "version": 5}))
        cache = tmp_path / ".dvc" / "cache" / "files" / "md5" / "ab"
        cache.mkdir(parents=True)
        (cache / "cdef0123").write_bytes(b"c" * 1_500_000)
        yield tmp_path


def _rows(output: str) -> dict[str, str]:
    """The table's first line of each row, by the start of its `what`."""
    rows = {}
    for line in output.splitlines():
        for kind in ("runs", "checkpoints", "versions", "dvc cache"):
            if line.strip().startswith(kind + " "):
                rows[line.strip().removeprefix(kind).split()[0]] = line
    return rows


def test_a_dry_run_lists_what_takes_space_with_sizes_and_deletes_nothing(project):
    before = _files(project)
    for args in (["gc"], ["gc", "--dry-run"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert max(len(line) for line in result.output.splitlines()) <= 120
        rows = _rows(result.output)
        assert "can go" in rows["models/step-0000010.pt"] and "0.3 MB" in rows["models/step-0000010.pt"]
        assert "models/step-0000020.pt" not in rows  # it is last.pt
        runs = {what: line for what, line in rows.items() if what.startswith("models/previous/")}
        assert len(runs) == 4 and all("0.5 MB" in line for line in runs.values())  # last.pt counted once
        assert sum("can go" in line for line in runs.values()) == 1
        versions = [line for line in result.output.splitlines() if "version" in line and MODEL[:10] in line]
        assert [("can go" in v, "stays" in v) for v in versions] == [(True, False)] + [(False, True)] * 4
        text = " ".join(result.output.split())  # the table's cells wrap: read them as one text
        assert "holds @champion" in text and "this version holds the only copy of its weights" in text
        assert "registered from the run in models/" in text and "reports/registered_model.json names it" in text
        assert "1.5 MB" in rows[".dvc/cache/"] and "dvc gc --workspace" in result.output
        assert "dry run, nothing removed: `folio gc --delete` removes the 3 row(s) marked `can go`" in result.output
    assert _files(project) == before
    assert [v.version for v in registry.versions(MODEL)] == [5, 4, 3, 2, 1]


def test_delete_removes_only_what_is_safe_one_line_each(project):
    previous = project / artifacts.PREVIOUS_RUNS
    v1_files = _artifact_dir("1")
    assert v1_files.exists()

    result = runner.invoke(app, ["gc", "--delete", "--only", "checkpoints"])  # one kind only
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if line.startswith("removed")] == [
        "removed models/step-0000010.pt (0.3 MB): older than models/last.pt (step 20), which resume reads"]
    assert sorted(p.name for p in (project / "models").glob("*.pt")) == ["best.pt", "last.pt", "step-0000020.pt"]
    assert len(list(previous.iterdir())) == 4 and len(registry.versions(MODEL)) == 5

    result = runner.invoke(app, ["gc", "--delete"])
    assert result.exit_code == 0, result.output
    removed = [line for line in result.output.splitlines() if line.startswith("removed")]
    assert [line.split(" (")[0] for line in removed] == ["removed models/previous/backed-up/",
                                                        f"removed {MODEL} version 1"]
    assert sorted(p.name for p in previous.iterdir()) == ["copy-differs", "never-logged", "unfinished"]
    text = " ".join(result.output.split())  # the table's cells wrap: read them as one text
    assert "has no copy of it" in text and "differs from it" in text and "unfinished:" in text
    assert (project / "models" / "last.pt").exists() and (project / "models" / "best.pt").exists()
    assert [v.version for v in registry.versions(MODEL)] == [5, 4, 3, 2] and not v1_files.exists()
    assert all(_artifact_dir(version).exists() for version in "2345")
    assert registry.holder(MODEL, "champion") == 2
    assert (project / ".dvc" / "cache" / "files" / "md5" / "ab" / "cdef0123").exists()
    assert "freed " in result.output and "dvc commit -f train" in result.output


def test_step_files_stay_while_last_pt_cannot_be_relied_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _current_run(tmp_path, steps=(10, 20, 30), last=20)  # step 30: saved, last.pt not yet moved to it
    entries = {e.what: e for e in gc.old_checkpoints()}
    assert entries["models/step-0000010.pt"].remove is not None
    assert entries["models/step-0000030.pt"].remove is None and "newer than" in entries["models/step-0000030.pt"].why
    assert "models/step-0000020.pt" not in entries

    (tmp_path / "models" / "last.pt").unlink()
    (tmp_path / "models" / "last.pt").write_bytes(b"cut short")
    assert all(e.remove is None and "does not load" in e.why for e in gc.old_checkpoints())
    (tmp_path / "models" / "last.pt").unlink()
    assert all(e.remove is None and "is missing" in e.why for e in gc.old_checkpoints())
    _step_file(tmp_path / "models" / "last.pt", 20, fingerprint="another run")
    assert all(e.remove is None and "not the checkpoint of the run" in e.why for e in gc.old_checkpoints())


def test_without_a_tracking_store_that_answers_no_run_can_go(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(PROJECT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    folder = tmp_path / artifacts.PREVIOUS_RUNS / "done"
    folder.mkdir(parents=True)
    (folder / "best.pt").write_bytes(b"weights")
    (folder / "run.json").write_text(json.dumps({"run_name": "done", "finished": True, "run_id": "abc"}))
    (tmp_path / artifacts.PREVIOUS_RUNS / "made-by-hand").mkdir()  # no run.json: not folio's to judge
    result = runner.invoke(app, ["gc", "--delete"])
    assert result.exit_code == 0, result.output
    assert folder.exists() and (tmp_path / artifacts.PREVIOUS_RUNS / "made-by-hand").exists()
    assert "removed" not in result.output
    text = " ".join(result.output.split())
    assert "does not answer" in text and f"note: model versions of {MODEL} not listed" in text
    assert "it holds no run.json" in text
