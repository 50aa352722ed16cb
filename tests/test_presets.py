"""Presets (presets/*.yaml): each lays its keys over params.yaml (`extends`), validates, trains a
few steps on CPU, and `folio preset` turns it into the `-S` arguments `dvc exp run` takes. The
presets for a kind of text (code, web) set the keys of every corpus check whose failure names them."""

import shutil

import pytest
import torch
import yaml
from typer.testing import CliRunner

from folio.model import create_model
from folio.train import Trainer
from pipeline import params
from pipeline.cli import app
from pipeline.gates import corpus_suite
from pipeline.params import model_config, train_config
from tests.conftest import PROJECT

PRESETS = sorted((PROJECT / "presets").glob("*.yaml"))


def test_there_are_the_speedrun_gpu_code_and_web_presets():
    assert {p.name for p in PRESETS} >= {"cpu-speedrun.yaml", "gpu-shakespeare.yaml", "code.yaml", "web.yaml"}


# the keys of each corpus check a preset may set (distinct_chars: a tokenizer of no char vocabulary)
CHECK_KEYS = {"control": ["validate.max_control_char_fraction"], "printable": ["validate.min_printable_fraction"],
              "markup": ["validate.max_markup_line_fraction"], "duplicates": ["validate.max_duplicate_fraction"],
              "line_length": ["validate.max_line_length", "validate.max_long_line_fraction"],
              "distinct_chars": ["validate.max_distinct_chars", "tokenizer.kind"]}


@pytest.mark.parametrize("kind", sorted(corpus_suite.PRESETS))
def test_a_corpus_failure_names_a_preset_only_for_checks_it_sets(kind):
    path, checks = corpus_suite.PRESETS[kind]
    base = params.load(PROJECT / "params.yaml").flat()
    laid = params.load(PROJECT / path).flat()
    changed = {k for k in base if base[k] != laid[k]}
    for check in checks:
        assert changed & set(CHECK_KEYS[check]), (path, check)
    assert laid["tokenizer.kind"] != "char"  # so the character set is not bounded above


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_a_preset_is_params_yaml_with_its_own_keys_changed(preset):
    base = params.load(PROJECT / "params.yaml").flat()
    laid = params.load(preset).flat()
    own = dict(a.split("=", 1) for a in params.preset_assignments(preset))
    changed = {k for k in base if base[k] != laid[k]}
    assert changed <= set(own)
    assert all(k in laid for k in own)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_folio_preset_prints_what_dvc_exp_run_takes(preset):
    result = CliRunner().invoke(app, ["preset", str(preset)])
    assert result.exit_code == 0, result.output
    words = result.output.split()
    assert words[::2] == ["-S"] * (len(words) // 2)
    # the -S values applied to params.yaml are the preset laid over it
    assert params.load(PROJECT / "params.yaml", words[1::2]) == params.load(preset)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_a_preset_trains_a_few_steps_on_cpu(preset, tmp_path):
    p = params.load(preset, ["train.max_iters=2", "train.batch_size=2", "train.eval_iters=1",
                             "train.device=cpu", "train.compile=false"])
    model = create_model(model_config(p, vocab_size=65), seed=0)
    tokens = torch.randint(65, (4096,))
    result = Trainer(model, tokens, tokens, train_config(p), tmp_path,
                     tokenizer_info={"kind": "char", "vocab_size": 65, "digest": "x"},
                     log=lambda m: None).fit()
    assert result.step == 2 and torch.isfinite(torch.tensor(result.best_val_loss))


def test_the_gpu_preset_is_nanogpts_shakespeare_model():
    p = params.load(PROJECT / "presets" / "gpu-shakespeare.yaml")
    model = create_model(model_config(p, vocab_size=65))
    assert 10e6 < model.num_params() < 11e6  # nanoGPT's 10.7M-parameter Shakespeare model
    assert (p.train.batch_size, p.model.block_size, p.train.max_iters) == (64, 256, 5000)


def test_extends_reads_the_base_first_so_edits_to_it_show_through(tmp_path):
    shutil.copy(PROJECT / "params.yaml", tmp_path / "params.yaml")
    tree = yaml.safe_load((tmp_path / "params.yaml").read_text())
    tree["data"]["name"] = "mycorpus"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tree))
    (tmp_path / "presets").mkdir()
    preset = tmp_path / "presets" / "mine.yaml"
    preset.write_text("extends: ../params.yaml\ntrain:\n  batch_size: 7\n")
    p = params.load(preset, ["train.max_iters=9"])
    assert (p.data.name, p.train.batch_size, p.train.max_iters) == ("mycorpus", 7, 9)
    assert p.train.learning_rate == params.load(tmp_path / "params.yaml").train.learning_rate


def test_a_preset_whose_base_is_missing_says_so_in_one_line(tmp_path):
    preset = tmp_path / "broken.yaml"
    preset.write_text("extends: nowhere.yaml\n")
    result = CliRunner().invoke(app, ["preset", str(preset)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: preset: {tmp_path / 'nowhere.yaml'} not found; run folio from the project root (or pass --params)"]


def test_presets_that_extend_each_other_in_a_circle_say_so_in_one_line(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    result = CliRunner().invoke(app, ["preset", str(tmp_path / "a.yaml")])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: preset: ") and "`extends` goes round in a circle" in line
