"""Beam search: the continuations with the highest length-normalized log-probability.

score = log P(new tokens | prompt) / len(new tokens) ** length_penalty. With length_penalty 0 the
score is the total log-probability (which favours short hypotheses, since every token lowers it),
with 1 the mean log-probability per token, and above 1 longer hypotheses are favoured further.
Lengths differ only when hypotheses finish early (a stop string); otherwise every hypothesis has
max_new_tokens tokens and the penalty does not change the ranking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from folio.generate import Completion, Decoder, GenerationConfig
from folio.model import GPT
from folio.textstream import TextStream


@dataclass(frozen=True)
class Hypothesis:
    token_ids: list[int]  # the new tokens
    logprob: float  # their summed log-probability
    score: float  # logprob / len(token_ids) ** length_penalty


@torch.inference_mode()
def beam_search(
    model: GPT,
    prompt_ids: Sequence[int],
    beams: int,
    max_new_tokens: int,
    length_penalty: float = 1.0,
    is_finished: Callable[[list[int]], bool] | None = None,
    use_cache: bool = True,
    compile: bool = False,
) -> list[Hypothesis]:
    """The `beams` best hypotheses by score, best first.

    Each step extends every live beam by every token and scans the 2 * beams likeliest
    extensions: those that finish (`is_finished(new_ids)`) are set aside, the first `beams` that
    do not stay live. After max_new_tokens the live beams join the finished ones and all are
    ranked by score. There is no early stop: with a length penalty a longer hypothesis can still
    overtake, so the search always runs its max_new_tokens steps (or until no beam is live).
    """
    model.eval()
    decoder = Decoder(model, [prompt_ids], use_cache, compile)
    live, finished = [Hypothesis([], 0.0, 0.0)], []
    for step in range(max_new_tokens):
        logprobs = decoder.next_logits().float().log_softmax(dim=-1)  # (live, V)
        totals = torch.tensor([h.logprob for h in live])[:, None] + logprobs.cpu()  # (live, V)
        top = totals.view(-1).topk(min(2 * beams, totals.numel()))
        parents, survivors = [], []
        for total, flat in zip(top.values.tolist(), top.indices.tolist()):
            parent, token = divmod(flat, totals.size(1))
            ids = live[parent].token_ids + [token]
            hypothesis = Hypothesis(ids, total, total / len(ids) ** length_penalty)
            if is_finished is not None and is_finished(ids):
                finished.append(hypothesis)
            else:
                parents.append(parent)
                survivors.append(hypothesis)
                if len(survivors) == beams:
                    break
        live = survivors
        if not live or step == max_new_tokens - 1:
            break
        decoder.reorder(parents)
        decoder.append([h.token_ids[-1] for h in live])
    return sorted(finished + live, key=lambda h: h.score, reverse=True)[:beams]


def beam_complete(model: GPT, tokenizer, prompt: str, config: GenerationConfig,
                  use_cache: bool = True) -> list[Completion]:
    """The config.num_samples best beam-search completions of `prompt`; a hypothesis finishes
    when its text holds one of config.stop."""

    stop = [s for s in config.stop if s]
    # A hypothesis is checked at every step, so only a stop string completed by its last token
    # is new: decoding a tail long enough to hold the longest one (4 bytes a character) will do.
    tail = 4 * max(map(len, stop), default=0) + 4
    is_finished = (lambda ids: any(s in tokenizer.decode(ids[-tail:]) for s in stop)) if stop else None
    hypotheses = beam_search(model, tokenizer.encode(prompt), config.beams, config.max_new_tokens,
                             config.length_penalty, is_finished, use_cache, config.compile)
    completions = []
    for h in hypotheses[: config.num_samples]:
        row = TextStream(tokenizer, stop)
        for token in h.token_ids:
            if not row.stopped:
                row.push(token)
        row.finish()
        completions.append(Completion(prompt, row.text, h.token_ids,
                                      "stop" if row.stopped else "length", h.score))
    return completions
