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
from tests.conftest import PROJECT, tokenized_and_prepared


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
    code, output = folio(project, "generate", "hi")
    assert_one_line_error(code, output, "generate", "trained with tokenizer char", "use the tokenizer it was trained with")
    code, output = folio(project, "evaluate")  # the tokens, encoded by the other one, are refused first
    assert_one_line_error(code, output, "evaluate", "data/prepared/ was encoded by tokenizer char", "run `folio prepare`")


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

    tree = {"data": {"name": "t", "url": "file:///unused", "sha256": ""},
            "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
            "train": {"max_iters": 20, "batch_size": 4, "eval_interval": 10, "eval_iters": 1,
                      "warmup_iters": 1, "device": "cpu"}}
    (stage_project / "params.yaml").write_text(yaml.safe_dump(tree))
    params = validate(tree)
    tokenized_and_prepared(params)
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


def test_generate_before_the_tokenizer_exists(tmp_path):
    code, output = folio(tmp_path, "generate", "hi")
    assert_one_line_error(code, output, "generate", "data/tokenizer holds no tokenizer", "run `folio tokenize`")


def test_export_hf_of_a_missing_checkpoint(tmp_path):
    code, output = folio(tmp_path, "export-hf", "out", "--checkpoint", "/missing.pt")
    assert_one_line_error(code, output, "export-hf", "no checkpoint at /missing.pt", "check the path")
    assert not (tmp_path / "out").exists()


def test_import_gpt2_of_a_missing_directory(tmp_path):
    code, output = folio(tmp_path, "import-gpt2", "/missing")
    assert_one_line_error(code, output, "import-gpt2", "no config.json in /missing",
                          "point to a Hugging Face GPT-2 checkpoint directory")


def test_an_override_that_is_not_yaml(tmp_path):
    shutil.copyfile(PROJECT / "params.yaml", tmp_path / "params.yaml")
    code, output = folio(tmp_path, "train", "--set", "train.max_iters=[1")
    assert_one_line_error(code, output, "train", "override 'train.max_iters=[1': the value is not valid YAML",
                          "quote it")


def test_params_that_name_a_directory(tmp_path):
    code, output = folio(tmp_path, "train", "--params", str(tmp_path))
    assert_one_line_error(code, output, "train", f"{tmp_path} is a directory, not a params file",
                          "pass --params")


def test_out_of_memory_names_what_to_lower(project, monkeypatch):
    """A CUDA out-of-memory (faked here: this machine has no GPU) is one line naming the device, the
    step and the params to lower, not a traceback nor a 'torch.compile failed' retry."""
    from folio.train import Trainer

    def out_of_memory(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)")

    monkeypatch.setattr(Trainer, "train_step", out_of_memory)
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(app, ["train", "--set", "train.max_iters=60"])
    assert result.exit_code == 1, result.output
    line = assert_one_line_error(1, result.output, "train", "cpu ran out of memory at step 0",
                                 "CUDA out of memory. Tried to allocate 2.00 GiB", "lower train.batch_size",
                                 "train.grad_checkpointing=true")
    assert "torch.compile" not in result.output, line


def test_ctrl_c_in_generate_says_nothing_of_training(project, monkeypatch):
    from pipeline.commands import generate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(generate, "stream", interrupted)
    monkeypatch.chdir(project)
    result = CliRunner().invoke(app, ["generate", "ROMEO:"])
    line = assert_one_line_error(result.exit_code, result.output, "generate", "interrupted",
                                 "rerun the command to run it again")
    assert "training" not in line


def test_an_unknown_tiktoken_encoding(project):
    code, output = folio(project, "tokenize", "--set", "tokenizer.kind=tiktoken:nope")
    assert_one_line_error(code, output, "tokenize", "unknown tiktoken encoding 'nope'", "use one of: ", "gpt2")
