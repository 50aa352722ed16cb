"""Same inputs, same outputs: the seed covers the initial weights, dropout, batches and sampling.
Two fresh trainings (each from an empty models/, whatever the global RNG holds) give equal state
dicts and byte-identical reports/train/*.csv; a different seed gives another model; the initial
weights are a function of (config, seed) alone. (Two `dvc repro` in two clones: test_e2e.py; a
SIGKILL and resume, also under DDP: test_train_engine.py.)"""

from __future__ import annotations

import shutil

import pytest
import torch

from folio import checkpoint
from folio.config import GPTConfig
from folio.model import create_model
from pipeline import artifacts
from pipeline.params import validate
from pipeline.stages import sample, train
from tests.conftest import tokenized_and_prepared

PARAMS = {
    "data": {"name": "t", "url": "file:///unused", "sha256": "", "val_fraction": 0.1},
    "model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "dropout": 0.1},
    "train": {"max_iters": 12, "batch_size": 4, "eval_interval": 6, "eval_iters": 2, "warmup_iters": 2,
              "device": "cpu", "seed": 7},
    "sample": {"prompts": ["Line"], "max_new_tokens": 30, "attention_prompt": "Line 1"},
}


def _train_fresh(params, scramble: int) -> dict:
    """Train from an empty models/ after scrambling the global RNG; the outputs as bytes/tensors."""
    shutil.rmtree(artifacts.MODELS, ignore_errors=True)
    torch.manual_seed(scramble)
    torch.rand(scramble % 97 + 1)  # leave the global generator somewhere else each time
    train.main(params)
    sample.main(params)
    return {
        "weights": checkpoint.load(artifacts.LAST_CKPT)["model"],
        "steps": artifacts.TRAIN_STEPS.read_bytes(),
        "evals": artifacts.TRAIN_EVALS.read_bytes(),
        "samples": artifacts.SAMPLES.read_bytes(),
        "plot": artifacts.LOSS_PLOT.read_bytes(),
    }


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("dtype", ["float32", "auto"])  # auto: bf16 autocast on an AMX CPU
def test_two_fresh_trainings_are_bit_identical(stage_project, dtype):
    params = validate({**PARAMS, "train": {**PARAMS["train"], "dtype": dtype}})
    tokenized_and_prepared(params)
    first, second = _train_fresh(params, 1), _train_fresh(params, 2)
    assert _same_weights(first["weights"], second["weights"])
    for report in ("steps", "evals", "samples", "plot"):
        assert first[report] == second[report], report
    reseeded = validate({**PARAMS, "train": {**PARAMS["train"], "dtype": dtype, "seed": 8}})
    assert not _same_weights(_train_fresh(reseeded, 1)["weights"], first["weights"])


def test_initial_weights_are_a_function_of_config_and_seed():
    config = GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16)
    torch.manual_seed(0)
    a = create_model(config, seed=3).state_dict()
    before = torch.get_rng_state()
    b = create_model(config, seed=3).state_dict()
    assert torch.equal(before, torch.get_rng_state())  # the global generator is left alone
    assert _same_weights(a, b)
    assert not _same_weights(a, create_model(config, seed=4).state_dict())
