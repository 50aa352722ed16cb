"""int8 inference: the quantized copy gives finite logits close to float32, leaves the original
model alone, generates with the KV cache, and unknown modes are refused."""

import pytest
import torch
import torch.nn as nn

from folio.generate import GenerationConfig, generate_ids
from folio.model import GPT, GPTConfig, KVCache
from folio.quantize import quantize, quantize_int8


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=64)).eval()


def test_int8_logits_are_finite_and_close_to_float32(model):
    idx = torch.randint(32, (2, 16))
    with torch.no_grad():
        exact, _ = model(idx)
        approx, _ = quantize_int8(model)(idx)
    assert torch.isfinite(approx).all()
    error = (approx - exact).abs().max() / exact.abs().max()
    assert 0 < error < 0.05  # changed (it is int8) but only a little


def test_the_original_model_is_untouched(model):
    q = quantize_int8(model)
    assert type(q.blocks[0].mlp.fc) is not nn.Linear and type(q.lm_head) is not nn.Linear
    assert type(model.blocks[0].mlp.fc) is nn.Linear
    assert model.lm_head.weight.data_ptr() == model.tok_emb.weight.data_ptr()


def test_int8_generates_with_the_cache(model):
    """Not token-identical to the uncached path: dynamic quantization scales activations per call,
    and a cached call sees one token where the uncached one sees the whole window."""
    q = quantize_int8(model)
    steps = list(generate_ids(q, [[1, 2], [3]], GenerationConfig(max_new_tokens=40, seed=0)))
    assert len(steps) == 40 and all(0 <= t < 32 for step in steps for t in step)
    cache = KVCache(model.config, 1)
    with torch.no_grad():
        cached = q.forward_cached(torch.tensor([[1, 2, 3]]), cache)
        exact, _ = model(torch.tensor([[1, 2, 3]]))
    assert (cached - exact).abs().max() / exact.abs().max() < 0.05


def test_modes():
    model = GPT(GPTConfig(vocab_size=4, block_size=4, n_layer=1, n_head=1, n_embd=8))
    assert quantize(model, None) is model
    with pytest.raises(ValueError, match="int4"):
        quantize(model, "int4")
