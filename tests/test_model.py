"""The GPT: output shapes, causal attention, weight tying, initial loss, decay groups."""

import math

import pytest
import torch

from folio.model import GPT, GPTConfig

CFG = GPTConfig(vocab_size=16, block_size=8, n_layer=2, n_head=2, n_embd=16)


def test_forward_shapes_and_initial_loss_near_uniform():
    torch.manual_seed(0)
    model = GPT(CFG)
    idx = torch.randint(16, (3, 8))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 8, 16)
    assert abs(loss.item() - math.log(16)) < 0.3  # small init: close to a uniform guess
    assert model(idx)[1] is None


def test_attention_is_causal():
    torch.manual_seed(0)
    model = GPT(CFG).eval()
    idx = torch.randint(16, (1, 8))
    changed = idx.clone()
    changed[0, 5:] = (changed[0, 5:] + 1) % 16  # change only the future of position 4
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[0, :5], b[0, :5])
    assert not torch.allclose(a[0, 5:], b[0, 5:])


def test_head_is_tied_to_token_embedding():
    model = GPT(CFG)
    assert model.lm_head.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    assert model.num_params() == sum(p.numel() for p in set(model.parameters()))


def test_longer_than_block_size_is_refused():
    with pytest.raises(ValueError, match="block_size 8"):
        GPT(CFG)(torch.zeros(1, 9, dtype=torch.long))


def test_weight_decay_groups_split_matrices_from_gains_and_biases():
    model = GPT(CFG)
    decay, no_decay = model.optimizer_groups(0.1)
    assert all(p.dim() >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert all(p.dim() < 2 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(vocab_size=4, n_embd=10, n_head=3)
