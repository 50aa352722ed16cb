"""The GPT: output shapes, causal attention, weight tying, initial loss; every architecture
option builds, stays causal and trains; gradient checkpointing changes nothing but memory;
the bigram baseline."""

import math

import pytest
import torch

import torch.nn.functional as F

from folio.model import GPT, GPTConfig, KVCache, attend, create_model

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


def test_attention_runs_in_float32_under_cpu_autocast():
    """bf16 autocast on a CPU: the matmuls around it go bf16, attention itself stays float32
    (PyTorch's bf16 CPU attention backward is ~10x slower) and hands back bf16."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 8, 16, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = attend(q, k, v, is_causal=True)
        y_autocast = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    assert y.dtype == torch.bfloat16 and torch.equal(y, expected.to(torch.bfloat16))
    assert not torch.equal(y, y_autocast)  # plain autocast would have computed it in bf16
    y.float().sum().backward()
    assert q.grad.dtype == torch.bfloat16 and torch.isfinite(q.grad).all()


def test_head_is_tied_to_token_embedding():
    model = GPT(CFG)
    assert model.lm_head.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    assert model.num_params() == sum(p.numel() for p in set(model.parameters()))


def test_longer_than_block_size_is_refused():
    with pytest.raises(ValueError, match="block_size 8"):
        GPT(CFG)(torch.zeros(1, 9, dtype=torch.long))


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(vocab_size=4, n_embd=10, n_head=3)


OPTION_SETS = [
    dict(pos_emb="rope"), dict(norm="rmsnorm"), dict(qk_norm=True), dict(mlp="swiglu"),
    dict(mlp="relu2"), dict(mlp="gelu_tanh"), dict(bias=False), dict(tie_weights=False),
    dict(pos_emb="rope", norm="rmsnorm", qk_norm=True, mlp="swiglu", bias=False, tie_weights=False),
]


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_every_option_is_causal_matches_its_cache_and_learns(options):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=16, block_size=8, n_layer=2, n_head=2, n_embd=16, **options)
    model = GPT(cfg)
    idx = torch.randint(16, (2, 8))
    changed = idx.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 16
    model.eval()
    full = model(idx)[0]
    torch.testing.assert_close(full[:, :6], model(changed)[0][:, :6])
    cache = KVCache(cfg, batch_size=2)  # the prompt, then one token at a time
    cached = torch.cat([model.forward_cached(idx[:, :5], cache)] +
                       [model.forward_cached(idx[:, t:t + 1], cache) for t in range(5, 8)], dim=1)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-4)
    assert (model.lm_head.weight is model.tok_emb.weight) == cfg.tie_weights
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        _, loss = model(idx, idx)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first - 1.0


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    torch.manual_seed(0)
    plain = GPT(CFG)
    ckpt = GPT(CFG)
    ckpt.load_state_dict(plain.state_dict())
    ckpt.grad_checkpointing = True
    idx = torch.randint(16, (3, 8))
    loss_plain, loss_ckpt = plain(idx, idx)[1], ckpt(idx, idx)[1]
    loss_plain.backward()
    loss_ckpt.backward()
    torch.testing.assert_close(loss_ckpt, loss_plain)
    for p, q in zip(plain.parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad)


def test_bigram_baseline_predicts_from_the_current_token_only():
    model = create_model(GPTConfig(vocab_size=16, block_size=8, kind="bigram"))
    assert model.num_params() == 16 * 16
    idx = torch.randint(16, (2, 8))
    logits, _ = model(idx)
    torch.testing.assert_close(logits[0, 3], model.table.weight[idx[0, 3]])


def test_unknown_option_is_refused():
    with pytest.raises(ValueError, match="mlp must be one of"):
        GPTConfig(vocab_size=4, mlp="tanh")
