"""Sampling and decoding: greedy at temperature 0, top-k, seeded reproducibility, long outputs."""

import pytest
import torch

from folio.generate import generate_text, generate_tokens, sample
from folio.model import GPT, GPTConfig
from folio.tokenizers import CharTokenizer


def test_temperature_zero_is_greedy():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    assert sample(logits, temperature=0).tolist() == [[1], [0]]


def test_top_k_only_draws_the_k_likeliest():
    logits = torch.tensor([[5.0, 4.0, 0.0, -1.0, 3.0]]).repeat(200, 1)
    drawn = sample(logits, temperature=1.0, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(drawn.flatten().tolist()) == {0, 1}


def test_negative_temperature_is_refused():
    with pytest.raises(ValueError, match="temperature"):
        sample(torch.zeros(1, 3), temperature=-1)


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8))


def test_seeded_generation_is_reproducible_and_outgrows_block_size(tiny_model):
    a = list(generate_tokens(tiny_model, [1, 2], 20, temperature=1.0, seed=3))
    b = list(generate_tokens(tiny_model, [1, 2], 20, temperature=1.0, seed=3))
    assert a == b and len(a) == 20  # 22 tokens from a 4-token context: the window slides


def test_generate_text_keeps_the_prompt():
    torch.manual_seed(0)
    tok = CharTokenizer.train("abcde")
    model = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=8))
    text = generate_text(model, tok, "ab", 6, temperature=0)
    assert text.startswith("ab") and len(text) == 8 and set(text) <= set("abcde")


def test_empty_prompt_is_refused(tiny_model):
    with pytest.raises(ValueError, match="at least one token"):
        next(generate_tokens(tiny_model, [], 3))
