"""Beam search: the continuations with the highest length-normalized log-probability.

score = log P(new tokens | prompt) / len(new tokens) ** length_penalty. With length_penalty 0 the
score is the total log-probability (which favours short hypotheses, since every token lowers it),
with 1 the mean log-probability per token, and above 1 longer hypotheses are favoured further.
Lengths differ only when hypotheses finish early (a stop string); otherwise every hypothesis has
max_new_tokens tokens and the penalty does not change the ranking.

The search runs over a decoder of one prompt (folio.generate's `Decoder`), which the caller
builds: folio.generate imports this module, never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import torch


class Decoding(Protocol):
    """What beam search needs of a decoder (folio.generate.Decoder): next-token logits of every
    live row, rows kept or repeated in a new order, and one token appended to each row."""

    def next_logits(self) -> torch.Tensor: ...  # (rows, V)

    def reorder(self, rows: Sequence[int]) -> None: ...

    def append(self, next_ids: Sequence[int]) -> None: ...


@dataclass(frozen=True)
class Hypothesis:
    token_ids: list[int]  # the new tokens
    logprob: float  # their summed log-probability
    score: float  # logprob / len(token_ids) ** length_penalty


@torch.inference_mode()
def beam_search(
    decoder: Decoding,
    beams: int,
    max_new_tokens: int,
    length_penalty: float = 1.0,
    is_finished: Callable[[list[int]], bool] | None = None,
) -> list[Hypothesis]:
    """The `beams` best hypotheses by score, best first, continuing the one prompt `decoder` holds.

    Each step extends every live beam by every token and scans the 2 * beams likeliest
    extensions: those that finish (`is_finished(new_ids)`) are set aside, the first `beams` that
    do not stay live. After max_new_tokens the live beams join the finished ones and all are
    ranked by score. There is no early stop: with a length penalty a longer hypothesis can still
    overtake, so the search always runs its max_new_tokens steps (or until no beam is live).
    """
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
