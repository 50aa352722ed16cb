"""A failed train stage leaves the git-tracked training curves (reports/train/steps.csv,
evals.csv, loss.png) as they were: dvc.yaml marks them `persist: true`, so DVC does not delete
them before it runs the stage, and the stage replaces them only when it finishes (each written
atomically). Run for real: `dvc exp run -S` with a typo, as DVC's advice has it, in a throwaway
copy of the project whose upstream stages are committed with stand-in outputs (`dvc commit`), so
only the train stage runs, and fails at once."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline import artifacts
from tests import pipeline_project as pp
from tests.conftest import PROJECT

REPORTS = {artifacts.TRAIN_STEPS: "step,train_loss,lr\n0,4.2,0.001\n",
           artifacts.TRAIN_EVALS: "step,train_loss,val_loss\n0,4.2,4.3\n",
           artifacts.LOSS_PLOT: "a committed PNG\n"}
UPSTREAM = ("download", "validate", "tokenize", "prepare", "validate_tokens")


def test_the_tracked_training_curves_persist():
    train = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]["train"]
    entries = {name: options for entry in train["outs"] + train["plots"] if isinstance(entry, dict)
               for name, options in entry.items()}
    assert {str(p) for p in REPORTS} <= set(entries)
    for path in REPORTS:
        assert entries[str(path)] == {**entries[str(path)], "cache": False, "persist": True}, path


@pytest.fixture(scope="module")
def committed(tmp_path_factory) -> Path:
    """A git copy of the project with its real params.yaml, stand-ins for the upstream stages'
    outputs recorded in dvc.lock, and training curves committed to git."""
    root = pp.make_project(tmp_path_factory.mktemp("keeps") / "folio", "https://example.invalid/c.txt")
    shutil.copyfile(PROJECT / "params.yaml", root / "params.yaml")
    name = yaml.safe_load((root / "params.yaml").read_text())["data"]["name"]
    stand_ins = {artifacts.raw_dir(name) / "input.txt": "text", artifacts.raw_record(name): "{}",
                 artifacts.validation_report("corpus"): "{}", artifacts.TOKENIZER_DIR / "stand-in": "",
                 artifacts.PREPARED_DIR / "stand-in": "", artifacts.validation_report("tokens"): "{}",
                 **REPORTS}
    for path, text in stand_ins.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    pp.run(root, "dvc", "commit", "-f", "-q", *UPSTREAM)
    pp.git(root, "add", "-A")
    pp.git(root, "commit", "-q", "-m", "upstream stages and the training curves")
    return root


@pytest.fixture
def project(committed, tmp_path) -> Path:
    return pp.clone(committed, tmp_path / "folio")


def _reports(project: Path) -> dict:
    return {path: (project / path).read_text() if (project / path).exists() else None for path in REPORTS}


def _changed(project: Path) -> list[str]:
    """The tracked files whose content differs from the commit, as `git status --porcelain` names
    them. By content, not git's stat cache: DVC's writer keeps a value's line the same length
    (the comment stays in its column), and git's cache missed such a same-size rewrite here."""
    tracked = pp.git(project, "ls-files", "-z").split("\0")
    changed = [path for path in tracked if path and (project / path).is_file() and
               pp.git(project, "hash-object", path).strip() != pp.git(project, "rev-parse", f"HEAD:{path}").strip()]
    return sorted(f" M {path}" for path in changed)


def _diff(project: Path, path: str) -> list[str]:
    """`path`'s lines changed since the commit (by content: see _changed), as a -U0 diff."""
    committed = pp.git(project, "show", f"HEAD:{path}").splitlines()
    return list(difflib.unified_diff(committed, (project / path).read_text().splitlines(), n=0, lineterm=""))


@pytest.mark.e2e
def test_a_typo_under_dvc_exp_run_names_the_key_and_keeps_the_reports(project):
    refused = pp.run(project, "dvc", "exp", "run", "-s", "train", "-S", "train.max_iter=100", check=False)
    assert "use +train.max_iter=100" in refused, refused  # DVC's own advice: params.yaml has no such key
    assert _changed(project) == []

    output = pp.run(project, "dvc", "exp", "run", "-s", "train", "-S", "+train.max_iter=100", check=False)
    assert "Running stage 'train'" in output and "Traceback" not in output, output
    (line,) = [line for line in output.splitlines() if line.startswith("error:")]
    assert line == ("error: train: invalid params: train.max_iter is not a params key (did you mean "
                    "train.max_iters?); fix it in the params file or the --set override"), output
    assert "failed to reproduce 'train'" in output
    assert _reports(project) == REPORTS
    assert _changed(project) == [" M params.yaml"]
    changes = [line for line in _diff(project, "params.yaml") if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert len(changes) == 1 and changes[0].startswith("+")  # the key DVC added


@pytest.mark.e2e
def test_dvc_exp_run_set_changes_one_line_and_a_failed_train_keeps_the_reports(project):
    output = pp.run(project, "dvc", "exp", "run", "-s", "train", "-S", "train.max_iters=7", check=False)
    assert "Running stage 'train'" in output and "failed to reproduce 'train'" in output, output
    assert f"{artifacts.TOKENIZER_DIR}/tokenizer.json not found" in output  # the stand-in tokenizer
    assert _reports(project) == REPORTS
    assert _changed(project) == [" M params.yaml"]
    diff = _diff(project, "params.yaml")
    (removed, added) = [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    (before,) = [line for line in (PROJECT / "params.yaml").read_text().splitlines()
                 if line.startswith("  max_iters: ")]
    assert removed == f"-{before}"
    assert added.startswith("+  max_iters: 7 ") and added.index("#") == removed.index("#")
    assert added.partition("#")[2] == removed.partition("#")[2]  # the comment, where it was
