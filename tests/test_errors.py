"""Every failure a user can cause is one line through the real `folio` CLI — `error: <stage>:
<what>; <what to do>`, exit status 1, no traceback (FOLIO_DEBUG=1 adds it): a stage run before
the stage it needs, a device this machine lacks, a prompt outside the vocabulary, a checkpoint
trained with another tokenizer, a truncated checkpoint, a split shorter than one window, bad
params, and a disk that fills up while a checkpoint is written (the last good one survives)."""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from folio import checkpoint
from folio.tokenizers import CharTokenizer, save_tokenizer
from pipeline import artifacts
from pipeline.cli import app
from tests import pipeline_project as pp
from tests.conftest import PROJECT


def folio(project: Path, *args: str, env_extra: dict | None = None) -> tuple[int, str]:
    env = {**pp.env(), **(env_extra or {})}
    proc = subprocess.run(["folio", *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def assert_one_line_error(code: int, output: str, stage: str, *phrases: str) -> str:
    assert code == 1, output
    assert "Traceback" not in output, output
    (line,) = [line for line in output.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {stage}: "), line
    assert ";" in line, f"no 'what to do' in: {line}"
    for phrase in phrases:
        assert phrase in line, (phrase, line)
    return line


@pytest.fixture(scope="module")
def trained(prepared_project, tmp_path_factory):
    """A copy of the prepared project with a trained model (folio train, tiny params)."""
    root = pp.clone(prepared_project, tmp_path_factory.mktemp("errors") / "folio")
    pp.run(root, "folio", "train")
    return root


@pytest.fixture
def project(trained, tmp_path):
    return pp.clone(trained, tmp_path / "folio")


def test_a_stage_before_the_stage_it_needs(tmp_path):
    shutil.copyfile(PROJECT / "params.yaml", tmp_path / "params.yaml")
    for stage, missing, maker in (("train", "data/tokenizer/tokenizer.json", "tokenize"),
                                  ("evaluate", "data/tokenizer/tokenizer.json", "tokenize"),
                                  ("validate", "data/raw/tinyshakespeare", "download")):
        code, output = folio(tmp_path, stage)
        assert_one_line_error(code, output, stage, f"{missing} not found", f"run `folio {maker}`")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_device_this_machine_lacks(project):
    code, output = folio(project, "train", "--set", "train.device=cuda")
    assert_one_line_error(code, output, "train", "train.device=cuda", "CUDA is not available", "'auto' or 'cpu'")


def test_a_prompt_outside_the_vocabulary(project):
    code, output = folio(project, "sample", "--set", 'sample.prompts=["ROMEO€:"]')
    assert_one_line_error(code, output, "sample", "sample.prompts[0]='ROMEO€:'", "'€' is not in the")


def test_a_checkpoint_trained_with_another_tokenizer(project):
    shutil.rmtree(project / artifacts.TOKENIZER_DIR)
    save_tokenizer(CharTokenizer.train("abcdefghij \n"), project / artifacts.TOKENIZER_DIR)
    code, output = folio(project, "evaluate")
    assert_one_line_error(code, output, "evaluate", "trained with tokenizer char", "use the tokenizer it was trained with")


def test_a_truncated_checkpoint(project):
    best = project / artifacts.BEST_CKPT
    best.write_bytes(best.read_bytes()[: best.stat().st_size // 2])
    code, output = folio(project, "evaluate")
    assert_one_line_error(code, output, "evaluate", "models/best.pt is not a readable checkpoint", "truncated")


def test_a_split_shorter_than_one_window(project):
    code, output = folio(project, "train", "--set", "model.block_size=200000")
    assert_one_line_error(code, output, "train", "the val split holds", "lower model.block_size")


def test_bad_params_are_one_line_naming_each_key(project):
    code, output = folio(project, "train", "--set", "train.batch_size=0", "--set", "model.dropout=2")
    line = assert_one_line_error(code, output, "train", "train.batch_size", "(value 0)", "model.dropout", "(value 2)")
    assert line.endswith("fix them in the params file or the --set overrides")


def test_debug_shows_the_traceback(project):
    code, output = folio(project, "train", "--set", "train.device=cuda:7", env_extra={"FOLIO_DEBUG": "1"})
    assert code == 1 and "Traceback" in output and output.rstrip().splitlines()[-1].startswith("error: train:")


def test_a_full_disk_while_saving_names_the_path_and_keeps_the_last_checkpoint(stage_project, monkeypatch):
    """The second checkpoint write fails with ENOSPC, as a full disk makes it fail."""
    from pipeline.params import validate
    from pipeline.stages import prepare, tokenize

    tree = {"data": {"name": "t", "url": "file:///unused", "sha256": ""},
            "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
            "train": {"max_iters": 20, "batch_size": 4, "eval_interval": 10, "eval_iters": 1,
                      "warmup_iters": 1, "device": "cpu"}}
    (stage_project / "params.yaml").write_text(yaml.safe_dump(tree))
    params = validate(tree)
    tokenize.main(params)
    prepare.main(params)
    real_save, calls = torch.save, []

    def save_until_full(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) > 2:  # step 0's checkpoint and best.pt fit; step 10's does not
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", save_until_full)
    result = CliRunner().invoke(app, ["train", "--params", str(stage_project / "params.yaml")])
    assert result.exit_code == 1, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert line.startswith("error: train: no space left on the device writing models/step-0000010.pt "
                           "(needs about "), line
    assert "MB free); free some space and rerun" in line
    assert checkpoint.load(stage_project / artifacts.LAST_CKPT)["step"] == 0  # the last good one
    assert not list((stage_project / artifacts.MODELS).glob(".*.tmp"))  # no half-written file left


def test_a_real_full_disk(tmp_path):
    """The same on a 1 MB tmpfs (where this machine lets us mount one)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root, or no permission)")
    try:
        state = {"model": {"w": torch.zeros(100_000)}, "step": 1}  # 400 kB: fits once, not twice
        checkpoint.save(mount / "a.pt", state)
        with pytest.raises(checkpoint.CheckpointWriteError, match=r"no space left on the device writing .*b\.pt "
                                                                   r"\(needs about 0\.8 MB, "):
            checkpoint.save(mount / "b.pt", {**state, "model": {"w": torch.ones(200_000)}})
        assert torch.equal(checkpoint.load(mount / "a.pt")["model"]["w"], state["model"]["w"])
        assert sorted(p.name for p in mount.iterdir()) == ["a.pt"]
    finally:
        subprocess.run(["umount", str(mount)], check=False)
