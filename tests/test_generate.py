"""Sampling and decoding: greedy at temperature 0, top-k, top-p, repetition penalty, seeds;
the KV cache gives the same tokens as recomputing (greedy and seeded, past block_size, ragged
batches); batched equals one-by-one; stop strings; settings are validated."""

import pytest
import torch

from folio.generate import (
    Decoder,
    GenerationConfig,
    complete,
    generate_ids,
    generate_text,
    penalize_repetition,
    sample,
    top_k_filter,
    top_p_filter,
)
from folio.model import GPT, GPTConfig
from folio.tokenizers import CharTokenizer

# ---------------------------------------------------------------- sampling functions


def test_temperature_zero_is_greedy():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    assert sample(logits, temperature=0).tolist() == [[1], [0]]


def test_top_k_only_draws_the_k_likeliest():
    logits = torch.tensor([[5.0, 4.0, 0.0, -1.0, 3.0]]).repeat(200, 1)
    drawn = sample(logits, temperature=1.0, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(drawn.flatten().tolist()) == {0, 1}


def test_top_k_filter_keeps_exactly_the_k_largest():
    kept = top_k_filter(torch.tensor([[1.0, 3.0, 2.0, 0.0]]), 2).isfinite()
    assert kept.tolist() == [[False, True, True, False]]


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = {p: top_p_filter(logits, p).isfinite()[0].tolist()
            for p in (0.01, 0.4, 0.6, 0.79, 0.81, 0.96, 1.0)}
    assert kept[0.01] == kept[0.4] == [True, False, False, False]
    assert kept[0.6] == kept[0.79] == [True, True, False, False]
    assert kept[0.81] == [True, True, True, False]
    assert kept[0.96] == kept[1.0] == [True, True, True, True]


def test_top_p_works_in_vocabulary_order():
    logits = torch.tensor([[0.05, 0.15, 0.5, 0.3]]).log()  # the likeliest is not first
    assert top_p_filter(logits, 0.7).isfinite().tolist() == [[False, False, True, True]]
    drawn = sample(logits.repeat(300, 1), 1.0, top_p=0.7, generator=torch.Generator().manual_seed(0))
    assert set(drawn.flatten().tolist()) == {2, 3}


def test_repetition_penalty_lowers_seen_tokens_of_either_sign():
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    seen = torch.tensor([[True, True, False, False]])
    assert penalize_repetition(logits, seen, 2.0).tolist() == [[1.0, -4.0, 2.0, -2.0]]
    assert penalize_repetition(logits, seen, 1.0).tolist() == logits.tolist()


def test_negative_temperature_is_refused():
    with pytest.raises(ValueError, match="temperature"):
        sample(torch.zeros(1, 3), temperature=-1)


@pytest.mark.parametrize("bad, match", [
    ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"repetition_penalty": 0.0}, "repetition_penalty"), ({"beams": 2, "num_samples": 3}, "at most"),
])
def test_bad_settings_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        GenerationConfig(**bad)


# ---------------------------------------------------------------- the decoding loop


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8))


