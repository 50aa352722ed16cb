"""The README's GPU preset one-liner is valid params and trains a few steps on CPU."""

import re

import torch

from folio.model import create_model
from folio.train import Trainer
from pipeline import params
from pipeline.params import model_config, train_config
from tests.conftest import PROJECT


def gpu_preset() -> list[str]:
    readme = (PROJECT / "README.md").read_text()
    block = readme.split("<!-- gpu-preset -->", 1)[1].split("```")[1]
    return re.findall(r"-S (\S+=\S+)", block)


def test_gpu_preset_runs_a_few_steps_on_cpu(tmp_path):
    overrides = gpu_preset()
    assert "model.n_embd=384" in overrides and "model.block_size=256" in overrides
    p = params.load(PROJECT / "params.yaml", [*overrides, "train.max_iters=2", "train.batch_size=2",
                                              "train.eval_iters=1", "train.device=cpu"])
    torch.manual_seed(0)
    model = create_model(model_config(p, vocab_size=65))
    assert 10e6 < model.num_params() < 11e6  # nanoGPT's 10.7M-parameter Shakespeare model
    tokens = torch.randint(65, (4096,))
    result = Trainer(model, tokens, tokens, train_config(p), tmp_path,
                     tokenizer_info={"kind": "char", "vocab_size": 65, "digest": "x"},
                     log=lambda m: None).fit()
    assert result.step == 2 and torch.isfinite(torch.tensor(result.best_val_loss))
