"""Loss over a split (every target counted once), or over evenly spaced windows holding about
max_tokens of it — deterministic, unlike random batches; and bits per byte, the one place it is computed."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from folio.data import sequential_windows
from folio.device import autocast_for
from folio.model import GPT
from folio.tokenizers import end_of_text_id


def bits_per_byte(nats_per_token: float, tokens: int, text_bytes: int) -> float:
    """Bits per byte of text: the total bits over `tokens` predicted tokens at a mean loss of
    `nats_per_token`, over the `text_bytes` UTF-8 bytes those tokens stand for. Unlike the loss per
    token, it compares models with different tokenizers."""
    return nats_per_token * tokens / math.log(2) / max(text_bytes, 1)


def text_bytes(tokenizer):
    """ids -> the UTF-8 bytes of the text they stand for (an end-of-text token: none)."""
    eot = end_of_text_id(tokenizer)
    decode_bytes = getattr(tokenizer, "decode_bytes", None)

    def count(ids: list[int]) -> int:
        if decode_bytes is None:
            return len(tokenizer.decode(ids).encode("utf-8"))
        return len(decode_bytes([i for i in ids if i != eot]))

    return count


@torch.no_grad()
def split_loss(model: GPT, tokens, batch_size: int = 32, max_tokens: int | None = None,
               target_bytes=None) -> dict[str, float]:
    """Mean cross-entropy in nats per token over the whole split (or the fixed subset of about
    `max_tokens`, see sequential_windows), with bits per token and perplexity (for a character
    tokenizer, bits per token is bits per character). With `target_bytes(ids) -> int`, also the
    bytes of text the predicted targets stand for (`n_bytes`)."""
    model.eval()
    device = next(model.parameters()).device
    total_nats, n_targets, n_bytes = 0.0, 0, 0
    for x, y in sequential_windows(tokens, model.config.block_size, batch_size, max_tokens):
        if target_bytes is not None:
            n_bytes += sum(target_bytes(row) for row in y.tolist())
        x, y = x.to(device), y.to(device)
        with autocast_for(device):
            logits, _ = model(x)
        total_nats += F.cross_entropy(
            logits.float().view(-1, logits.size(-1)), y.view(-1), reduction="sum"
        ).item()
        n_targets += y.numel()
    loss = total_nats / n_targets
    return {
        "loss": loss,
        "bits_per_token": loss / math.log(2),
        "perplexity": math.exp(loss),
        "n_tokens": n_targets,
        "n_bytes": n_bytes,
    }
