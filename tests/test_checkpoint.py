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
    """A FolioError (so the CLI prints it as one line), and a FileNotFoundError for callers that
    catch that."""
    from folio.errors import FolioError, MissingFile

    with pytest.raises(MissingFile, match="no checkpoint at") as caught:
        checkpoint.load(tmp_path / "nope.pt")
    assert isinstance(caught.value, FolioError) and isinstance(caught.value, FileNotFoundError)


def test_load_refuses_pickled_code(tmp_path):
    torch.save({"obj": object()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="[Ww]eights only"):
        checkpoint.load(tmp_path / "evil.pt")


def test_the_weights_digest_names_the_weights_alone():
    """Same weights, same digest (whatever the optimizer state, step or wrapper prefix); any
    changed weight, another digest: metrics and registered versions are tied to weights by it."""
    import torch

    from folio.checkpoint import weights_digest

    weights = {"wte.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "ln.bias": torch.zeros(3)}
    digest = weights_digest({"model": weights, "step": 1})
    assert digest == weights_digest({"model": {f"_orig_mod.{k}": v for k, v in weights.items()}, "step": 9,
                                     "optimizers": [{"state": {}}]})
    changed = {**weights, "ln.bias": torch.tensor([0.0, 0.0, 1e-7])}
    assert weights_digest({"model": changed}) != digest
    assert weights_digest({"model": {k: v.to(torch.bfloat16) for k, v in weights.items()}}) != digest
    assert len(digest) == 16 and int(digest, 16) >= 0