@pytest.fixture
def model():
    """A random model whose greedy output depends on position (an untied head and large position
    embeddings), so a window restarted at the wrong position would change the tokens."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=2, n_head=2, n_embd=16))
    with torch.no_grad():
        model.pos_emb.weight.normal_(0.0, 1.0)
        model.lm_head.weight = torch.nn.Parameter(torch.randn(7, 16))
    return model


def _run(model, prompts, use_cache, **settings):
    return list(generate_ids(model, prompts, GenerationConfig(**settings), use_cache))


@pytest.mark.parametrize("settings", [
    {"temperature": 0},
    {"temperature": 1.0, "seed": 5},
    {"temperature": 0.9, "top_k": 4, "top_p": 0.9, "repetition_penalty": 1.3, "seed": 7},
], ids=["greedy", "seeded", "filtered"])
def test_cache_gives_the_same_tokens_as_recomputing(model, settings):
    # 40 tokens from a block of 8: the window restarts several times; prompts of 1, 3 and 11
    # tokens (longer than the block) restart at different steps
    prompts = [[1], [2, 3, 4], [0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3]]
    cached = _run(model, prompts, True, max_new_tokens=40, **settings)
    uncached = _run(model, prompts, False, max_new_tokens=40, **settings)
    assert cached == uncached
    assert len({tuple(step) for step in cached}) > 3  # not a constant, which any loop could match


def test_compiled_decoding_gives_the_same_tokens(model):
    """torch.compile'd one-token steps over a static cache: same tokens as eager decoding for a
    ragged batch, seeded and filtered, through several window restarts (prefills stay eager)."""
    prompts = [[1], [2, 3, 4], [0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3]]
    settings = {"max_new_tokens": 30, "temperature": 0.9, "top_k": 4, "seed": 7}
    eager = _run(model, prompts, True, **settings)
    assert _run(model, prompts, True, compile=True, **settings) == eager


def test_compiled_decoding_sees_weights_changed_after_compiling(model):
    settings = {"max_new_tokens": 12, "temperature": 0, "compile": True}
    before = _run(model, [[1]], True, **settings)
    with torch.no_grad():
        model.lm_head.weight.copy_(torch.randn(7, 16))  # in place, as training would
    after = _run(model, [[1]], True, **settings)
    assert after == _run(model, [[1]], True, max_new_tokens=12, temperature=0) and after != before


def test_compile_needs_the_cache(model):
    with pytest.raises(ValueError, match="needs the KV cache"):
        _run(model, [[1]], False, compile=True)


def test_uncached_reference_is_nanogpts_loop_within_the_block(model):
    """Up to block_size tokens nothing is cropped: the reference is plain greedy decoding."""
    idx = torch.tensor([[3, 1]])
    with torch.no_grad():
        for _ in range(6):  # 2 + 6 = block_size
            logits, _ = model(idx)
            idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    steps = _run(model, [[3, 1]], False, max_new_tokens=6, temperature=0)
    assert [s[0] for s in steps] == idx[0, 2:].tolist()


def test_full_window_restarts_from_its_last_half(model):
    decoder = Decoder(model, [list(range(7))], use_cache=False)
    decoder.append([0])  # 8 tokens: the block is full, no restart yet
    assert decoder.windows() == [[0, 1, 2, 3, 4, 5, 6, 0]]
    decoder.append([1])  # 9 would not fit: keep the last 4 (block_size // 2)
    assert decoder.windows() == [[5, 6, 0, 1]]


def test_batched_greedy_equals_one_prompt_at_a_time(model):
    prompts = [[1], [2, 3, 4, 5], [6, 6]]
    batched = _run(model, prompts, True, max_new_tokens=20, temperature=0)
    for b, prompt in enumerate(prompts):
        alone = _run(model, [prompt], True, max_new_tokens=20, temperature=0)
        assert [step[b] for step in batched] == [step[0] for step in alone]


def test_repetition_penalty_changes_greedy_output(model):
    plain = _run(model, [[1]], True, max_new_tokens=20, temperature=0)
    penalized = _run(model, [[1]], True, max_new_tokens=20, temperature=0, repetition_penalty=5.0)
    assert plain != penalized


def test_seeded_generation_is_reproducible_and_outgrows_block_size(tiny_model):
    a = _run(tiny_model, [[1, 2]], True, max_new_tokens=20, temperature=1.0, seed=3)
    b = _run(tiny_model, [[1, 2]], True, max_new_tokens=20, temperature=1.0, seed=3)
    assert a == b and len(a) == 20  # 22 tokens from a 4-token context: the window restarts


def test_unseeded_generation_differs_between_calls(tiny_model):
    runs = {str(_run(tiny_model, [[1]], True, max_new_tokens=30, temperature=1.0)) for _ in range(3)}
    assert len(runs) > 1


def test_empty_prompt_is_refused(tiny_model):
    with pytest.raises(ValueError, match="at least one token"):
        _run(tiny_model, [[]], True, max_new_tokens=3)


# ---------------------------------------------------------------- text


@pytest.fixture
def char_setup():
    torch.manual_seed(0)
    tok = CharTokenizer.train("abcde")
    return GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=8)), tok


def test_generate_text_keeps_the_prompt(char_setup):
    model, tok = char_setup
    text = generate_text(model, tok, "ab", 6, temperature=0)
    assert text.startswith("ab") and len(text) == 8 and set(text) <= set("abcde")


def test_stop_string_ends_the_text_before_it(char_setup):
    model, tok = char_setup
    settings = dict(max_new_tokens=60, temperature=1.0, seed=11)
    (full,) = complete(model, tok, ["ab"], GenerationConfig(**settings))
    stop = full.text[20:22]  # a string the unstopped text holds
    cut = full.text.find(stop)
    (stopped,) = complete(model, tok, ["ab"], GenerationConfig(stop=(stop, "zz"), **settings))
    assert stopped.text == full.text[:cut] and stop not in stopped.text
    assert stopped.finish_reason == "stop" and full.finish_reason == "length"
    assert len(stopped.token_ids) == cut + len(stop)  # generation stopped at the stop string


def test_num_samples_draws_different_samples_of_each_prompt(char_setup):
    model, tok = char_setup
    completions = complete(model, tok, ["a", "b"], GenerationConfig(max_new_tokens=30, seed=0, num_samples=3))
    assert [c.prompt for c in completions] == ["a", "a", "a", "b", "b", "b"]
    assert len({c.text for c in completions}) == 6
    assert all(len(c.text) == 30 for c in completions)
