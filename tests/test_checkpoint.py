"""Checkpoints: weights-only load, compile/DDP prefixes stripped, vocabulary mismatch refused."""

import pytest
import torch

from folio import checkpoint
from folio.model import GPT, GPTConfig

CFG = GPTConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, n_embd=8)
TOK = {"kind": "char", "vocab_size": 12, "digest": "abc"}


def _state(model_state):
    return {"model": model_state, "model_config": CFG.to_dict(), "tokenizer": TOK, "step": 3}


def test_round_trip_rebuilds_the_same_model(tmp_path):
    model = GPT(CFG)
    checkpoint.save(tmp_path / "c.pt", _state(model.state_dict()))
    loaded = checkpoint.build_model(checkpoint.load(tmp_path / "c.pt"), tokenizer_digest="abc")
    idx = torch.randint(12, (2, 8))
    torch.testing.assert_close(loaded(idx)[0], model(idx)[0])


def test_compile_and_ddp_prefixes_are_stripped(tmp_path):
    model = GPT(CFG)
    wrapped = {f"module._orig_mod.{k}": v for k, v in model.state_dict().items()}
    checkpoint.save(tmp_path / "c.pt", _state(wrapped))
    state = checkpoint.load(tmp_path / "c.pt")
    assert all(not k.startswith(("module.", "_orig_mod.")) for k in state["model"])
    checkpoint.build_model(state)


def test_vocabulary_mismatch_is_refused(tmp_path):
    checkpoint.save(tmp_path / "c.pt", _state(GPT(CFG).state_dict()))
    with pytest.raises(ValueError, match="digest abc"):
        checkpoint.build_model(checkpoint.load(tmp_path / "c.pt"), tokenizer_digest="xyz")


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "nope.pt")


def test_load_refuses_pickled_code(tmp_path):
    torch.save({"obj": object()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="[Ww]eights only"):
        checkpoint.load(tmp_path / "evil.pt")
