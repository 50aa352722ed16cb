"""The model's KV cache: prefill plus one-token steps give the logits of a full forward, rows of
different lengths stay independent, row views and beam reordering share or copy the right rows,
and a cache cannot outgrow block_size."""

import pytest
import torch

from folio.model import GPT, GPTConfig, KVCache

CFG = GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=16)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPT(CFG).eval()


@pytest.mark.parametrize("static", [False, True], ids=["filled-slots", "static"])
def test_prefill_then_steps_match_a_full_forward(model, static):
    """static: one-token steps attend over all block_size slots, masked past each position."""
    idx = torch.randint(11, (3, 12))
    full, _ = model(idx)
    cache = KVCache(CFG, 3, static=static)
    with torch.no_grad():
        pieces = [model.forward_cached(idx[:, :5], cache)]  # prefill 5 tokens
        pieces += [model.forward_cached(idx[:, t : t + 1], cache) for t in range(5, 9)]  # 4 steps
        pieces.append(model.forward_cached(idx[:, 9:], cache))  # a chunk after cached tokens
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-4)
    assert cache.lengths.tolist() == [12, 12, 12]


@pytest.mark.parametrize("static", [False, True], ids=["filled-slots", "static"])
def test_rows_of_different_lengths_match_their_own_forward(model, static):
    a, b = torch.randint(11, (1, 7)), torch.randint(11, (1, 4))
    padded_b = torch.cat([b[:, :3], torch.zeros(1, 3, dtype=torch.long)], dim=1)
    cache = KVCache(CFG, 2, static=static)
    with torch.no_grad():
        model.forward_cached(torch.cat([a[:, :6], padded_b]), cache)
        cache.lengths.copy_(torch.tensor([6, 3]))  # forget row 1's padding
        step = model.forward_cached(torch.stack([a[0, 6:7], b[0, 3:4]]), cache)[:, -1]  # (2, V)
        expected = torch.stack([model(a)[0][0, -1], model(b)[0][0, -1]])
    torch.testing.assert_close(step, expected, atol=1e-5, rtol=1e-4)


def test_a_row_view_writes_into_the_batch(model):
    cache = KVCache(CFG, 2)
    with torch.no_grad():
        model.forward_cached(torch.tensor([[1, 2, 3]]), cache.row(1))
    assert cache.lengths.tolist() == [0, 3]
    for k in cache.k:  # every layer: row 0 untouched, row 1 filled in its first 3 slots
        assert k[0].abs().sum() == 0 and k[1, :, :3].abs().sum() > 0 and k[1, :, 3:].abs().sum() == 0


def test_select_reorders_and_repeats_rows(model):
    cache = KVCache(CFG, 2)
    with torch.no_grad():
        model.forward_cached(torch.tensor([[1, 2], [3, 4]]), cache)
    before = [k.clone() for k in cache.k]
    cache.select(torch.tensor([1, 1, 0]))
    for k, old in zip(cache.k, before):
        assert k.shape[0] == 3
        assert torch.equal(k[0], old[1]) and torch.equal(k[1], old[1]) and torch.equal(k[2], old[0])


def test_the_cache_cannot_outgrow_block_size(model):
    cache = KVCache(CFG, 1)
    with torch.no_grad():
        model.forward_cached(torch.zeros(1, 12, dtype=torch.long), cache)
        with pytest.raises(ValueError, match="block_size 12"):
            model.forward_cached(torch.zeros(1, 1, dtype=torch.long), cache)
