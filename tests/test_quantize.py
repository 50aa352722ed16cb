"""int8 inference: each int8 Linear computes what its stored int8 weights and scales say, the
quantized copy gives logits close to float32, leaves the original model alone, generates with the
KV cache, and unknown modes and devices are refused."""

import pytest
import torch
import torch.nn as nn

from folio.generate import GenerationConfig, generate_ids
from folio.model import GPT, GPTConfig, KVCache
from folio.quantize import Int8Linear, quantize, quantize_int8


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=64)).eval()


def test_int8_linear_is_its_dequantized_weights_times_bfloat16_inputs():
    torch.manual_seed(0)
    linear = nn.Linear(48, 37)  # odd sizes on purpose
    q = Int8Linear(linear)
    assert q.weight.dtype == torch.int8 and q.weight.shape == (37, 48)
    assert q.weight.abs().max() == 127  # every row uses the full range
    x = torch.randn(3, 5, 48)
    dequantized = q.weight.float() * q.scale.float()[:, None]
    expected = x.bfloat16().float() @ dequantized.T + linear.bias
    with torch.no_grad():
        assert torch.allclose(q(x), expected, atol=2e-2, rtol=2e-2)
        assert (q(x) - linear(x)).abs().max() < 0.03 * linear(x).abs().max()


def test_int8_weights_take_a_quarter_of_the_bytes(model):
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    int8 = [m for m in quantize_int8(model).modules() if isinstance(m, Int8Linear)]
    assert len(int8) == len(linears)
    assert sum(m.weight.nbytes for m in int8) * 4 == sum(m.weight.nbytes for m in linears)


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
    q = quantize_int8(model)
    steps = list(generate_ids(q, [[1, 2], [3]], GenerationConfig(max_new_tokens=40, seed=0)))
    assert len(steps) == 40 and all(0 <= t < 32 for step in steps for t in step)
    cache = KVCache(model.config, 1)
    with torch.no_grad():
        cached = q.forward_cached(torch.tensor([[1, 2, 3]]), cache)
        exact, _ = model(torch.tensor([[1, 2, 3]]))
    assert (cached - exact).abs().max() / exact.abs().max() < 0.05


def test_modes_and_devices():
    model = GPT(GPTConfig(vocab_size=4, block_size=4, n_layer=1, n_head=1, n_embd=8))
    assert quantize(model, None) is model
    with pytest.raises(ValueError, match="int4"):
        quantize(model, "int4")
    with pytest.raises(ValueError, match="CPU.*meta"):
        quantize(model.to("meta"), "int8")
