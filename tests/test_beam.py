"""Beam search: with enough beams it is exhaustive and must rank every hypothesis exactly as a
brute-force enumeration does (under each length penalty, with hypotheses that finish early);
one beam is greedy decoding; cache and recomputation agree past block_size; stop strings."""

import itertools
import math

import pytest
import torch

from folio.beam import beam_search
from folio.generate import Decoder, GenerationConfig, complete, generate_ids
from folio.model import GPT, GPTConfig
from folio.tokenizers import CharTokenizer

PROMPT = [0, 1]
FINISH = 2  # in the brute-force test, a hypothesis finishes with this token
STEPS = 3


@pytest.fixture
def model():
    """Vocabulary 3, and weights large enough that log-probabilities are far from tied (seed 5:
    one whose best hypothesis changes with the length penalty)."""
    torch.manual_seed(5)
    model = GPT(GPTConfig(vocab_size=3, block_size=8, n_layer=1, n_head=1, n_embd=8)).eval()
    with torch.no_grad():
        model.pos_emb.weight.normal_(0.0, 1.0)
        model.lm_head.weight = torch.nn.Parameter(torch.randn(3, 8))
    return model


def _search(model, beams, max_new_tokens, length_penalty=1.0, is_finished=None, use_cache=True):
    """Beam search continuing PROMPT, over the decoder complete() would build."""
    return beam_search(Decoder(model, [PROMPT], use_cache), beams, max_new_tokens, length_penalty, is_finished)


def _logprob(model, prompt, new_ids) -> float:
    idx = torch.tensor([prompt + new_ids])
    with torch.no_grad():
        logprobs = model(idx)[0][0].double().log_softmax(-1)  # (T, V)
    return sum(logprobs[len(prompt) - 1 + i, t].item() for i, t in enumerate(new_ids))


def _all_hypotheses():
    """Every sequence that ends at FINISH (nothing earlier finished) or runs all STEPS."""
    for n in range(1, STEPS + 1):
        for ids in itertools.product(range(3), repeat=n):
            if FINISH not in ids[:-1] and (ids[-1] == FINISH or n == STEPS):
                yield list(ids)


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_wide_beam_ranks_like_brute_force(model, length_penalty):
    expected = sorted(
        ((_logprob(model, PROMPT, ids) / len(ids) ** length_penalty, ids) for ids in _all_hypotheses()),
        reverse=True,
    )
    found = _search(model, beams=3**STEPS, max_new_tokens=STEPS,
                    length_penalty=length_penalty, is_finished=lambda ids: ids[-1] == FINISH)
    assert [h.token_ids for h in found] == [ids for _, ids in expected]
    for h, (score, ids) in zip(found, expected):
        assert h.score == pytest.approx(score, abs=1e-4)
        assert h.logprob == pytest.approx(_logprob(model, PROMPT, ids), abs=1e-4)


def test_length_penalty_changes_which_hypothesis_wins(model):
    best = {lp: _search(model, 27, STEPS, lp, lambda ids: ids[-1] == FINISH)[0].token_ids
            for lp in (0.0, 1.0)}
    assert best == {0.0: [FINISH], 1.0: [0, 0, 0]}  # total log-probability favours the short one


def test_one_beam_is_greedy(model):
    (h,) = _search(model, beams=1, max_new_tokens=12)
    greedy = [s[0] for s in generate_ids(model, [PROMPT], GenerationConfig(max_new_tokens=12, temperature=0))]
    assert h.token_ids == greedy


def test_cache_and_recomputation_agree_past_block_size(model):
    # 2 + 14 tokens through a block of 8: the window restarts for every beam at once
    cached = _search(model, beams=3, max_new_tokens=14, use_cache=True)
    uncached = _search(model, beams=3, max_new_tokens=14, use_cache=False)
    assert [h.token_ids for h in cached] == [h.token_ids for h in uncached]
    assert [h.score for h in cached] == pytest.approx([h.score for h in uncached], abs=1e-4)


def test_beams_with_stop_strings_end_before_the_stop(model):
    tok = CharTokenizer.train("abc")
    config = GenerationConfig(max_new_tokens=6, beams=4, num_samples=4, stop=("c",), length_penalty=0.0)
    completions = complete(model, tok, ["ab"], config)
    assert len(completions) == 4
    assert all("c" not in c.text for c in completions)
    assert any(c.finish_reason == "stop" for c in completions)
    assert [c.score for c in completions] == sorted((c.score for c in completions), reverse=True)
    for c in completions:
        assert c.score == pytest.approx(_logprob(model, [0, 1], c.token_ids), abs=1e-4)
        assert c.text == tok.decode(c.token_ids).split("c")[0]
        assert math.isfinite(c.score)
